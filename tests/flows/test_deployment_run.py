"""The deployments run as the README says: a real Prefect server, the process work pool, `prefect deploy --all` from
the repository, and a worker whose environment carries rtqa's settings (SQLite, or PostgreSQL with
RTQA_DATABASE_URL set). A worker without them fails the run with one line and writes nothing into the repository."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import build_case
from benchmarks.simulator import Deviation, SimulatedSubmission, simulate_submission
from flows.background import FlowRunTracker
from flows.catalogue import publish_steps
from flows.credentialing import store_submission
from models.outcomes import current_outcome
from models.settings import Settings
from models.tables import Provider, Submission
from tests.prefect_server import REPO, PrefectServer, worker_log

pytestmark = [pytest.mark.slow, pytest.mark.deployment]

CASE = "lung-sabr-outlining-mini"
DEPLOYMENT = "credential-submission/credential-submission"
BATCHED = "the-clatterbridge-cancer-centre"


def _repository_files() -> set[str]:
    """What a flow run might leave in the repository root: database files and a default data directory."""
    return {p.name for p in REPO.iterdir() if p.suffix in (".db", ".sqlite") or p.name in (".rtqa", "rtqa.db")}


def _parameters(sim: SimulatedSubmission) -> dict[str, Any]:
    return {"source_dir": str(sim.directory), "provider_code": sim.provider, "case_code": CASE, "actor": "tests"}


def _outcome(engine: Engine, submission_id: int) -> str | None:
    with Session(engine) as session:
        outcome = current_outcome(session, submission_id)
        return outcome.level.value if outcome else None


def test_credential_submission_through_the_deployment(
    settings: Settings, db_url: str, engine: Engine, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"data_dir": (tmp_path / "data").resolve()})
    publish_steps(settings, CASE, "tests")
    built = build_case(CASE, settings.cases_dir)
    far, close = (
        simulate_submission(
            built, provider=provider, deviations=[Deviation.parse(d) for d in deviations], seed=0, out_dir=tmp_path / p
        )
        for p, provider, deviations in (
            ("far", "the-christie", ["margin_mm:PTV:8", "shift_mm:GTV:0,0,10"]),
            ("close", "the-royal-marsden", ["margin_mm:PTV:1", "rename:SpinalCord:Cord"]),
        )
    )
    stored = store_submission(  # as an upload leaves it: received, its steps to run
        str(close.directory),
        provider_code=close.provider,
        case_code=CASE,
        case_version=None,
        actor="tests",
        database_url=db_url,
        data_dir=str(settings.data_dir),
    )
    third = simulate_submission(
        built, provider=BATCHED, deviations=[Deviation.parse("margin_mm:PTV:1")], seed=1, out_dir=tmp_path / "batch"
    )
    batched = store_submission(  # another received one, for the score-batch deployment
        str(third.directory),
        provider_code=BATCHED,
        case_code=CASE,
        case_version=None,
        actor="tests",
        database_url=db_url,
        data_dir=str(settings.data_dir),
    )
    before = _repository_files()
    rtqa_env = {"RTQA_DATABASE_URL": db_url, "RTQA_DATA_DIR": str(settings.data_dir), "RTQA_DASK_WORKERS": "1"}

    with PrefectServer.started(tmp_path / "prefect") as server:
        server.cli("work-pool", "create", "rtqa", "--type", "process")
        server.cli("deploy", "--all", cwd=REPO)
        deployment = server.api("GET", f"/deployments/{server.deployment_id(DEPLOYMENT)}")
        assert deployment["job_variables"] == {}  # no setting stored in the deployment
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        schedules = server.api("GET", f"/deployments/{server.deployment_id('expire-credentials/expire-credentials')}")
        assert [s["schedule"]["cron"] for s in schedules["schedules"]] == ["30 2 * * *"]

        # A worker without rtqa's settings (started in the repository, the worst case): one line, nothing written.
        unset = {"RTQA_DATABASE_URL": None, "RTQA_DATA_DIR": None}
        with server.worker("rtqa", cwd=REPO, env=unset) as bare:
            run_id = server.run_deployment(DEPLOYMENT, _parameters(far))
            run = server.wait_for_flow_run(run_id, timeout=300)
            assert run["state_type"] == "FAILED", worker_log(bare)
            logs = server.wait_for_log(run_id, "Finished in state Failed")  # before its process is stopped
        message = run["state"]["message"]
        assert message.startswith("RTQA_DATABASE_URL and RTQA_DATA_DIR not set in the worker's environment")
        assert "\n" not in message and "Run on a Prefect server" in message
        assert f"40 {message}" in logs.splitlines()  # logged once, as one line: no traceback of ours
        assert "SettingsError" not in logs and "flows/runtime.py" not in logs
        assert _repository_files() == before

        # A worker with them, started anywhere: the pull step runs the flow from the repository.
        with server.worker("rtqa", cwd=tmp_path, env=rtqa_env) as worker:
            run_id = server.run_deployment(DEPLOYMENT, _parameters(far))
            run = server.wait_for_flow_run(run_id, timeout=300)
            assert run["state_type"] == "COMPLETED", f"{server.flow_run_logs(run_id)}\n{worker_log(worker)}"
            with Session(engine) as session:
                sub = session.exec(
                    select(Submission).where(Submission.provider_id == Provider.id, Provider.code == far.provider)
                ).one()
            assert sub.status.value == "decided" and sub.id is not None
            assert _outcome(engine, sub.id) == far.expected_outcome.value == "unacceptable_variation"

            names = server.task_run_names(run_id)
            assert f"score-contours[submission {sub.id}]" in names and f"decide[submission {sub.id}]" in names
            [artifact] = server.artifacts(run_id)
            assert artifact["key"] == f"submission-{sub.id}"
            assert f"# Submission {sub.id}: unacceptable variation" in artifact["data"]
            assert f"(/submissions/{sub.id}/report)" in artifact["data"]
            logs = server.wait_for_log(run_id, "Finished in state Completed")
            assert f"submission {sub.id} (the-christie, {CASE}@1.0, attempt 1): decided unacceptable_variation" in logs
            assert db_url not in logs and db_url not in json.dumps(run["parameters"])

            # The API's path with a server: a received submission started through the deployment.
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("PREFECT_API_URL", server.api_url)
                from prefect.settings import PREFECT_API_URL, temporary_settings

                with temporary_settings({PREFECT_API_URL: server.api_url}):
                    tracker = FlowRunTracker(settings.model_copy(update={"flow_runs": "auto"}))
                    assert tracker.use_prefect
                    record = tracker.start(
                        "credential-submission", {"submission_id": stored.submission_id}, actor="qa@rttqa.test"
                    )
                    assert record.mode == "deployment" and record.flow == "credential-submission"
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline:
                        state = tracker.get(record.id)
                        assert state is not None
                        if state.finished_at is not None and state.state in ("COMPLETED", "FAILED", "CRASHED"):
                            break
                        time.sleep(1)
            assert state.state == "COMPLETED", f"{server.flow_run_logs(record.id)}\n{worker_log(worker)}"
            assert _outcome(engine, stored.submission_id) == close.expected_outcome.value

            # score-batch as staff start it: its deployment, on a one-process Dask cluster of the worker's.
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("PREFECT_API_URL", server.api_url)
                with temporary_settings({PREFECT_API_URL: server.api_url}):
                    record = tracker.start("score-batch", {"case": f"{CASE}@1.0"}, actor="qa@rttqa.test")
            assert record.mode == "deployment" and record.flow == "score-batch"
            run = server.wait_for_flow_run(record.id, timeout=300)
            assert run["state_type"] == "COMPLETED", f"{server.flow_run_logs(record.id)}\n{worker_log(worker)}"
            assert run["parameters"] == {"submission_ids": [batched.submission_id], "actor": "qa@rttqa.test"}
            assert server.task_run_names(record.id)[0] == f"score-batch[submission {batched.submission_id}]"
            assert _outcome(engine, batched.submission_id) == third.expected_outcome.value
    assert all(p.poll() is not None for p in (server.process, bare, worker))  # everything started here is stopped
    assert _repository_files() == before
