"""The triggers that keep ``audit_event`` append-only (SQLite and PostgreSQL), for the migrations to install.

Kept here, not in one migration, because later migrations that rebuild the table must drop and recreate them.
"""

from __future__ import annotations

from typing import Any

APPEND_ONLY = "audit_event is append-only: UPDATE and DELETE are refused"


def create_audit_triggers(op: Any) -> None:
    """Install the triggers refusing UPDATE and DELETE on ``audit_event`` (``op``: alembic's operations)."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
            "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()"
        )


def drop_audit_triggers(op: Any) -> None:
    """Remove the triggers :func:`create_audit_triggers` installed."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
