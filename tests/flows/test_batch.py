"""The score-batch flow on Dask against a real Prefect server: submissions scored in worker processes reach the
outcomes the simulator's oracle expects, credentials follow, the server records every task run; an existing
scheduler is used when configured; worker processes without a server are refused in one sentence."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import Deviation, SimulatedSubmission, simulate_submission
from flows.batch import BatchError, BatchSettings, batch_task_runner, check_prefect_api, score_batch
from flows.catalogue import build_reference, register_case
from flows.credentialing import store_submission
from flows.runtime import using_settings
from models.settings import Settings
from models.tables import Credential, Provider
from tests.flows.rescore_world import CASE, provider_codes
from tests.live_prefect import prefect_server

DEVIATIONS = (
    "margin_mm:PTV:1",
    "margin_mm:PTV:2",
    "margin_mm:PTV:3",
    "shift_mm:PTV:0,0,2",
    "rename:SpinalCord:Cord",
    "omit:Heart",
)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server for this module, its URL in the settings and the environment (Dask workers)."""
    with prefect_server(tmp_path_factory.mktemp("prefect-live")) as url:
        before = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url
        try:
            with temporary_settings({PREFECT_API_URL: url}):
                yield url
                APILogWorker.drain_all(timeout=10)  # send the runs' last logs while the server is up
        finally:
            if before is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = before


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(CASE, tmp_path_factory.mktemp("cases"))


def _received(settings: Settings, built: BuiltCase, tmp: Path, n: int) -> list[tuple[int, SimulatedSubmission]]:
    """``n`` simulated centres' submissions, stored and waiting (status received)."""
    url = settings.resolved_database_url
    register_case.fn(build_reference.fn(CASE, str(built.directory.parent)), actor="tests", database_url=url)
    out = []
    for provider, deviation in zip(provider_codes(settings, n), DEVIATIONS, strict=False):
        sim = simulate_submission(
            built, provider=provider, deviations=[Deviation.parse(deviation)], seed=0, out_dir=tmp / provider
        )
        stored = store_submission(
            str(sim.directory),
            provider_code=provider,
            case_code=CASE,
            case_version=None,
            actor="tests",
            database_url=url,
            data_dir=str(settings.data_dir),
        )
        out.append((stored.submission_id, sim))
    return out


def _completed_task_runs(name: str, expected: int) -> int:
    """How many task runs called ``name`` the server holds as completed (state events are recorded
    asynchronously: wait up to a minute for ``expected``)."""
    count = 0
    for _ in range(120):
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs()
        count = sum(1 for r in runs if r.name.startswith(name) and r.state is not None and r.state.is_completed())
        if count >= expected:
            break
        time.sleep(0.5)
    return count


@pytest.mark.slow
def test_batch_on_two_local_worker_processes(
    live_api: str, settings: Settings, engine: Engine, built: BuiltCase, tmp_path: Path
) -> None:
    received = _received(settings, built, tmp_path, len(DEVIATIONS))
    with using_settings(settings):
        result = score_batch([sid for sid, _ in received], actor="tests", workers=2)
    by_id = {r["submission_id"]: r for r in result["submissions"]}
    for sid, sim in received:
        assert by_id[sid]["status"] == "decided", by_id[sid]
        assert by_id[sid]["outcome"] == sim.expected_outcome.value, sim.deviations
    pids = {r["pid"] for r in result["submissions"]}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, not this one
    assert len(result["workers"]) == 2

    with Session(engine) as session:
        for sid, sim in received:
            provider = session.exec(select(Provider).where(Provider.code == sim.provider)).one()
            cred = session.exec(
                select(Credential).where(
                    Credential.provider_id == provider.id, col(Credential.technique_id).is_not(None)
                )
            ).one()
            stage = next(s for s in cred.evidence["stages"] if s["stage"] == "outlining_benchmark")
            assert stage["submission_id"] == sid
            assert stage["status"] == ("passed" if sim.expected_outcome.value != "unacceptable_variation" else "failed")
            assert cred.id in result["credentials"]
    assert _completed_task_runs("score-batch[submission ", len(received)) == len(received)  # one named run each


@pytest.mark.slow
def test_batch_on_an_existing_scheduler(
    live_api: str,
    settings: Settings,
    built: BuiltCase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distributed import LocalCluster

    received = _received(settings, built, tmp_path, 2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.setenv("RTQA_DASK_ADDRESS", cluster.scheduler_address)
        with using_settings(settings):
            result = score_batch([sid for sid, _ in received], actor="tests")
        assert result["workers"] == sorted(cluster.workers[name].worker_address for name in cluster.workers)
    assert [r["outcome"] for r in result["submissions"]] == [sim.expected_outcome.value for _, sim in received]


class TestSettings:
    def test_worker_processes_need_a_server(self) -> None:
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            with pytest.raises(BatchError, match=r"need a Prefect server: start one .* set PREFECT_API_URL"):
                check_prefect_api(BatchSettings(processes=True))
            with pytest.raises(BatchError, match="need a Prefect server"):
                check_prefect_api(BatchSettings(processes=False), address="tcp://127.0.0.1:8786")
            check_prefect_api(BatchSettings(processes=False))  # threads of this process share its server

    def test_runner_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RTQA_DASK_WORKERS", "3")
        assert batch_task_runner().cluster_kwargs["n_workers"] == 3
        assert batch_task_runner(workers=1).cluster_kwargs["n_workers"] == 1
        monkeypatch.setenv("RTQA_DASK_ADDRESS", "tcp://10.0.0.5:8786")
        runner = batch_task_runner()
        assert (runner.address, runner.cluster_kwargs) == ("tcp://10.0.0.5:8786", {})
