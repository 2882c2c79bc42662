"""Test helper: the scoring run that results written directly by a test belong to."""

from __future__ import annotations

from sqlmodel import Session

from models.enums import ScoringTrigger
from models.scoring_runs import current_run, start_run
from models.tables import BenchmarkCase, Submission


def run_id(session: Session, submission_id: int) -> int:
    """The submission's current scoring run, started (as an initial run) if it has none."""
    run = current_run(session, submission_id)
    if run is None:
        sub = session.get(Submission, submission_id)
        assert sub is not None
        case = session.get(BenchmarkCase, sub.case_id)
        assert case is not None
        run = start_run(
            session,
            submission_id=submission_id,
            case_id=sub.case_id,
            protocol_id=case.protocol_id,
            protocol_version=case.protocol_version,
            trigger=ScoringTrigger.INITIAL,
            actor="tests",
        )
    assert run.id is not None
    return run.id
