"""A small credentialing world for model tests: one provider, a lung SABR case and two trials."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, select

from models.enums import OutcomeLevel, OutcomeSource, QAStage, SubmissionStatus
from models.tables import (
    BenchmarkCase,
    Credential,
    Outcome,
    Provider,
    Submission,
    Technique,
    Trial,
    TrialRequirement,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class World:
    """A provider, one lung SABR case and a trial that needs lung SABR (and optionally spine SABR too)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.provider = session.exec(select(Provider).where(Provider.code == "the-christie")).one()
        self.lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        self.spine = session.exec(select(Technique).where(Technique.code == "sabr_spine")).one()
        self.case = BenchmarkCase(
            case_code="c",
            version="1",
            title="t",
            technique_id=self.lung.id or 0,
            stage=QAStage.BENCHMARK_CASE,
            protocol_id="p",
            protocol_version="1",
            reference_sha256="0" * 64,
            reference_path="/x",
        )
        session.add(self.case)
        self.trial = Trial(code="LUNG-TRIAL", title="lung trial")
        self.both = Trial(code="BOTH-TRIAL", title="lung and spine trial")
        session.add(self.trial)
        session.add(self.both)
        session.flush()
        session.add(TrialRequirement(trial_id=self.trial.id or 0, technique_id=self.lung.id or 0))
        session.add(TrialRequirement(trial_id=self.both.id or 0, technique_id=self.lung.id or 0))
        session.add(TrialRequirement(trial_id=self.both.id or 0, technique_id=self.spine.id or 0))
        session.flush()
        self.attempts = 0

    def decided(self, level: OutcomeLevel) -> int:
        self.attempts += 1
        sub = Submission(
            provider_id=self.provider.id or 0,
            case_id=self.case.id or 0,
            attempt=self.attempts,
            content_sha256=f"{self.attempts:064d}",
            status=SubmissionStatus.DECIDED,
            storage_path="/x",
            submitted_by="t",
        )
        self.session.add(sub)
        self.session.flush()
        self.session.add(
            Outcome(
                submission_id=sub.id or 0,
                level=level,
                source=OutcomeSource.AUTOMATIC,
                decided_by="t",
                protocol_id="p",
                protocol_version="1",
            )
        )
        self.session.flush()
        return sub.id or 0

    def credential(self, *, technique: Technique | None = None, trial: Trial | None = None) -> Credential | None:
        query = select(Credential).where(Credential.provider_id == self.provider.id)
        if technique is not None:
            query = query.where(Credential.technique_id == technique.id)
        if trial is not None:
            query = query.where(Credential.trial_id == trial.id)
        return self.session.exec(query).first()
