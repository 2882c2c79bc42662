"""Reviewing outcomes: a QA staff override supersedes the current outcome, with a justification, and is audited."""

from __future__ import annotations

from sqlmodel import Session, col, select

from models.audit import record_audit
from models.enums import OutcomeLevel, OutcomeSource, SubmissionStatus
from models.tables import Outcome, Submission


class OverrideError(ValueError):
    """An override cannot be recorded; the message says why (not decided yet, no justification)."""


class UnknownSubmissionError(OverrideError, LookupError):
    """No submission has the given id."""


def current_outcome(session: Session, submission_id: int) -> Outcome | None:
    """The outcome in force for a submission, or None before a decision."""
    return session.exec(
        select(Outcome).where(Outcome.submission_id == submission_id, col(Outcome.is_current).is_(True))
    ).first()


def override_outcome(
    session: Session,
    *,
    submission_id: int,
    level: OutcomeLevel,
    justification: str,
    actor: str,
    validity_days: int,
) -> Outcome:
    """Replace the current outcome of a decided submission with ``level``, then update the credentials.

    The previous outcome stays in the table (no longer current) and the new row points at it; the audit event
    holds both levels and the justification.
    """
    justification = justification.strip()
    if not justification:
        raise OverrideError("an override needs a justification: say why the automatic outcome is replaced")
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise UnknownSubmissionError(f"submission {submission_id} does not exist")
    previous = current_outcome(session, submission_id)
    if sub.status is not SubmissionStatus.DECIDED or previous is None:
        raise OverrideError(
            f"submission {submission_id} is {sub.status.value}, not decided: only a decided outcome can be overridden"
        )
    previous.is_current = False
    session.add(previous)
    session.flush()
    outcome = Outcome(
        submission_id=submission_id,
        level=level,
        reasons=[f"override by {actor}: {justification}"],
        source=OutcomeSource.OVERRIDE,
        decided_by=actor,
        justification=justification,
        protocol_id=previous.protocol_id,
        protocol_version=previous.protocol_version,
        supersedes_id=previous.id,
    )
    session.add(outcome)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="outcome.overridden",
        subject_type="submission",
        subject_id=submission_id,
        before={"outcome_id": previous.id, "level": previous.level.value, "source": previous.source.value},
        after={"outcome_id": outcome.id, "level": level.value, "source": OutcomeSource.OVERRIDE.value},
        reason=justification,
    )
    from models.credentials import apply_outcome  # credentials reads current outcomes from here

    apply_outcome(session, submission_id=submission_id, actor=actor, validity_days=validity_days)
    return outcome
