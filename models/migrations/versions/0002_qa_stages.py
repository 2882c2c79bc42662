"""QA stages as the unit of credentialing: outlining and planning benchmarks, stage requirements

The GHG "benchmark_case" stage splits into "outlining_benchmark" and "planning_benchmark". Until now only the
outlining benchmark was scored, so existing cases and their submissions become outlining benchmarks. Stage
requirements per technique (and per trial) are registered from the protocols by `rtqa db init` and when cases
are published; existing credentials are re-evaluated against them the next time an outcome is applied.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMON = (
    "facility_questionnaire",
    "beam_output_audit",
    "dummy_run",
    "complex_treatment_dosimetry_check",
    "virtual_phantom",
    "individual_case_review",
    "treatment_record_review",
    "protocol_compliance_visit",
)
OLD = ("facility_questionnaire", "beam_output_audit", "benchmark_case", *_COMMON[2:])
NEW = ("facility_questionnaire", "beam_output_audit", "outlining_benchmark", "planning_benchmark", *_COMMON[2:])


def _stage_enum(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="qastage_enum", native_enum=False, create_constraint=True, length=40)


def _retype(old: tuple[str, ...], new: tuple[str, ...], mapping: dict[str, str]) -> None:
    """Change the stage values through a type allowing both, so no row ever breaks a CHECK constraint."""
    both = (*old, *(v for v in new if v not in old))
    with op.batch_alter_table("benchmark_case", schema=None) as batch_op:
        batch_op.alter_column("stage", existing_type=_stage_enum(old), type_=_stage_enum(both), existing_nullable=False)
    for before, after in mapping.items():
        op.execute(
            sa.text("UPDATE benchmark_case SET stage = :after WHERE stage = :before").bindparams(
                before=before, after=after
            )
        )
    with op.batch_alter_table("benchmark_case", schema=None) as batch_op:
        batch_op.alter_column("stage", existing_type=_stage_enum(both), type_=_stage_enum(new), existing_nullable=False)


def upgrade() -> None:
    _retype(OLD, NEW, {"benchmark_case": "outlining_benchmark"})
    op.create_table(
        "stage_requirement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("technique_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("stage", _stage_enum(NEW), nullable=False),
        sa.Column("protocol_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["technique_id"], ["technique.id"], name=op.f("fk_stage_requirement_technique_id_technique")
        ),
        sa.ForeignKeyConstraint(["trial_id"], ["trial.id"], name=op.f("fk_stage_requirement_trial_id_trial")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_requirement")),
        sa.UniqueConstraint(
            "technique_id", "trial_id", "stage", name=op.f("uq_stage_requirement_technique_id_trial_id_stage")
        ),
    )
    with op.batch_alter_table("stage_requirement", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stage_requirement_technique_id"), ["technique_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_stage_requirement_trial_id"), ["trial_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stage_requirement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stage_requirement_trial_id"))
        batch_op.drop_index(batch_op.f("ix_stage_requirement_technique_id"))
    op.drop_table("stage_requirement")
    _retype(NEW, OLD, {"outlining_benchmark": "benchmark_case", "planning_benchmark": "benchmark_case"})
