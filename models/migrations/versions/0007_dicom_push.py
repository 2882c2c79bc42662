"""DICOM push: centres' calling AE titles, each registered to its provider

Revision ID: 0007_dicom_push
Revises: 0006_audit_chain
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision: str = "0007_dicom_push"
down_revision: str | None = "0006_audit_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dicom_ae_title",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["provider.id"], name=op.f("fk_dicom_ae_title_provider_id_provider")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_ae_title")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_dicom_ae_title_ae_title")),
    )
    with op.batch_alter_table("dicom_ae_title", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_ae_title_provider_id"), ["provider_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dicom_ae_title", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_ae_title_provider_id"))
    op.drop_table("dicom_ae_title")
