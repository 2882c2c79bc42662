"""``rtqa audit verify``: exit 0 with the head hash on an intact chain, exit 3 naming the first broken event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from portal.cli import app
from tests.models.test_audit_chain import _lift_triggers, _write

runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTQA_DATABASE_URL", db_url)
    monkeypatch.setenv("RTQA_DATA_DIR", str(tmp_path / "data"))


def test_intact_chain(engine: Engine) -> None:
    _write(engine, 2)
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("audit chain intact: ") and len(result.stdout.split("head ")[1].strip()) == 64


def test_broken_chain_names_the_event(engine: Engine) -> None:
    _write(engine, 3)
    _lift_triggers(engine)
    with engine.begin() as conn:
        victim = conn.execute(sa.text("SELECT id FROM audit_event WHERE action = 'x.1'")).scalar_one()
        conn.execute(sa.text("UPDATE audit_event SET actor = 'someone else' WHERE id = :id"), {"id": victim})
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 3
    assert f"event {victim} was changed after it was written" in result.stderr
    report = json.loads(runner.invoke(app, ["audit", "verify", "--json"]).stdout)
    assert report["ok"] is False and report["broken_event_id"] == victim
