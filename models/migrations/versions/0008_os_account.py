"""Command-line identity: the operating-system account a user's `rtqa` commands run under

A nullable, unique ``app_user.os_account``: the command line acts as the user mapped to the account it runs under
when no API token is given.

Revision ID: 0008_os_account
Revises: 0004_outbox
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_os_account"
down_revision: str | None = "0004_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("os_account", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_app_user_os_account"), ["os_account"])


def downgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_app_user_os_account"), type_="unique")
        batch_op.drop_column("os_account")
