"""audit events chained by hash (tamper evidence), with the chain's head in audit_chain_head; tokens' last use

Existing events are chained in id order; the append-only triggers are lifted only while the two new columns are
filled in and put back at once.

Revision ID: 0006_audit_chain
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from models.audit import GENESIS_HASH, HEAD_ID, event_digest
from models.audit_triggers import create_audit_triggers, drop_audit_triggers
from models.types import UTCDateTime

revision: str = "0006_audit_chain"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_events = sa.table(
    "audit_event",
    sa.column("id", sa.Integer),
    sa.column("at", UTCDateTime()),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("subject_type", sa.String),
    sa.column("subject_id", sa.String),
    sa.column("before", sa.JSON),
    sa.column("after", sa.JSON),
    sa.column("reason", sa.String),
    sa.column("prev_hash", sa.String),
    sa.column("row_hash", sa.String),
)


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("last_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    drop_audit_triggers(op)
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    bind = op.get_bind()
    prev, count = GENESIS_HASH, 0
    for row in bind.execute(sa.select(_events).order_by(_events.c.id)).mappings().all():
        digest = event_digest(
            prev,
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            subject_type=row["subject_type"],
            subject_id=row["subject_id"],
            before=row["before"],
            after=row["after"],
            reason=row["reason"],
        )
        bind.execute(sa.update(_events).where(_events.c.id == row["id"]).values(prev_hash=prev, row_hash=digest))
        prev, count = digest, count + 1
    bind.execute(
        sa.insert(sa.table("audit_chain_head", sa.column("id"), sa.column("events"), sa.column("last_hash"))).values(
            id=HEAD_ID, events=count, last_hash=prev
        )
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch_op.alter_column("row_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_audit_event_row_hash", ["row_hash"])
    create_audit_triggers(op)
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
    drop_audit_triggers(op)
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_event_row_hash", type_="unique")
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
    create_audit_triggers(op)
    op.drop_table("audit_chain_head")
