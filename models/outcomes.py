"""Reviewing outcomes: a QA staff override supersedes the current outcome, with a justification, and is audited.

Overriding an earlier attempt needs explicit confirmation. The provider's *latest attempt* at a case is its
highest-numbered submission to the same case (code and version, as attempts are numbered) that was not rejected:
a rejected upload never reached a decision and is not the stage's evidence (see :mod:`models.stages`), while a
later attempt still being scored is. An override of any other attempt is refused unless confirmed, and when
confirmed it says so in the new outcome's reasons and in its audit event.
"""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from models.audit import record_audit
from models.enums import OutcomeLevel, OutcomeSource, SubmissionStatus
from models.tables import Outcome, Submission


class OverrideError(ValueError):
    """An override cannot be recorded; the message says why (not decided yet, no justification)."""


class UnknownSubmissionError(OverrideError, LookupError):
    """No submission has the given id."""


class NotLatestAttemptError(OverrideError):
    """The override is of an earlier attempt than the provider's latest and was not confirmed.

    Attributes:
        attempt: the attempt number of the submission to override.
        latest: the provider's latest attempt number at the case.
    """

    def __init__(self, message: str, *, attempt: int, latest: int) -> None:
        super().__init__(message)
        self.attempt = attempt
        self.latest = latest


def latest_attempt(session: Session, sub: Submission) -> int:
    """The provider's latest attempt number at ``sub``'s case (see the module docstring); ``sub.attempt`` when
    every later attempt was rejected."""
    latest = session.exec(
        select(func.max(Submission.attempt)).where(
            Submission.provider_id == sub.provider_id,
            Submission.case_id == sub.case_id,
            Submission.status != SubmissionStatus.REJECTED,
        )
    ).one()
    return max(latest or 0, sub.attempt)


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
    confirm_not_latest: bool = False,
) -> Outcome:
    """Replace the current outcome of a decided submission with ``level``, then update the credentials.

    The previous outcome stays in the table (no longer current) and the new row points at it; the audit event
    holds both levels, the justification and the attempt overridden.

    Raises:
        UnknownSubmissionError: no such submission.
        NotLatestAttemptError: the submission is an earlier attempt and ``confirm_not_latest`` is False.
        OverrideError: a blank justification, or the submission is not decided.
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
    latest = latest_attempt(session, sub)
    earlier = sub.attempt < latest
    if earlier and not confirm_not_latest:
        raise NotLatestAttemptError(
            f"submission {submission_id} is attempt {sub.attempt} of {latest}, not the provider's latest attempt at "
            "this case: overriding an earlier attempt needs explicit confirmation",
            attempt=sub.attempt,
            latest=latest,
        )
    previous.is_current = False
    session.add(previous)
    session.flush()
    reasons = [f"override by {actor}: {justification}"]
    if earlier:
        reasons.append(
            f"an earlier attempt (attempt {sub.attempt} of {latest}) overridden with the reviewer's confirmation"
        )
    outcome = Outcome(
        submission_id=submission_id,
        level=level,
        reasons=reasons,
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
        after={
            "outcome_id": outcome.id,
            "level": level.value,
            "source": OutcomeSource.OVERRIDE.value,
            "attempt": sub.attempt,
            "latest_attempt": latest,
            "earlier_attempt": earlier,
        },
        reason=justification,
    )
    from models.credentials import apply_outcome  # credentials reads current outcomes from here

    apply_outcome(session, submission_id=submission_id, actor=actor, validity_days=validity_days)
    return outcome
