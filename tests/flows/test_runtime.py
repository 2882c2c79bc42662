"""Where flows find their settings, when Prefect runs them, and the inline path `rtqa submit` takes without a server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import prefect.flow_engine
import pytest
from sqlalchemy.engine import make_url

from benchmarks.cases import build_case
from benchmarks.simulator import Deviation, simulate_submission
from flows._store import engine_for
from flows.background import FlowRunTracker
from flows.catalogue import run_publish_case
from flows.credentialing import run_credential_submission
from flows.runner import SubmissionRunner
from flows.runtime import (
    SettingsError,
    flow_settings,
    orchestrated,
    require_database,
    use_deployments,
    using_settings,
)
from models.auth import issue_token
from models.db import session_scope
from models.enums import Role
from models.settings import Settings, normalise_database_url
from models.tables import User

CASE = "lung-sabr-outlining-mini"
ROOT = Path(__file__).resolve().parents[2]
RTQA_LISTING_PREFECT = """
import sys
from portal.cli import app
try:
    app(prog_name="rtqa")
finally:
    loaded = sorted(name for name in sys.modules if name.split(".")[0] == "prefect")
    print("prefect modules:", ", ".join(loaded) or "none", file=sys.stderr)
"""
"""The ``rtqa`` command (``python -c`` of its entry point), listing on stderr the Prefect modules it imported."""


@pytest.mark.parametrize(
    ("mode", "api_url", "expected"),
    [
        ("auto", None, False),
        ("auto", "http://127.0.0.1:4200/api", True),
        ("inline", "http://127.0.0.1:4200/api", False),
        ("prefect", None, True),
    ],
)
def test_orchestrated(monkeypatch: pytest.MonkeyPatch, mode: str, api_url: str | None, expected: bool) -> None:
    if api_url is None:
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
    else:
        monkeypatch.setenv("PREFECT_API_URL", api_url)
    assert orchestrated(Settings(flow_runs=mode)) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "api_url", "expected"),
    [
        ("prefect", None, False),
        ("prefect", "http://x/api", True),
        ("auto", "http://x/api", True),
        ("inline", "http://x/api", False),
    ],
)
def test_deployments_need_a_server(
    monkeypatch: pytest.MonkeyPatch, mode: str, api_url: str | None, expected: bool
) -> None:
    if api_url is None:
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
    else:
        monkeypatch.setenv("PREFECT_API_URL", api_url)
    settings = Settings(flow_runs=mode)  # type: ignore[arg-type]
    assert use_deployments(settings) is expected
    assert FlowRunTracker(settings).use_prefect is expected and SubmissionRunner(settings).use_prefect is expected


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTQA_DATABASE_URL", "")
    monkeypatch.setenv("RTQA_DATA_DIR", "")
    settings = Settings()
    assert settings.database_url is None and settings.data_dir == Path(".rtqa")


class TestFlowSettings:
    def test_the_callers_settings_win(self, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RTQA_DATABASE_URL", "sqlite:////nonexistent/elsewhere.db")
        with using_settings(settings):
            assert flow_settings() is settings

    def test_from_the_environment_when_the_database_is_ready(
        self, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RTQA_DATABASE_URL", db_url)
        monkeypatch.setenv("RTQA_DATA_DIR", str(tmp_path))
        assert flow_settings().resolved_database_url == normalise_database_url(db_url)

    def test_a_deployment_run_needs_both_settings_in_its_environment(
        self, db_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", "00000000-0000-0000-0000-000000000001")
        monkeypatch.delenv("RTQA_DATA_DIR", raising=False)
        monkeypatch.setenv("RTQA_DATABASE_URL", db_url)
        with pytest.raises(SettingsError, match=r"^RTQA_DATA_DIR not set in the worker's environment: start the"):
            flow_settings()
        monkeypatch.setenv("RTQA_DATABASE_URL", "")  # as a deploy-time placeholder used to store it
        with pytest.raises(SettingsError, match=r"^RTQA_DATABASE_URL and RTQA_DATA_DIR not set"):
            flow_settings()

    def test_a_missing_sqlite_database_is_not_created(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("RTQA_DATABASE_URL", raising=False)
        monkeypatch.setenv("RTQA_DATA_DIR", str(tmp_path / "data"))
        with pytest.raises(SettingsError, match=r"does not exist or is not initialised: run `rtqa db init`"):
            flow_settings()
        assert not (tmp_path / "data" / "rtqa.db").exists()

    def test_an_unreachable_database_is_named_without_its_password(self) -> None:
        url = "postgresql+psycopg://rtqa:hunter2@127.0.0.1:1/rtqa?connect_timeout=2"
        with pytest.raises(SettingsError) as caught:
            require_database(url)
        message = str(caught.value)
        assert message.startswith("cannot reach the database postgresql+psycopg://rtqa:***@127.0.0.1:1/rtqa")
        assert "hunter2" not in message and "\n" not in message


def test_inline_runs_never_start_prefect(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_prefect(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Prefect flow run was started")

    monkeypatch.setattr(prefect.flow_engine, "run_flow", no_prefect)
    inline = settings.model_copy(update={"flow_runs": "inline"})
    run_publish_case(inline, CASE, "tests")
    built = build_case(CASE, inline.cases_dir)
    sim = simulate_submission(
        built, provider="the-christie", deviations=[Deviation.parse("margin_mm:PTV:8")], seed=0, out_dir=tmp_path / "s"
    )
    result = run_credential_submission(inline, str(sim.directory), sim.provider, CASE, actor="tests")
    assert result["status"] == "decided" and result["outcome"] == sim.expected_outcome.value


@pytest.mark.slow
def test_rtqa_submit_runs_inline_without_a_server(settings: Settings, tmp_path: Path) -> None:
    """`rtqa submit` as a user runs it (its entry point in a new process): no temporary Prefect server, no Prefect
    import, the outcome printed."""
    inline = settings.model_copy(update={"flow_runs": "inline"})
    run_publish_case(inline, CASE, "tests")
    sim = simulate_submission(
        build_case(CASE, inline.cases_dir),
        provider="the-christie",
        deviations=[Deviation.parse("margin_mm:PTV:8")],
        seed=0,
        out_dir=tmp_path / "sub",
    )
    with session_scope(engine_for(settings.resolved_database_url)) as session:  # the staff user submitting
        staff = User(email="qa@x.test", name="QA", role=Role.STAFF)
        session.add(staff)
        session.flush()
        token = issue_token(session, user=staff, actor="tests")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and not k.startswith("RTQA_")}
    env.update(
        RTQA_TOKEN=token,
        RTQA_DATABASE_URL=make_url(settings.resolved_database_url).render_as_string(hide_password=False),
        RTQA_DATA_DIR=str(settings.data_dir),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PYTHONPATH=str(ROOT),
    )
    started = time.monotonic()
    submit_options = ["--provider", "the-christie", "--case", CASE]
    done = subprocess.run(
        [sys.executable, "-c", RTQA_LISTING_PREFECT, "submit", str(sim.directory), *submit_options],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 3, done.stderr  # unacceptable variation
    assert "unacceptable variation" in done.stdout
    assert "temporary server" not in done.stdout + done.stderr and "Flow run" not in done.stdout + done.stderr
    assert not (tmp_path / "prefect" / "prefect.db").exists()
    assert "prefect modules: none" in done.stderr, done.stderr  # the inline path does not import Prefect
    print(f"rtqa submit (inline): {seconds:.1f} s wall")
