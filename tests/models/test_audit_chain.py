"""The audit hash chain: written by record_audit, checked by verify_audit_chain against an independent recomputation
of SHA-256 over the documented canonical form; tampering is found and the first broken row named."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.audit import GENESIS_HASH, record_audit, verify_audit_chain
from models.db import create_db_engine
from models.migrate import upgrade
from models.tables import AuditEvent
from tests import dbutil


def _write(engine: Engine, n: int, tag: str = "x") -> None:
    with Session(engine) as session:
        for i in range(n):
            record_audit(
                session, actor="t", action=f"{tag}.{i}", subject_type="s", subject_id=i, after={"v": i / 3, "é": [1]}
            )
        session.commit()


def _lift_triggers(engine: Engine) -> None:
    """What someone with the database's owner rights could do."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_event_append_only ON audit_event")


def test_hashes_follow_the_documented_definition(engine: Engine) -> None:
    _write(engine, 3)
    with Session(engine) as session:
        events = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    prev = GENESIS_HASH
    for e in events:
        after = json.dumps(dict(e.after or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        at = json.dumps(e.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"))
        text = (
            f'{{"action":{json.dumps(e.action)},"actor":{json.dumps(e.actor)},"after":{after},"at":{at},'
            f'"before":null,"reason":null,"subject_id":{json.dumps(e.subject_id)},'
            f'"subject_type":{json.dumps(e.subject_type)}}}'
        )
        assert e.prev_hash == prev
        assert e.row_hash == hashlib.sha256(f"{prev}\n{text}".encode()).hexdigest()
        prev = e.row_hash


def test_an_untouched_chain_verifies(engine: Engine) -> None:
    _write(engine, 5)
    with Session(engine) as session:
        report = verify_audit_chain(session)
        total = len(session.exec(select(AuditEvent)).all())
    assert report.ok, report.problem
    assert report.checked == total >= 5


def test_an_edited_event_is_named(engine: Engine) -> None:
    _write(engine, 5)
    _lift_triggers(engine)
    with Session(engine) as session:
        victim = session.exec(select(AuditEvent).where(AuditEvent.action == "x.2")).one()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET reason = 'nothing happened' WHERE id = :id"), {"id": victim.id})
    with Session(engine) as session:
        report = verify_audit_chain(session)
    assert not report.ok and report.broken_event_id == victim.id
    assert "changed after it was written" in (report.problem or "")


def test_a_removed_event_names_the_next(engine: Engine) -> None:
    _write(engine, 5)
    _lift_triggers(engine)
    with Session(engine) as session:
        gone = session.exec(select(AuditEvent).where(AuditEvent.action == "x.1")).one()
        after = session.exec(select(AuditEvent).where(AuditEvent.action == "x.2")).one()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event WHERE id = :id"), {"id": gone.id})
    with Session(engine) as session:
        report = verify_audit_chain(session)
    assert report.broken_event_id == after.id and "removed" in (report.problem or "")


def test_removing_the_newest_events_is_seen(engine: Engine) -> None:
    _write(engine, 5)
    _lift_triggers(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event WHERE id = (SELECT MAX(id) FROM audit_event)"))
    with Session(engine) as session:
        report = verify_audit_chain(session)
    assert not report.ok and report.broken_event_id is None and "newest events were removed" in (report.problem or "")


def test_concurrent_writers_keep_one_chain(engine: Engine) -> None:
    """Writers in parallel transactions (each holding its transaction open a while) never fork the chain."""
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            with Session(engine) as session:
                record_audit(session, actor="t", action=f"c.{k}", subject_type="s", subject_id=k)
                time.sleep(0.05)
                record_audit(session, actor="t", action=f"c.{k}.b", subject_type="s", subject_id=k)
                session.commit()
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as session:
        report = verify_audit_chain(session)
        hashes = session.exec(select(AuditEvent.prev_hash)).all()
    assert report.ok, report.problem
    assert len(hashes) == len(set(hashes)), "two events claim the same predecessor: the chain forked"


def test_migration_chains_existing_events(tmp_path: Path) -> None:
    url = dbutil.new_database(tmp_path)
    try:
        upgrade(url, "0002")
        eng = create_db_engine(url)
        with eng.begin() as conn:
            for i in range(3):
                conn.execute(
                    sa.text(
                        "INSERT INTO audit_event (at, actor, action, subject_type, subject_id, after) "
                        "VALUES (:at, 'old', :a, 's', '1', :after)"
                    ),
                    {"at": f"2026-01-0{i + 1} 10:00:00.000000", "a": f"old.{i}", "after": json.dumps({"i": i})},
                )
        upgrade(url)
        with Session(eng) as session:
            record_audit(session, actor="new", action="new.0", subject_type="s", subject_id=1)
            session.commit()
            report = verify_audit_chain(session)
        assert report.ok and report.checked == 4
        eng.dispose()
    finally:
        dbutil.drop_database(url)
