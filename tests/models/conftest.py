"""Fixtures for model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.models.world import World


@pytest.fixture
def world(engine: Engine) -> Iterator[World]:
    with Session(engine) as session:
        yield World(session)
