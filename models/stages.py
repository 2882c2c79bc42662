"""Where each QA stage of a provider's credential stands.

A protocol lists the stages a credential needs (``required_credentials``: facility questionnaire, outlining
benchmark, planning benchmark, complex treatment dosimetry check, ...). They are registered as
:class:`~models.tables.StageRequirement` rows per technique, or per trial for a stage only that trial asks for.

Definition of a stage's state for one provider (at time ``now``, with a validity period of ``validity_days``):

* its *evidence* is the provider's latest submission (highest id) to a case of that stage and technique (for a
  trial stage: a case scored by the trial's protocol) that is decided or still being processed; rejected uploads
  are not evidence (they never reached a decision);
* ``missing`` without such a submission; ``in_progress`` while the latest one is received, validated or scored;
* ``passed`` when its current outcome passes (per protocol, acceptable or justified variation) and
  ``decided_at + validity_days`` lies after ``now``; ``lapsed`` when that time has passed; ``failed`` when the
  current outcome is an unacceptable variation. ``decided_at`` is the outcome's decision time, except for an
  outcome decided by a rescore (new protocol version or case reference), which keeps the time the submission
  was first decided (``Outcome.valid_from``): rescoring never extends a stage's validity.

The latest attempt counts, as a reviewer reads a resubmission: a centre whose newest plan fails is not passing
that stage, whatever an older attempt scored. Staff can override any attempt's outcome (audited).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from models.audit import record_audit
from models.enums import QAStage, StageStatus, SubmissionStatus
from models.outcomes import current_outcome
from models.tables import BenchmarkCase, StageRequirement, Submission, Technique, Trial


class StageRequirementError(ValueError):
    """A stage requirement names something the database does not know (technique or trial code)."""


@dataclass(frozen=True)
class StageState:
    """One required stage of a credential and the evidence for it (see the module docstring)."""

    stage: QAStage
    description: str
    status: StageStatus
    case: str | None = None
    submission_id: int | None = None
    attempt: int | None = None
    outcome: str | None = None
    decided_at: datetime | None = None
    valid_until: datetime | None = None

    @property
    def label(self) -> str:
        """The stage in words, with its description when the protocol gives one."""
        return self.description or self.stage.label

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 UTC times)."""
        return {
            "stage": self.stage.value,
            "description": self.label,
            "status": self.status.value,
            "case": self.case,
            "submission_id": self.submission_id,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }


def register_stage_requirements(
    session: Session,
    *,
    protocol_id: str,
    requirements: Sequence[tuple[str, str, str]],
    trial_code: str | None = None,
    actor: str,
) -> list[int]:
    """Register ``(stage, technique code, description)`` requirements of a protocol; idempotent.

    ``trial_code`` makes them trial-specific (only that trial's credential needs them). Returns the ids of the
    rows added.

    Raises:
        StageRequirementError: unknown technique or trial code, or an unknown stage.
    """
    trial_id: int | None = None
    if trial_code is not None:
        trial = session.exec(select(Trial).where(Trial.code == trial_code)).first()
        if trial is None or trial.id is None:
            raise StageRequirementError(f"protocol {protocol_id!r}: unknown trial {trial_code!r}")
        trial_id = trial.id
    added: list[int] = []
    for stage_text, technique_code, description in requirements:
        try:
            stage = QAStage(stage_text)
        except ValueError:
            known = ", ".join(s.value for s in QAStage)
            raise StageRequirementError(
                f"protocol {protocol_id!r}: unknown QA stage {stage_text!r}; known stages: {known}"
            ) from None
        technique = session.exec(select(Technique).where(Technique.code == technique_code)).first()
        if technique is None or technique.id is None:
            raise StageRequirementError(
                f"protocol {protocol_id!r}: unknown technique {technique_code!r}; run `rtqa db init`"
            )
        query = select(StageRequirement).where(
            StageRequirement.technique_id == technique.id, StageRequirement.stage == stage
        )
        query = query.where(
            col(StageRequirement.trial_id).is_(None) if trial_id is None else StageRequirement.trial_id == trial_id
        )
        if session.exec(query).first() is not None:
            continue
        row = StageRequirement(
            technique_id=technique.id, trial_id=trial_id, stage=stage, protocol_id=protocol_id, description=description
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        added.append(row.id)
        record_audit(
            session,
            actor=actor,
            action="stage_requirement.registered",
            subject_type="stage_requirement",
            subject_id=row.id,
            after={"stage": stage.value, "technique": technique_code, "trial": trial_code, "protocol": protocol_id},
        )
    return added


def required_stages(session: Session, *, technique_id: int, trial_id: int | None = None) -> list[tuple[QAStage, str]]:
    """The stages required for a technique (``trial_id`` None) or only for a trial, in protocol order."""
    query = select(StageRequirement).where(StageRequirement.technique_id == technique_id)
    query = query.where(
        col(StageRequirement.trial_id).is_(None) if trial_id is None else StageRequirement.trial_id == trial_id
    )
    rows = session.exec(query.order_by(col(StageRequirement.id))).all()
    return [(row.stage, row.description) for row in rows]


def stage_state(
    session: Session,
    *,
    provider_id: int,
    technique_id: int,
    stage: QAStage,
    description: str = "",
    protocol_id: str | None = None,
    validity_days: int,
    now: datetime,
) -> StageState:
    """The state of one stage for a provider (see the module docstring); ``protocol_id`` limits the evidence to
    cases scored by that protocol (trial-specific stages)."""
    query = (
        select(Submission, BenchmarkCase)
        .join(BenchmarkCase, col(BenchmarkCase.id) == col(Submission.case_id))
        .where(
            Submission.provider_id == provider_id,
            BenchmarkCase.technique_id == technique_id,
            BenchmarkCase.stage == stage,
            Submission.status != SubmissionStatus.REJECTED,
        )
        .order_by(col(Submission.id).desc())
    )
    if protocol_id is not None:
        query = query.where(BenchmarkCase.protocol_id == protocol_id)
    found = session.exec(query).first()
    if found is None:
        return StageState(stage, description, StageStatus.MISSING)
    sub, case = found
    evidence: dict[str, Any] = {"case": f"{case.case_code}@{case.version}", "submission_id": sub.id}
    evidence["attempt"] = sub.attempt
    outcome = current_outcome(session, sub.id or 0) if sub.status is SubmissionStatus.DECIDED else None
    if outcome is None:
        return StageState(stage, description, StageStatus.IN_PROGRESS, **evidence)
    decided_at = outcome.valid_from or outcome.decided_at
    valid_until = decided_at + timedelta(days=validity_days)
    if not outcome.level.passes:
        status = StageStatus.FAILED
    elif valid_until <= now:
        status = StageStatus.LAPSED
    else:
        status = StageStatus.PASSED
    return StageState(
        stage,
        description,
        status,
        outcome=outcome.level.value,
        decided_at=decided_at,
        valid_until=valid_until if outcome.level.passes else None,
        **evidence,
    )


def stage_states(
    session: Session,
    *,
    provider_id: int,
    technique_id: int,
    trial_id: int | None = None,
    protocol_id: str | None = None,
    validity_days: int,
    now: datetime,
) -> list[StageState]:
    """The state of every stage required for a technique (or only for a trial), in protocol order."""
    return [
        stage_state(
            session,
            provider_id=provider_id,
            technique_id=technique_id,
            stage=stage,
            description=description,
            protocol_id=protocol_id,
            validity_days=validity_days,
            now=now,
        )
        for stage, description in required_stages(session, technique_id=technique_id, trial_id=trial_id)
    ]
