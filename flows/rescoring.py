"""Rescoring: when a protocol or a case reference gets a new version, score the stored submissions again.

Which submissions (:func:`flows.rescore_plan.plan_protocol_rescore`, :func:`flows.rescore_plan.plan_case_rescore`):

* protocol ``ID@V``: every *decided* submission to a case scored by protocol ``ID`` whose current scoring run used
  another version. The cases move to ``V`` (audited ``case.protocol_changed``), so later submissions are scored
  by it too.
* case ``CODE@V`` (a newer reference, published or imported as a new version of the same stage): every decided
  submission to any version of ``CODE`` whose current run was scored against another reference; scored against
  ``V``'s reference with ``V``'s protocol version. A submission that does not fit the new reference (e.g. another
  frame of reference) is left as it is, audited ``submission.rescore_skipped``.

Submissions still in progress are listed, not rescored: they are scored by the case's (new) protocol version when
they proceed; after a case rescore, run it again once they are decided. Since a rescore only touches submissions
not yet scored against its target, running it again is harmless. Rejected submissions never had results and are
left alone; facility questionnaires are not rescored.

What a rescore records, for each submission, in one transaction (:func:`rescore_submission`):

* a new scoring run with its own results beside the earlier run's, which stay queryable (no longer current);
* the differences (``ScoringRun.changes``): every criterion whose value, levels or result moved (old and new), the
  outcome level before and after, the protocol versions and case references old and new;
* a new automatic outcome; the earlier outcome stays, superseded. Its validity starts when the submission was
  first decided (``Outcome.valid_from``): rescoring never extends a credential;
* the credentials re-evaluated (:func:`models.credentials.apply_outcome`), each change audited with the protocol
  versions it moved between;
* audit events ``submission.rescored`` and ``outcome.rescored`` naming both protocol versions and references.

The flows ``rescore-protocol`` and ``rescore-case`` and the function behind ``rtqa rescore`` are in
:mod:`flows.rescore_flows`.

Override rule: a staff override that is current is never replaced by a rescore. The rescored automatic outcome is
recorded beside it (not current), the override stays current, and the run names the kept override
(``kept_override_id``); an ``outcome.review_required`` event says both levels. The submission awaits review
(:func:`models.scoring_runs.pending_reviews`) until staff decide again with a new override (which may adopt the
rescored level). Credentials are still re-evaluated (the override decides them, so they do not move).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from benchmarks.protocols import ProtocolError
from flows._store import engine_for
from flows.credentialing import (
    SUMMABLE_STAGES,
    SubmissionMismatchError,
    check_fits_case,
    reference_frame_of_reference,
)
from flows.evaluation import criterion_changes, evaluate_run
from flows.protocol_store import resolve_protocol
from flows.rescore_plan import RescoreItem
from flows.scoring import store_results
from flows.steps import relative_to_submission
from flows.submission_reads import read_submission, reading_once
from models.audit import record_audit
from models.credentials import apply_outcome
from models.enums import OutcomeLevel, OutcomeSource, QAStage, ScoringTrigger, SubmissionStatus
from models.outcomes import current_outcome
from models.scoring_runs import current_run, make_current, start_run
from models.tables import BenchmarkCase, Outcome, ScoringRun, Submission
from qa_checks.errors import QAChecksError
from qa_checks.protocol import Evaluation

__all__ = ["rescore_submission"]


def _label(session: Session, case_id: int) -> str:
    case = session.get(BenchmarkCase, case_id)
    return f"{case.case_code}@{case.version}" if case is not None else f"case {case_id}"


def _old_evaluation(session: Session, run: ScoringRun | None, stage: QAStage, data_dir: Path) -> Evaluation | None:
    """The earlier run's evaluation, or None when it cannot be reproduced (no run, or its protocol version is
    gone)."""
    if run is None or run.id is None:
        return None
    try:
        protocol = resolve_protocol(run.protocol_id, run.protocol_version, data_dir=data_dir)
    except ProtocolError:
        return None
    return evaluate_run(session, run.id, stage, protocol)


def _words(level: str) -> str:
    return level.replace("_", " ")


def _first_decision(session: Session, submission_id: int) -> datetime | None:
    times = [
        o.valid_from or o.decided_at
        for o in session.exec(select(Outcome).where(Outcome.submission_id == submission_id)).all()
    ]
    return min(times) if times else None


def _skip(session: Session, sub: Submission, *, actor: str, why: str, what: str) -> dict[str, Any]:
    """Audit that a submission was left as it was, and why (files named relative to the submission)."""
    why = relative_to_submission(why, sub.storage_path)
    record_audit(
        session,
        actor=actor,
        action="submission.rescore_skipped",
        subject_type="submission",
        subject_id=sub.id or 0,
        after={"rescore": what},
        reason=why,
    )
    session.commit()
    return {"submission_id": sub.id, "status": "skipped", "reason": why}


def rescore_submission(
    item: RescoreItem, *, actor: str, database_url: str, data_dir: Path, validity_days: int
) -> dict[str, Any]:
    """Rescore one submission (see the module docstring); returns what happened as plain data.

    ``status`` is ``"rescored"``, ``"skipped"`` (does not fit the reference, cannot be scored, or no longer
    decided; audited with the reason) or ``"unchanged"`` (already scored against the target).
    """
    with Session(engine_for(database_url)) as session:
        sub = session.get(Submission, item.submission_id)
        if sub is None:
            raise LookupError(f"submission {item.submission_id} does not exist")
        target = session.get(BenchmarkCase, item.case_id)
        assert target is not None
        new_protocol_label = f"{item.protocol_id}@{item.protocol_version}"
        old_run = current_run(session, item.submission_id)
        if old_run is not None and (old_run.case_id, old_run.protocol_id, old_run.protocol_version) == (
            item.case_id,
            item.protocol_id,
            item.protocol_version,
        ):
            return {"submission_id": sub.id, "status": "unchanged", "reason": "already scored against the target"}
        previous = current_outcome(session, item.submission_id)
        old_case = old_run.case_id if old_run is not None else sub.case_id
        old_protocol_label = (
            f"{old_run.protocol_id}@{old_run.protocol_version}"
            if old_run is not None
            else (f"{previous.protocol_id}@{previous.protocol_version}" if previous is not None else "none")
        )
        what = f"protocol {old_protocol_label} -> {new_protocol_label}"
        if old_case != item.case_id:
            what += f", case {_label(session, old_case)} -> {_label(session, item.case_id)}"
        if sub.status is not SubmissionStatus.DECIDED or previous is None:
            return _skip(session, sub, actor=actor, why="not decided", what=what)
        protocol = resolve_protocol(item.protocol_id, item.protocol_version, data_dir=data_dir)
        with reading_once():  # checking the fit and scoring read the stored files once
            try:
                if old_case != item.case_id:  # another reference: the submission must fit it, as at validation
                    submitted = read_submission(sub.storage_path, sum_beams=target.stage in SUMMABLE_STAGES)
                    reference_frame = reference_frame_of_reference(Path(target.reference_path))
                    check_fits_case(submitted, reference_frame, target.stage, "the submission")
                run = start_run(
                    session,
                    submission_id=item.submission_id,
                    case_id=item.case_id,
                    protocol_id=protocol.id,
                    protocol_version=protocol.version,
                    trigger=ScoringTrigger.RESCORE,
                    actor=actor,
                    reason=f"rescore: {what}"[:300],
                    supersedes=old_run,
                )
                store_results(
                    session,
                    run,
                    stage=target.stage,
                    storage=sub.storage_path,
                    reference_dir=Path(target.reference_path),
                    protocol=protocol,
                )
            except (QAChecksError, SubmissionMismatchError, LookupError) as err:
                session.rollback()
                sub = session.get(Submission, item.submission_id)
                assert sub is not None
                return _skip(session, sub, actor=actor, why=f"cannot rescore: {err}", what=what)
        return _record(
            session,
            sub,
            run,
            old_run=old_run,
            previous=previous,
            new_evaluation=evaluate_run(session, run.id or 0, target.stage, protocol),
            old_evaluation=_old_evaluation(session, old_run, target.stage, data_dir),
            what=what,
            actor=actor,
            validity_days=validity_days,
        )


def _record(
    session: Session,
    sub: Submission,
    run: ScoringRun,
    *,
    old_run: ScoringRun | None,
    previous: Outcome,
    new_evaluation: Evaluation,
    old_evaluation: Evaluation | None,
    what: str,
    actor: str,
    validity_days: int,
) -> dict[str, Any]:
    """Record a rescored run's outcome, differences, audit events and credentials (see the module docstring)."""
    sid = sub.id or 0
    old_auto = session.get(Outcome, old_run.outcome_id) if old_run is not None and old_run.outcome_id else None
    keep_override = previous.source is OutcomeSource.OVERRIDE
    first = _first_decision(session, sid)
    if not keep_override:
        previous.is_current = False
        session.add(previous)
        session.flush()
    outcome = Outcome(
        submission_id=sid,
        level=OutcomeLevel(new_evaluation.outcome.value),
        reasons=list(new_evaluation.reasons),
        source=OutcomeSource.AUTOMATIC,
        decided_by=actor,
        protocol_id=run.protocol_id,
        protocol_version=run.protocol_version,
        supersedes_id=(old_auto.id if old_auto is not None else None) if keep_override else previous.id,
        is_current=not keep_override,
        valid_from=first,
    )
    session.add(outcome)
    session.flush()
    changes = [c.as_dict() for c in criterion_changes(old_evaluation, new_evaluation)]
    old_level = previous.level.value
    current_level = previous.level.value if keep_override else outcome.level.value
    run.outcome_id = outcome.id
    run.kept_override_id = previous.id if keep_override else None
    run.changes = {
        "what": what,
        "criteria": changes,
        "outcome": {"old": old_level, "new": current_level},
        "automatic_outcome": {"old": old_auto.level.value if old_auto else None, "new": outcome.level.value},
        "protocol": {
            "old": f"{old_run.protocol_id}@{old_run.protocol_version}" if old_run else None,
            "new": f"{run.protocol_id}@{run.protocol_version}",
        },
        "case": {
            "old": _label(session, old_run.case_id) if old_run else None,
            "new": _label(session, run.case_id),
        },
        "override_kept": keep_override,
    }
    make_current(session, run)
    reason = f"rescore: {what}"
    record_audit(
        session,
        actor=actor,
        action="submission.rescored",
        subject_type="submission",
        subject_id=sid,
        before={
            "scoring_run_id": old_run.id if old_run else None,
            "protocol": run.changes["protocol"]["old"],
            "case": run.changes["case"]["old"],
            "outcome": old_level,
        },
        after={
            "scoring_run_id": run.id,
            "protocol": run.changes["protocol"]["new"],
            "case": run.changes["case"]["new"],
            "outcome": current_level,
            "criteria_changed": changes,
        },
        reason=reason,
    )
    record_audit(
        session,
        actor=actor,
        action="outcome.rescored",
        subject_type="submission",
        subject_id=sid,
        before={"outcome_id": previous.id, "level": old_level, "source": previous.source.value},
        after={"outcome_id": outcome.id, "level": outcome.level.value, "current": outcome.is_current},
        reason=reason,
    )
    if keep_override:
        record_audit(
            session,
            actor=actor,
            action="outcome.review_required",
            subject_type="submission",
            subject_id=sid,
            before={"automatic_level": old_auto.level.value if old_auto else None},
            after={
                "override_id": previous.id,
                "override_level": previous.level.value,
                "automatic_level": outcome.level.value,
            },
            reason=(
                f"{reason}: the staff override ({_words(previous.level.value)}) stays current; the rescored "
                f"automatic outcome is {_words(outcome.level.value)}; review with `rtqa outcomes override {sid}`"
            ),
        )
    touched = apply_outcome(session, submission_id=sid, actor=actor, validity_days=validity_days, cause=reason)
    session.commit()
    return {
        "submission_id": sid,
        "status": "rescored",
        "what": what,
        "scoring_run_id": run.id,
        "old_outcome": old_level,
        "new_outcome": current_level,
        "automatic_outcome": outcome.level.value,
        "review_required": keep_override,
        "criteria_changed": changes,
        "credentials": touched,
    }
