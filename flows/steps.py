"""Pieces every flow task shares: the run logger, the retry rule, status changes."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from flows.deferred import prefect_loaded
from models.audit import record_audit
from models.enums import OutcomeLevel, OutcomeSource, SubmissionStatus
from models.settings import Settings
from models.tables import BenchmarkCase, Outcome, Provider, Submission
from models.types import utcnow


def logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a flow or task run; the module logger when a task body is called directly (always so
    in a process that has not imported Prefect: no run can be under way there)."""
    if not prefect_loaded():
        return logging.getLogger("flows")
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows")


class SubmissionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose lines name the submission and its provider: the message is prefixed with
    ``submission 3 (the-christie, CASE@1.0, attempt 1): `` and every record carries ``submission_id`` and
    ``provider`` as extra fields (for a log handler or formatter that selects on them)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        label = extra.pop("label", None)
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return (f"{label}: {msg}" if label else msg), kwargs


def submission_logger(session: Session, submission_id: int) -> SubmissionLog:
    """:func:`logger` for one submission: lines prefixed with :func:`describe_submission`, records carrying
    ``submission_id`` and ``provider``."""
    sub, _ = load_submission_and_case(session, submission_id)
    provider = session.get(Provider, sub.provider_id)
    code = provider.code if provider is not None else f"provider {sub.provider_id}"
    extra = {"submission_id": submission_id, "provider": code, "label": describe_submission(session, submission_id)}
    return SubmissionLog(logger(), extra)


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only transient I/O failures (file system, database connection), never bad input."""
    try:
        state.result()
    except (OSError, OperationalError):
        return True
    except Exception:
        return False
    return False


def data_dir_or_default(data_dir: str | None) -> Path:
    """``data_dir`` as a path, or the configured data directory."""
    return Path(data_dir) if data_dir else Settings().data_dir


def set_status(
    session: Session,
    sub: Submission,
    status: SubmissionStatus,
    *,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Move a submission to ``status`` (a rejection keeps its reason) and audit the change.

    A rejection reason names files relative to the submission folder, never the server's storage path (see
    :func:`relative_to_submission`).
    """
    if reason is not None:
        reason = relative_to_submission(reason, sub.storage_path)
    before = {"status": sub.status.value}
    sub.status = status
    sub.rejection_reason = reason if status is SubmissionStatus.REJECTED else None
    sub.updated_at = utcnow()
    session.add(sub)
    record_audit(
        session,
        actor=actor,
        action=f"submission.{status.value}",
        subject_type="submission",
        subject_id=sub.id or 0,
        before=before,
        after={"status": status.value, **(details or {})},
        reason=reason,
    )


def relative_to_submission(message: str, storage_path: str) -> str:
    """``message`` with the submission's storage folder taken out of every path in it.

    ``/data/submissions/p/case@1.0/<sha>/rs.dcm`` becomes ``rs.dcm``; the folder itself becomes "the submission".
    Both the stored and the resolved form of the folder are replaced.
    """
    roots = {str(Path(storage_path)), str(Path(storage_path).resolve())}
    for root in sorted(roots, key=len, reverse=True):
        message = message.replace(root + os.sep, "").replace(root, "the submission")
    return message


def load_submission_and_case(session: Session, submission_id: int) -> tuple[Submission, BenchmarkCase]:
    """The submission and its case.

    Raises:
        LookupError: no submission has that id.
    """
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise LookupError(f"submission {submission_id} does not exist")
    case = session.get(BenchmarkCase, sub.case_id)
    assert case is not None
    return sub, case


def describe_submission(session: Session, submission_id: int) -> str:
    """How log lines name a submission: ``"submission 3 (the-christie, lung-sabr-outlining-mini@1.0, attempt 1)"``."""
    sub, case = load_submission_and_case(session, submission_id)
    provider = session.get(Provider, sub.provider_id)
    code = provider.code if provider is not None else f"provider {sub.provider_id}"
    return f"submission {submission_id} ({code}, {case.case_code}@{case.version}, attempt {sub.attempt})"


def new_submission(
    session: Session, *, provider: Provider, case: BenchmarkCase, sha: str, storage_path: Path, actor: str
) -> Submission:
    """Add the provider's next attempt at ``case`` (status received) and audit it; the caller commits."""
    assert provider.id is not None and case.id is not None
    previous = session.exec(
        select(Submission.attempt)
        .where(Submission.provider_id == provider.id, Submission.case_id == case.id)
        .order_by(col(Submission.attempt).desc())
    ).first()
    sub = Submission(
        provider_id=provider.id,
        case_id=case.id,
        attempt=(previous or 0) + 1,
        content_sha256=sha,
        status=SubmissionStatus.RECEIVED,
        storage_path=str(storage_path.resolve()),
        submitted_by=actor,
    )
    session.add(sub)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="submission.received",
        subject_type="submission",
        subject_id=sub.id or 0,
        after={
            "provider": provider.code,
            "case": f"{case.case_code}@{case.version}",
            "attempt": sub.attempt,
            "content_sha256": sha,
        },
    )
    return sub


def record_decision(
    session: Session,
    sub: Submission,
    *,
    level: str,
    reasons: list[str],
    actor: str,
    protocol_id: str,
    protocol_version: str,
) -> Outcome:
    """Record the automatic outcome of a scored submission, audit it and mark the submission decided."""
    outcome = Outcome(
        submission_id=sub.id or 0,
        level=OutcomeLevel(level),
        reasons=list(reasons),
        source=OutcomeSource.AUTOMATIC,
        decided_by=actor,
        protocol_id=protocol_id,
        protocol_version=protocol_version,
    )
    session.add(outcome)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="outcome.decided",
        subject_type="submission",
        subject_id=sub.id or 0,
        after={"outcome_id": outcome.id, "level": outcome.level.value, "reasons": list(reasons)},
    )
    set_status(session, sub, SubmissionStatus.DECIDED, actor=actor)
    return outcome


def add_case(session: Session, case: BenchmarkCase, *, actor: str, action: str = "case.registered") -> BenchmarkCase:
    """Insert a benchmark case and audit it (code, version, stage, reference hash); the caller commits."""
    session.add(case)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action=action,
        subject_type="benchmark_case",
        subject_id=case.id or 0,
        after={
            "case": f"{case.case_code}@{case.version}",
            "stage": case.stage.value,
            "sha256": case.reference_sha256,
        },
    )
    return case
