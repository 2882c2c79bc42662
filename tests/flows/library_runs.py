"""Helpers for flow tests on the library's own cases: build each case once, register it in a test database,
simulate a centre's submission and run it through the credentialing flow's task functions (``.fn``, no Prefect
server)."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import PlanCheck, PlanDeviation, SimulatedPlanSubmission, simulate_plan_submission
from flows._store import engine_for
from flows.catalogue import build_reference, register_case
from flows.credentialing import (
    decide_outcome,
    ingest_submission,
    score_submission,
    update_credentials,
    validate_submission,
)
from models.enums import SubmissionStatus
from models.settings import Settings
from models.tables import Outcome, Submission

PROVIDER = "the-royal-marsden"
"""The submitting provider (a code of the provider registry)."""


class CaseLibrary:
    """Library cases built on first use under one directory and kept for the module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[str, BuiltCase] = {}

    def get(self, case_id: str) -> BuiltCase:
        """The built case ``case_id`` (built once)."""
        if case_id not in self._built:
            self._built[case_id] = build_case(case_id, self.root)
        return self._built[case_id]

    def register(self, case_id: str, settings: Settings) -> BuiltCase:
        """Build (once) and register ``case_id`` in the settings' database, as ``publish_case`` does."""
        built = self.get(case_id)
        reference = build_reference.fn(case_id, str(self.root))
        register_case.fn(reference, actor="tests", database_url=settings.resolved_database_url)
        return built


def simulate(
    built: BuiltCase, out_dir: Path, *texts: str, check: PlanCheck | None = None, seed: int = 0
) -> SimulatedPlanSubmission:
    """A simulated plan or TPS-check submission of :data:`PROVIDER` with the deviations ``texts``."""
    return simulate_plan_submission(
        built,
        provider=PROVIDER,
        deviations=[PlanDeviation.parse(t) for t in texts],
        seed=seed,
        out_dir=out_dir,
        check=check,
    )


def run_flow(settings: Settings, directory: Path, built: BuiltCase) -> int:
    """Ingest, validate, score, decide and credential one submission folder; returns the submission id."""
    url, data = settings.resolved_database_url, str(settings.data_dir)
    sid = ingest_submission.fn(
        str(directory),
        provider_code=PROVIDER,
        case_code=built.spec.case_id,
        case_version=built.spec.version,
        actor="tests",
        database_url=url,
        data_dir=data,
    )
    if validate_submission.fn(sid, actor="tests", database_url=url):
        score_submission.fn(sid, actor="tests", database_url=url, data_dir=data)
    with Session(engine_for(url)) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        scored = sub.status is SubmissionStatus.SCORED
    if scored:
        decide_outcome.fn(sid, actor="tests", database_url=url, data_dir=data, validity_days=365)
        update_credentials.fn(sid, actor="tests", database_url=url, validity_days=365)
    return sid


def stored_outcome(settings: Settings, sid: int) -> tuple[str, list[str]]:
    """The stored automatic outcome level and reasons, or ``("rejected", [reason])``."""
    with Session(engine_for(settings.resolved_database_url)) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        if sub.status is SubmissionStatus.REJECTED:
            return "rejected", [sub.rejection_reason or ""]
        outcome = session.exec(select(Outcome).where(Outcome.submission_id == sid)).one()
        return outcome.level.value, list(outcome.reasons)
