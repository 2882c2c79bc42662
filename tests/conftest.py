"""Shared fixtures: throw-away migrated databases, settings pointing at them, and one Prefect harness."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from models.db import create_db_engine, session_scope
from models.migrate import upgrade
from models.registry import load_reference_data
from models.settings import Settings
from tests import dbutil

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

CLI_ACCOUNT = "rtqa-test-account"
"""The operating-system account the ``rtqa`` command line believes it runs as under :func:`cli_staff`."""

CLI_STAFF = "cli-qa@x.test"
"""The QA staff user mapped to :data:`CLI_ACCOUNT`."""


@pytest.fixture(autouse=True)
def _no_cli_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token in the developer's environment must not decide who the tests' commands run as."""
    monkeypatch.delenv("RTQA_TOKEN", raising=False)


@pytest.fixture
def cli_staff(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    """A QA staff user that ``rtqa`` commands run in-process act as (by a made-up operating-system account)."""
    from models.enums import Role
    from models.users import create_user

    monkeypatch.setattr("portal.cli_identity.os_account", lambda: CLI_ACCOUNT)
    with session_scope(engine) as session:
        create_user(
            session,
            email=CLI_STAFF,
            name="CLI QA",
            role=Role.STAFF,
            provider_code=None,
            actor="tests",
            os_account=CLI_ACCOUNT,
        )
    return CLI_STAFF


@pytest.fixture(scope="session")
def template_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database at the latest schema with the registry loaded, copied for each test that needs one."""
    url = dbutil.new_database(tmp_path_factory.mktemp("template-db"))
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as session:
        load_reference_data(session, actor="tests")
    engine.dispose()
    yield url
    dbutil.drop_database(url)


@pytest.fixture
def db_url(template_db_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of this test's own, migrated and with the provider registry."""
    url = dbutil.new_database(tmp_path, template=template_db_url)
    yield url
    dbutil.drop_database(url)


@pytest.fixture
def empty_db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh empty database (no schema), for migration tests."""
    url = dbutil.new_database(tmp_path)
    yield url
    dbutil.drop_database(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_db_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings for a test: its own database and data directory."""
    return Settings(database_url=db_url, data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server for the whole session (starting one takes ~10-20 s on two cores)."""
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    with (
        temporary_settings({PREFECT_HOME: str(home), PREFECT_SERVER_ANALYTICS_ENABLED: False}),
        prefect_test_harness(server_startup_timeout=180),
    ):
        yield
