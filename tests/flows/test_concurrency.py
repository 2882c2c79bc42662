"""Twenty submissions from one provider for one case at once: unique attempt numbers, nothing lost or orphaned,
and a credential that agrees with the latest attempt. Runs on PostgreSQL when RTQA_DATABASE_URL names one."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from sqlmodel import Session, col, select

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import Deviation, simulate_submission
from flows.catalogue import build_reference, register_case
from flows.credentialing import store_submission
from flows.runner import SubmissionRunner
from models.credentials import refresh_technique_credential
from models.db import create_db_engine
from models.enums import OutcomeLevel, QAStage, SubmissionStatus
from models.settings import Settings
from models.stages import stage_states
from models.tables import AuditEvent, BenchmarkCase, Credential, Outcome, Provider, Submission
from models.types import utcnow

CASE = "lung-sabr-outlining-mini"
PROVIDER = "the-christie"
N = 20

pytestmark = pytest.mark.slow


def _variants(built: BuiltCase, tmp: Path) -> list[tuple[Path, OutcomeLevel]]:
    """N submissions of distinct content: even ones as drawn, odd ones with a 3 mm PTV margin error; each RTSTRUCT
    carries its own description so no two are the same files."""
    good = simulate_submission(built, provider=PROVIDER, deviations=[], seed=0, out_dir=tmp / "good")
    bad = simulate_submission(
        built, provider=PROVIDER, deviations=[Deviation.parse("margin_mm:PTV:3")], seed=0, out_dir=tmp / "bad"
    )
    assert good.expected_outcome is not bad.expected_outcome
    out = []
    for k in range(N):
        base = bad if k % 2 else good
        folder = tmp / f"sub{k:02d}"
        shutil.copytree(base.rtstruct_path.parent, folder)
        rtstruct = folder / base.rtstruct_path.relative_to(base.rtstruct_path.parent)
        ds = pydicom.dcmread(rtstruct)
        ds.StructureSetDescription = f"upload {k}"
        ds.save_as(rtstruct)
        out.append((folder, base.expected_outcome))
    return out


def test_twenty_at_once(settings: Settings, tmp_path: Path) -> None:
    built = build_case(CASE, tmp_path / "cases")
    reference = build_reference.fn(CASE, str(built.directory.parent))
    url = settings.resolved_database_url
    register_case.fn(reference, actor="tests", database_url=url)
    variants = _variants(built, tmp_path)
    barrier = threading.Barrier(N)

    def ingest(folder: Path) -> int:
        barrier.wait()
        return store_submission(
            str(folder),
            provider_code=PROVIDER,
            case_code=CASE,
            case_version=None,
            actor="tests",
            database_url=url,
            data_dir=str(settings.data_dir),
        ).submission_id

    with ThreadPoolExecutor(N) as pool:
        ids = list(pool.map(ingest, [folder for folder, _ in variants]))
    assert len(set(ids)) == N

    engine = create_db_engine(url)
    with Session(engine) as session:
        subs = session.exec(select(Submission).where(col(Submission.id).in_(ids))).all()
        assert sorted(s.attempt for s in subs) == list(range(1, N + 1))
        stored = {Path(s.storage_path) for s in subs}
        received = session.exec(select(AuditEvent).where(AuditEvent.action == "submission.received")).all()
        assert len(received) == N
    folders = {p for p in (settings.submissions_dir / PROVIDER / f"{CASE}@1.0").iterdir()}
    assert folders == stored, "every stored folder belongs to exactly one submission"

    runner = SubmissionRunner(settings)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(runner.run_steps, ids))

    with Session(engine) as session:
        by_attempt = {s.attempt: s for s in session.exec(select(Submission).where(col(Submission.id).in_(ids)))}
        assert all(s.status is SubmissionStatus.DECIDED for s in by_attempt.values())
        for k, (_folder, expected) in enumerate(variants):
            sub_id = ids[k]
            level = session.exec(
                select(Outcome.level).where(Outcome.submission_id == sub_id, col(Outcome.is_current).is_(True))
            ).one()
            assert level.value == expected.value, f"upload {k}"
        provider = session.exec(select(Provider).where(Provider.code == PROVIDER)).one()
        case = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == CASE)).one()
        states = stage_states(
            session,
            provider_id=provider.id or 0,
            technique_id=case.technique_id,
            validity_days=settings.credential_validity_days,
            now=utcnow(),
        )
        outlining = next(s for s in states if s.stage is QAStage.OUTLINING_BENCHMARK)
        assert outlining.attempt == N and outlining.submission_id == by_attempt[N].id
        stored_cred = session.exec(
            select(Credential).where(
                Credential.provider_id == provider.id, Credential.technique_id == case.technique_id
            )
        ).one()
        status_before = stored_cred.status
        evidence_before = dict(stored_cred.evidence)
        again = refresh_technique_credential(
            session,
            provider_id=provider.id or 0,
            technique_id=case.technique_id,
            actor="tests",
            validity_days=settings.credential_validity_days,
            now=utcnow(),
        )
        assert again.status is status_before, "the stored credential is what its stages give"
        assert again.evidence["stages"] == evidence_before["stages"]
    engine.dispose()
