"""Scoring runs: which stored results are a submission's results, and which rescored submissions await review.

A submission is scored once on arrival (an ``initial`` run) and again whenever its protocol or case reference gets
a new version (a ``rescore`` run, see :class:`models.tables.ScoringRun`). Every run keeps its own results; the
*current* run's results are the submission's results. Definitions:

* the current run of a submission is its run with ``is_current`` true (at most one);
* a review is *pending* for a run whose rescore found a staff override current (``kept_override_id``) while that
  override is still the submission's current outcome. It ends when staff decide again (a new override, e.g. one
  adopting the rescored automatic level), which supersedes the kept override.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from models.enums import ScoringTrigger
from models.tables import DoseResult, Outcome, PlanResult, ScoringRun, StructureResult

__all__ = [
    "current_results",
    "current_run",
    "make_current",
    "pending_reviews",
    "results_of_run",
    "runs_as_dicts",
    "runs_of",
    "start_run",
]

ResultRow = TypeVar("ResultRow", StructureResult, PlanResult, DoseResult)


def current_run(session: Session, submission_id: int) -> ScoringRun | None:
    """The submission's current scoring run, or None before it is scored."""
    return session.exec(
        select(ScoringRun).where(ScoringRun.submission_id == submission_id, col(ScoringRun.is_current).is_(True))
    ).first()


def runs_of(session: Session, submission_id: int) -> list[ScoringRun]:
    """Every scoring run of a submission, oldest first."""
    return list(
        session.exec(
            select(ScoringRun).where(ScoringRun.submission_id == submission_id).order_by(col(ScoringRun.id))
        ).all()
    )


def results_of_run(session: Session, table: type[ResultRow], run_id: int) -> Sequence[ResultRow]:
    """The results one run stored in ``table`` (structure, plan or dose results), in insertion order."""
    return session.exec(select(table).where(table.scoring_run_id == run_id).order_by(col(table.id))).all()


def current_results(session: Session, table: type[ResultRow], submission_id: int) -> Sequence[ResultRow]:
    """The submission's results in ``table`` from its current scoring run (none before it is scored)."""
    run = current_run(session, submission_id)
    return [] if run is None or run.id is None else results_of_run(session, table, run.id)


def start_run(
    session: Session,
    *,
    submission_id: int,
    case_id: int,
    protocol_id: str,
    protocol_version: str,
    trigger: ScoringTrigger,
    actor: str,
    reason: str = "",
    supersedes: ScoringRun | None = None,
) -> ScoringRun:
    """Add a scoring run (flushed, so it has an id); the caller stores its results and commits.

    An initial run is current at once; a rescore run is not current until :func:`make_current`.
    """
    run = ScoringRun(
        submission_id=submission_id,
        case_id=case_id,
        protocol_id=protocol_id,
        protocol_version=protocol_version,
        trigger=trigger,
        reason=reason,
        supersedes_id=supersedes.id if supersedes is not None else None,
        is_current=trigger is ScoringTrigger.INITIAL,
        created_by=actor,
    )
    session.add(run)
    session.flush()
    return run


def make_current(session: Session, run: ScoringRun) -> ScoringRun | None:
    """Make ``run`` its submission's current run; returns the run it replaced (kept, no longer current), if any.
    The caller audits the change (see :mod:`flows.rescoring`)."""
    previous = current_run(session, run.submission_id)
    if previous is not None and previous.id != run.id:
        previous.is_current = False
        session.add(previous)
        session.flush()
    run.is_current = True
    session.add(run)
    session.flush()
    return previous if previous is not None and previous.id != run.id else None


def pending_reviews(session: Session, *, submission_id: int | None = None) -> list[ScoringRun]:
    """Rescore runs whose kept staff override is still the current outcome (see the module docstring), oldest
    first; optionally of one submission."""
    query = (
        select(ScoringRun)
        .join(Outcome, col(Outcome.id) == col(ScoringRun.kept_override_id))
        .where(col(ScoringRun.is_current).is_(True), col(Outcome.is_current).is_(True))
        .order_by(col(ScoringRun.id))
    )
    if submission_id is not None:
        query = query.where(ScoringRun.submission_id == submission_id)
    return list(session.exec(query).all())


def runs_as_dicts(session: Session, submission_id: int) -> list[dict[str, Any]]:
    """Every scoring run of a submission as JSON-ready data, oldest first: what it was scored against, why,
    whether current, its automatic outcome, what changed, and whether a kept override awaits review."""
    pending = {r.id for r in pending_reviews(session, submission_id=submission_id)}
    return [
        {
            "id": run.id,
            "trigger": run.trigger.value,
            "reason": run.reason,
            "case_id": run.case_id,
            "protocol": f"{run.protocol_id}@{run.protocol_version}",
            "current": run.is_current,
            "supersedes": run.supersedes_id,
            "outcome_id": run.outcome_id,
            "kept_override_id": run.kept_override_id,
            "review_pending": run.id in pending,
            "changes": dict(run.changes),
            "created_by": run.created_by,
            "created_at": run.created_at.isoformat(),
        }
        for run in runs_of(session, submission_id)
    ]
