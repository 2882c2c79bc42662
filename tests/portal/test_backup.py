"""``rtqa backup`` and ``rtqa restore``: a restore into a fresh database and data directory reproduces every
credential, the audit chain verifies through the backed-up head, and every stored file comes back byte for byte.

Runs on PostgreSQL (``pg_dump -Fc`` / ``pg_restore``) when ``RTQA_DATABASE_URL`` is PostgreSQL, else on SQLite.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from benchmarks.cases import build_case
from models.db import create_db_engine, session_scope
from models.enums import OutcomeLevel
from models.migrate import upgrade
from models.outcomes import override_outcome
from models.settings import Settings
from models.tables import AuditEvent, BenchmarkCase, Credential, Outcome, Submission
from portal.backup import BackupError, _run
from portal.cli import app
from tests import dbutil
from tests.flows.rescore_world import (
    CASE,
    provider_codes,
    register_outlining_only,
    run_centre,
    write_protocol_version,
)
from tests.models.world import World

runner = CliRunner()


def _use(monkeypatch: pytest.MonkeyPatch, url: str, data_dir: Path) -> None:
    monkeypatch.setenv("RTQA_DATABASE_URL", url)
    monkeypatch.setenv("RTQA_DATA_DIR", str(data_dir))


def _rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return [r.model_dump() for r in session.exec(select(table).order_by(col(table.id))).all()]


def _store(data_dir: Path) -> dict[str, str]:
    """Every file under the stored parts of ``data_dir``: relative path -> SHA-256 (computed here, not by rtqa)."""
    return {
        p.relative_to(data_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for part in ("submissions", "cases", "protocols")
        for p in sorted((data_dir / part).rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def world(settings: Settings, engine: Engine, tmp_path: Path) -> Settings:
    """Three centres' decided outlining submissions (PTV margins of 1, 3 and 8 mm), the last overridden by staff;
    the case reference and an added protocol version in the data directory."""
    built = build_case(CASE, settings.cases_dir)
    register_outlining_only(settings, built)
    write_protocol_version(tmp_path, version="1.1", changes={}, data_dir=settings.data_dir)
    codes = provider_codes(settings, 3)
    deviations = ["margin_mm:PTV:1", "margin_mm:PTV:3", "margin_mm:PTV:8"]
    centres = [run_centre(settings, built, tmp_path / "sims", p, d) for p, d in zip(codes, deviations, strict=True)]
    with session_scope(engine) as session:
        override_outcome(
            session,
            submission_id=centres[2].submission_id,
            level=OutcomeLevel.JUSTIFIED_VARIATION,
            justification="margin agreed with the trial team",
            actor="qa@x.test",
            validity_days=settings.credential_validity_days,
        )
    return settings


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[str]:
    """A new empty database (no schema) to restore into."""
    folder = tmp_path / "fresh"
    folder.mkdir()
    url = dbutil.new_database(folder)
    yield url
    dbutil.drop_database(url)


@pytest.mark.slow
def test_restore_reproduces_credentials_audit_chain_and_store(
    world: Settings, engine: Engine, fresh: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = _rows(engine, Credential)
    outcomes = _rows(engine, Outcome)
    events = _rows(engine, AuditEvent)
    stored = _store(world.data_dir)
    assert len(credentials) >= 3 and {o["level"] for o in outcomes} >= {OutcomeLevel.JUSTIFIED_VARIATION}
    assert any(p.startswith("submissions/") for p in stored) and any(p.startswith("protocols/") for p in stored)

    _use(monkeypatch, world.resolved_database_url, world.data_dir)
    backup_dir = tmp_path / "backup"
    done = runner.invoke(app, ["backup", str(backup_dir)])
    assert done.exit_code == 0, done.output
    assert done.stderr == ""  # every stored path lies in the data directory
    manifest = json.loads((backup_dir / "manifest.json").read_text(encoding="utf-8"))
    kind = "postgresql" if dbutil.is_postgres(world.resolved_database_url) else "sqlite"
    assert manifest["database"]["kind"] == kind and manifest["alembic_revision"] == "0008_os_account"
    assert manifest["store"]["file_count"] == len(stored)
    assert {f["path"]: f["sha256"] for f in manifest["store"]["files"]} == stored
    assert manifest["audit"] == {"events": len(events), "head": events[-1]["row_hash"]}
    again = runner.invoke(app, ["backup", str(backup_dir)])
    assert again.exit_code == 2 and "already holds files; give a new or empty folder" in again.stderr

    new_data = tmp_path / "restored-data"
    _use(monkeypatch, fresh, new_data)
    restored = runner.invoke(app, ["restore", str(backup_dir)])
    assert restored.exit_code == 0, restored.output
    new_engine = create_db_engine(fresh)
    try:
        assert _rows(new_engine, Credential) == credentials
        assert _rows(new_engine, Outcome) == outcomes
        after = _rows(new_engine, AuditEvent)
        assert after[: len(events)] == events
        assert [e["action"] for e in after[len(events) :]] == ["backup.restored"]
        assert after[-1]["prev_hash"] == manifest["audit"]["head"]
        verify = runner.invoke(app, ["audit", "verify", "--json"])
        assert verify.exit_code == 0, verify.output
        assert json.loads(verify.stdout)["checked"] == len(events) + 1
        assert _store(new_data) == stored
        with Session(new_engine) as session:
            paths = [s.storage_path for s in session.exec(select(Submission)).all()]
            paths += [c.reference_path for c in session.exec(select(BenchmarkCase)).all()]
        assert paths and all(Path(p).is_relative_to(new_data.resolve()) and Path(p).is_dir() for p in paths)
    finally:
        new_engine.dispose()

    twice = runner.invoke(app, ["restore", str(backup_dir)])
    assert twice.exit_code == 2 and "is not empty" in twice.stderr and "restore into a new database" in twice.stderr


def test_damaged_backup_is_refused_before_anything_is_restored(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = settings.submissions_dir / "p" / "c" / "abc" / "RS.dcm"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"structure set")
    with session_scope(engine) as session:
        World(session)  # two cases whose references lie at /x, outside the data directory
    _use(monkeypatch, settings.resolved_database_url, settings.data_dir)
    done = runner.invoke(app, ["backup", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    assert done.stderr.strip() == (
        f"warning: 2 stored paths in the database lie outside the data directory {settings.data_dir.resolve()} and "
        "are not in the backup"
    )
    copy = tmp_path / "b" / "store" / "submissions" / "p" / "c" / "abc" / "RS.dcm"
    copy.write_bytes(b"structure sez")
    empty = dbutil.new_database(tmp_path)
    try:
        _use(monkeypatch, empty, tmp_path / "new-data")
        refused = runner.invoke(app, ["restore", str(tmp_path / "b")])
        assert refused.exit_code == 2 and "Traceback" not in refused.output
        assert refused.stderr.strip() == (
            f"error: {copy}: differs from the manifest's SHA-256 (damaged or changed); nothing was restored"
        )
        assert not (tmp_path / "new-data" / "submissions").exists()
        not_backup = runner.invoke(app, ["restore", str(tmp_path)])
        assert not_backup.stderr.strip() == f"error: {tmp_path} is not an rtqa backup (no manifest.json)"
    finally:
        dbutil.drop_database(empty)


def test_missing_postgres_tool_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BackupError, match=r"^pg_dump not found on PATH; install the PostgreSQL client tools"):
        _run("pg_dump", ["--version"], {})


def test_older_schema_is_upgraded_and_unknown_one_refused(
    empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_db_url, "0004_outbox")
    _use(monkeypatch, empty_db_url, tmp_path / "data")
    assert runner.invoke(app, ["backup", str(tmp_path / "b")]).exit_code == 0
    manifest_path = tmp_path / "b" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["alembic_revision"] == "0004_outbox"
    target = dbutil.new_database(tmp_path)
    try:
        _use(monkeypatch, target, tmp_path / "new-data")
        manifest_path.write_text(json.dumps({**manifest, "alembic_revision": "0099_future"}), encoding="utf-8")
        refused = runner.invoke(app, ["restore", str(tmp_path / "b")])
        assert refused.exit_code == 2 and refused.stderr.strip() == (
            "error: the backup's schema revision '0099_future' is not one this rtqa knows (made by a newer "
            "version?); restore it with the rtqa that made it"
        )
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
        done = runner.invoke(app, ["restore", str(tmp_path / "b")])
        assert done.exit_code == 0, done.output
        assert "schema upgraded from 0004_outbox to 0008_os_account" in " ".join(done.output.split())
        engine = create_db_engine(target)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0008_os_account"
        finally:
            engine.dispose()
    finally:
        dbutil.drop_database(target)
