"""Fixtures for portal tests: a staff, a commissioner and a centre user (of the-christie) with tokens, and a client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.auth import issue_token
from models.enums import Role
from models.settings import Settings
from models.tables import Provider, User
from models.types import utcnow
from portal.app import create_app

OWN = "the-christie"
"""The centre user's provider."""

OTHER = "leeds-teaching-hospitals"
"""Another provider."""


@pytest.fixture
def tokens(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        own = session.exec(select(Provider).where(Provider.code == OWN)).one()
        users = {
            "commissioner": User(email="comm@nhs.test", name="Commissioner", role=Role.COMMISSIONER),
            "staff": User(email="qa@rttqa.test", name="QA", role=Role.STAFF),
            "centre": User(email="phys@christie.test", name="Physicist", role=Role.CENTRE, provider_id=own.id),
        }
        for user in users.values():
            session.add(user)
        session.flush()
        out = {key: issue_token(session, user=user, actor="tests") for key, user in users.items()}
        out["expired"] = issue_token(
            session, user=users["commissioner"], actor="tests", expires_at=utcnow() - timedelta(seconds=1)
        )
        session.commit()
    return out


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's database, data directory and a Prefect home of its own, in the environment the CLI reads."""
    monkeypatch.setenv("RTQA_DATABASE_URL", db_url)
    monkeypatch.setenv("RTQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine)) as c:
        yield c
