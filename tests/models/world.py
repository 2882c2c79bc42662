"""A small credentialing world for model tests: one provider, lung SABR needing two QA stages (an outlining and a
planning benchmark, one case each), and two trials."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, select

from models.enums import OutcomeLevel, OutcomeSource, QAStage, SubmissionStatus
from models.stages import register_stage_requirements
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
    """A provider, lung SABR cases for two required stages, and a trial that needs lung SABR (and one that needs
    spine SABR too)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.provider = session.exec(select(Provider).where(Provider.code == "the-christie")).one()
        self.lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        self.spine = session.exec(select(Technique).where(Technique.code == "sabr_spine")).one()
        self.cases = {
            stage: BenchmarkCase(
                case_code=f"c-{stage.value}",
                version="1",
                title="t",
                technique_id=self.lung.id or 0,
                stage=stage,
                protocol_id="p",
                protocol_version="1",
                reference_sha256="0" * 64,
                reference_path="/x",
            )
            for stage in (QAStage.OUTLINING_BENCHMARK, QAStage.PLANNING_BENCHMARK)
        }
        for case in self.cases.values():
            session.add(case)
        self.case = self.cases[QAStage.OUTLINING_BENCHMARK]
        self.trial = Trial(code="LUNG-TRIAL", title="lung trial", protocol_id="p")
        self.both = Trial(code="BOTH-TRIAL", title="lung and spine trial")
        session.add(self.trial)
        session.add(self.both)
        session.flush()
        session.add(TrialRequirement(trial_id=self.trial.id or 0, technique_id=self.lung.id or 0))
        session.add(TrialRequirement(trial_id=self.both.id or 0, technique_id=self.lung.id or 0))
        session.add(TrialRequirement(trial_id=self.both.id or 0, technique_id=self.spine.id or 0))
        register_stage_requirements(
            session,
            protocol_id="p",
            requirements=[
                ("outlining_benchmark", "sabr_lung", "outlining benchmark"),
                ("planning_benchmark", "sabr_lung", "planning benchmark"),
            ],
            actor="t",
        )
        session.flush()
        self.attempts = 0

    def decided(self, level: OutcomeLevel, stage: QAStage = QAStage.OUTLINING_BENCHMARK) -> int:
        """A decided submission to the case of ``stage`` with an automatic outcome ``level`` decided at NOW."""
        self.attempts += 1
        sub = Submission(
            provider_id=self.provider.id or 0,
            case_id=self.cases[stage].id or 0,
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
                decided_at=NOW,
            )
        )
        self.session.flush()
        return sub.id or 0

    def passed_all(self, level: OutcomeLevel = OutcomeLevel.PER_PROTOCOL) -> int:
        """Both lung stages decided with ``level``; returns the planning submission id."""
        self.decided(level, QAStage.OUTLINING_BENCHMARK)
        return self.decided(level, QAStage.PLANNING_BENCHMARK)

    def credential(self, *, technique: Technique | None = None, trial: Trial | None = None) -> Credential | None:
        query = select(Credential).where(Credential.provider_id == self.provider.id)
        if technique is not None:
            query = query.where(Credential.technique_id == technique.id)
        if trial is not None:
            query = query.where(Credential.trial_id == trial.id)
        return self.session.exec(query).first()
