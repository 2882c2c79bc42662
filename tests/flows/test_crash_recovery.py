"""Crash recovery: ``kill -9`` the process running a submission at every step, run it again, and it ends as a run
without a crash does: the same results, outcome and credentials, no duplicate rows, a complete audit trail whose
hash chain verifies, and a submission store that agrees with the database.

The submission runs as ``rtqa submit`` in a child process that kills itself with SIGKILL at a chosen point
(``RTQA_CRASH_AT``, :mod:`flows.crashpoints`). It is then run again two ways: the centre sends the same files again
(``rtqa submit``), or the web service restarts and its runner picks up what is unfinished
(:class:`flows.runner.SubmissionRunner`; only after the submission row was committed, as before that the service
holds nothing to resume). Everything is compared with a run without a crash in a database of its own. Runs on
PostgreSQL when ``RTQA_DATABASE_URL`` names one, else on SQLite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from benchmarks.cases import build_case
from benchmarks.simulator import Deviation, simulate_submission
from flows._store import content_sha256
from flows.catalogue import build_reference, register_case
from flows.crashpoints import CRASH_POINTS, ENV
from flows.credentialing import submission_summary
from flows.runner import SubmissionRunner
from models.audit import verify_audit_chain
from models.auth import issue_token
from models.credentials import credential_view
from models.db import create_db_engine, session_scope
from models.enums import Role
from models.settings import Settings
from models.tables import (
    AuditEvent,
    BenchmarkCase,
    Credential,
    Outcome,
    ScoringRun,
    StructureResult,
    Submission,
)
from models.users import create_user
from tests import dbutil

pytestmark = pytest.mark.slow

CASE = "lung-sabr-outlining-mini"
PROVIDER = "the-christie"
REPO = Path(__file__).resolve().parents[2]

VOLATILE = frozenset(
    {"at", "decided_at", "valid_until", "granted_at", "submission_id", "outcome_id", "scoring_run_id"}
    | {"technique_credential_ids"}
)
"""Keys whose values are times or row ids: they differ between two databases even when nothing went wrong (on
PostgreSQL a rolled-back insert uses up its sequence value)."""


@dataclass(frozen=True)
class World:
    """What every scenario shares: the built case and the centre's submission folder."""

    cases_dir: Path
    folder: Path


@dataclass
class Db:
    url: str
    data_dir: Path
    token: str
    """An API token of the centre's user: ``rtqa submit`` runs as that user."""

    @property
    def settings(self) -> Settings:
        return Settings(database_url=self.url, data_dir=self.data_dir)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("crash-world")
    built = build_case(CASE, root / "cases")
    # A 3 mm PTV margin error: a decision that is not the best level, so the credential carries an outstanding stage.
    sim = simulate_submission(
        built, provider=PROVIDER, deviations=[Deviation.parse("margin_mm:PTV:3")], seed=0, out_dir=root / "upload"
    )
    return World(cases_dir=root / "cases", folder=sim.rtstruct_path.parent)


def _new_db(template_db_url: str, world: World, tmp: Path) -> Db:
    url = dbutil.new_database(tmp, template=template_db_url)
    reference = build_reference.fn(CASE, str(world.cases_dir))
    register_case.fn(reference, actor="tests", database_url=url)
    engine = create_db_engine(url)
    try:
        with session_scope(engine) as session:
            user = create_user(
                session, email="qa@christie.test", name="QA", role=Role.CENTRE, provider_code=PROVIDER, actor="tests"
            )
            token = issue_token(session, user=user, actor="tests")
    finally:
        engine.dispose()
    return Db(url, tmp / "data", token)


def _submit(db: Db, world: World, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    """``rtqa submit`` of the centre's folder in a child process (inline flow, no Prefect server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTQA_", "PREFECT_API"))}
    env |= {
        "RTQA_DATABASE_URL": db.url,
        "RTQA_DATA_DIR": str(db.data_dir),
        "RTQA_FLOW_RUNS": "inline",
        "RTQA_TOKEN": db.token,
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    if crash_at is not None:
        env[ENV] = crash_at
    argv = ["submit", str(world.folder), "--provider", PROVIDER, "--case", CASE]
    return subprocess.run(
        [sys.executable, "-c", "from portal.cli import app; app()", *argv],
        env=env,
        cwd=db.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _state(db: Db) -> dict[str, Any]:
    """Everything a run leaves behind that two runs of the same files must agree on, without times and row ids."""
    engine = create_db_engine(db.url)
    try:
        with Session(engine) as session:
            subs = session.exec(select(Submission)).all()
            runs = session.exec(select(ScoringRun)).all()
            results = session.exec(select(StructureResult).order_by(col(StructureResult.id))).all()
            outcomes = session.exec(select(Outcome)).all()
            creds = session.exec(select(Credential).order_by(col(Credential.id))).all()
            events = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
            return {
                "submissions": sorted((s.attempt, s.status.value, s.content_sha256) for s in subs),
                "runs": sorted((r.trigger.value, r.is_current, r.protocol_id, r.protocol_version) for r in runs),
                "results": sorted(
                    (r.structure, r.submitted_name, r.metric, r.value, r.unit, repr(_strip(r.parameters)))
                    for r in results
                ),
                "outcomes": sorted((o.level.value, tuple(o.reasons), o.source.value, o.is_current) for o in outcomes),
                "credentials": sorted(
                    (v.scope, v.code, v.status.value, repr(_strip(v.evidence)))
                    for v in (credential_view(session, c) for c in creds)
                ),
                "audit": [  # the actor differs by design: a restarted service records its own
                    (e.action, e.subject_type, repr(_strip(e.before)), repr(_strip(e.after)), e.reason) for e in events
                ],
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def clean(template_db_url: str, world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The state a run without a crash leaves (its own database)."""
    db = _new_db(template_db_url, world, tmp_path_factory.mktemp("crash-clean"))
    done = _submit(db, world)
    assert done.returncode == 3, done.stdout + done.stderr  # decided unacceptable_variation
    state = _state(db)
    state["summary"] = submission_summary(1, database_url=db.url)
    assert state["summary"]["status"] == "decided" and state["results"], state
    yield state
    dbutil.drop_database(db.url)


def _check_consistent(db: Db) -> None:
    """What must hold after any recovery, independent of the clean run: the audit chain verifies, every committed
    change has its audit event, and the store and the database agree."""
    engine = create_db_engine(db.url)
    try:
        with Session(engine) as session:
            report = verify_audit_chain(session)
            assert report.ok, report.problem
            [sub] = session.exec(select(Submission)).all()
            trail = [
                e
                for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
                if e.subject_type == "submission" and e.subject_id == str(sub.id)
            ]
            statuses = [e.action.removeprefix("submission.") for e in trail if e.action.startswith("submission.")]
            assert statuses == ["received", "validated", "scored", "decided"], statuses
            [run] = session.exec(select(ScoringRun).where(ScoringRun.submission_id == sub.id)).all()
            scored = next(e for e in trail if e.action == "submission.scored")
            assert scored.after is not None and scored.after["scoring_run_id"] == run.id
            [outcome] = session.exec(select(Outcome).where(Outcome.submission_id == sub.id)).all()
            [decided] = [e for e in trail if e.action == "outcome.decided"]
            assert decided.after is not None and decided.after["outcome_id"] == outcome.id == run.outcome_id
            all_results = session.exec(select(StructureResult).where(StructureResult.submission_id == sub.id)).all()
            assert {r.scoring_run_id for r in all_results} == {run.id}
            creds = session.exec(select(Credential)).all()
            case = session.get(BenchmarkCase, sub.case_id)
            assert case is not None
            assert [c for c in creds if c.technique_id == case.technique_id], "the decision's credential is missing"
            for cred in creds:
                last = session.exec(
                    select(AuditEvent)
                    .where(AuditEvent.subject_type == "credential", AuditEvent.subject_id == str(cred.id))
                    .order_by(col(AuditEvent.id).desc())
                ).first()
                assert last is not None, f"credential {cred.id} has no audit event"
                assert last.after is not None and last.after["status"] == cred.status.value
                assert last.after["evidence"] == cred.evidence, f"credential {cred.id}: last audit event is stale"
            stored = Path(sub.storage_path)
            assert stored.is_dir() and content_sha256(stored) == sub.content_sha256
    finally:
        engine.dispose()
    store = db.data_dir / "submissions"
    leftovers = [p for p in store.rglob("*") if p != stored and stored not in p.parents and p not in stored.parents]
    assert leftovers == [], f"files in the store that no submission owns: {leftovers}"
    uploads = db.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def _compare(db: Db, clean: dict[str, Any]) -> None:
    state = _state(db)
    state["summary"] = submission_summary(_only_submission_id(db), database_url=db.url)
    for key in ("submissions", "runs", "results", "outcomes", "credentials", "audit"):
        assert state[key] == clean[key], f"{key} differ from a run without a crash"
    assert {k: v for k, v in state["summary"].items() if k != "submission_id"} == {
        k: v for k, v in clean["summary"].items() if k != "submission_id"
    }


def _only_submission_id(db: Db) -> int:
    engine = create_db_engine(db.url)
    try:
        with Session(engine) as session:
            ids = session.exec(select(Submission.id)).all()
    finally:
        engine.dispose()
    assert len(ids) == 1, ids
    assert ids[0] is not None
    return ids[0]


AFTER_INGEST = CRASH_POINTS[CRASH_POINTS.index("ingest:committed") :]
"""Crash points after the submission row is committed: a restarted service has something to resume."""

ALL_SCENARIOS = [(point, "resubmit") for point in CRASH_POINTS] + [(point, "restart") for point in AFTER_INGEST]
"""Every crash point with every recovery that applies to it (20 scenarios; ``RTQA_CRASH_ALL=1`` runs them all)."""

EACH_POINT = [
    (point, "restart" if point in AFTER_INGEST and i % 2 == 0 else "resubmit") for i, point in enumerate(CRASH_POINTS)
]
"""Every crash point once, the two recoveries taking turns from ``ingest:committed`` on (11 scenarios, the default:
the full set takes about twice as long and exercises no further code)."""

SCENARIOS = ALL_SCENARIOS if os.environ.get("RTQA_CRASH_ALL") == "1" else EACH_POINT


@pytest.mark.parametrize(("point", "recovery"), SCENARIOS, ids=[f"{p}-{r}" for p, r in SCENARIOS])
def test_crash_then_run_again(
    point: str, recovery: str, template_db_url: str, world: World, clean: dict[str, Any], tmp_path: Path
) -> None:
    db = _new_db(template_db_url, world, tmp_path)
    try:
        crashed = _submit(db, world, crash_at=point)
        assert crashed.returncode == -signal.SIGKILL, (
            f"the run did not reach {point}: exit {crashed.returncode}\n{crashed.stdout}{crashed.stderr}"
        )
        if recovery == "resubmit":
            again = _submit(db, world)
            assert again.returncode == 3, again.stdout + again.stderr
        else:
            runner = SubmissionRunner(db.settings, use_prefect=False)
            runner.drain()
            assert runner.failures == {}
        _check_consistent(db)
        _compare(db, clean)
    finally:
        dbutil.drop_database(db.url)
