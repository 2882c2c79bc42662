"""rescoring: scoring runs, results per run, outcomes' validity start

Every scoring of a submission becomes a ``scoring_run`` row (the case reference and protocol version scored
against, why, whether current); metric results belong to one run, so a rescore keeps the earlier results beside
the new ones (unique per run instead of per submission). Existing results get one ``initial`` run per submission,
current, against the submission's case and that case's protocol version, linked to the submission's first
automatic outcome. ``outcome.valid_from`` lets a rescored outcome keep the original decision time as the start of
the stage's validity.

Downgrade keeps only the current run's results (the earlier runs' results cannot fit the old unique constraints).

Revision ID: 0005_rescoring
Revises: 0007_dicom_push
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision: str = "0005_rescoring"
down_revision: str | None = "0007_dicom_push"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESULT_TABLES = {
    "structure_result": ("structure", "metric"),
    "plan_result": ("structure", "metric"),
    "dose_result": ("metric",),
}
"""Result tables and the columns (after the submission or run) that identify a result."""

ACTOR = "migration 0005_rescoring"


def _trigger_enum() -> sa.Enum:
    return sa.Enum(
        "initial", "rescore", name="scoringtrigger_enum", native_enum=False, create_constraint=True, length=40
    )


def _create_scoring_run() -> None:
    op.create_table(
        "scoring_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("protocol_version", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("trigger", _trigger_enum(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("outcome_id", sa.Integer(), nullable=True),
        sa.Column("kept_override_id", sa.Integer(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["benchmark_case.id"], name=op.f("fk_scoring_run_case_id_benchmark_case")),
        sa.ForeignKeyConstraint(
            ["kept_override_id"], ["outcome.id"], name=op.f("fk_scoring_run_kept_override_id_outcome")
        ),
        sa.ForeignKeyConstraint(["outcome_id"], ["outcome.id"], name=op.f("fk_scoring_run_outcome_id_outcome")),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["submission.id"], name=op.f("fk_scoring_run_submission_id_submission")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["scoring_run.id"], name=op.f("fk_scoring_run_supersedes_id_scoring_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_run")),
    )
    with op.batch_alter_table("scoring_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scoring_run_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_scoring_run_submission_id"), ["submission_id"], unique=False)


def _backfill_initial_runs() -> None:
    """One current ``initial`` run per submission that has results; every result row joins its submission's run."""
    conn = op.get_bind()
    run = sa.table(
        "scoring_run",
        sa.column("id", sa.Integer()),
        sa.column("submission_id", sa.Integer()),
        sa.column("case_id", sa.Integer()),
        sa.column("protocol_id", sa.String()),
        sa.column("protocol_version", sa.String()),
        sa.column("trigger", sa.String()),
        sa.column("reason", sa.String()),
        sa.column("is_current", sa.Boolean()),
        sa.column("outcome_id", sa.Integer()),
        sa.column("changes", sa.JSON()),
        sa.column("created_by", sa.String()),
        sa.column("created_at", models.types.UTCDateTime()),
    )
    submission = sa.table("submission", sa.column("id", sa.Integer()), sa.column("case_id", sa.Integer()))
    case = sa.table(
        "benchmark_case",
        sa.column("id", sa.Integer()),
        sa.column("protocol_id", sa.String()),
        sa.column("protocol_version", sa.String()),
    )
    outcome = sa.table(
        "outcome",
        sa.column("id", sa.Integer()),
        sa.column("submission_id", sa.Integer()),
        sa.column("source", sa.String()),
    )
    first_computed: dict[int, object] = {}
    for name in RESULT_TABLES:
        table = sa.table(
            name, sa.column("submission_id", sa.Integer()), sa.column("computed_at", models.types.UTCDateTime())
        )
        rows = conn.execute(
            sa.select(table.c.submission_id, sa.func.min(table.c.computed_at)).group_by(table.c.submission_id)
        ).all()
        for submission_id, computed_at in rows:
            known = first_computed.get(submission_id)
            first_computed[submission_id] = computed_at if known is None else min(known, computed_at)  # type: ignore[type-var]
    now = models.types.utcnow()
    for submission_id in sorted(first_computed):
        case_id, protocol_id, protocol_version = conn.execute(
            sa.select(submission.c.case_id, case.c.protocol_id, case.c.protocol_version).where(
                submission.c.id == submission_id, case.c.id == submission.c.case_id
            )
        ).one()
        outcome_id = conn.execute(
            sa.select(sa.func.min(outcome.c.id)).where(
                outcome.c.submission_id == submission_id, outcome.c.source == "automatic"
            )
        ).scalar()
        conn.execute(
            sa.insert(run).values(
                submission_id=submission_id,
                case_id=case_id,
                protocol_id=protocol_id,
                protocol_version=protocol_version,
                trigger="initial",
                reason="",
                is_current=True,
                outcome_id=outcome_id,
                changes={},
                created_by=ACTOR,
                created_at=first_computed[submission_id] or now,
            )
        )
    for name in RESULT_TABLES:
        op.execute(
            sa.text(
                f"UPDATE {name} SET scoring_run_id = (SELECT scoring_run.id FROM scoring_run "
                f"WHERE scoring_run.submission_id = {name}.submission_id)"
            )
        )


def upgrade() -> None:
    with op.batch_alter_table("outcome", schema=None) as batch_op:
        batch_op.add_column(sa.Column("valid_from", models.types.UTCDateTime(timezone=True), nullable=True))
    _create_scoring_run()
    for name in RESULT_TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column("scoring_run_id", sa.Integer(), nullable=True))
    _backfill_initial_runs()
    for name, columns in RESULT_TABLES.items():
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.alter_column("scoring_run_id", existing_type=sa.Integer(), nullable=False)
            batch_op.drop_constraint(f"uq_{name}_submission_id_{'_'.join(columns)}", type_="unique")
            batch_op.create_index(batch_op.f(f"ix_{name}_scoring_run_id"), ["scoring_run_id"], unique=False)
            batch_op.create_unique_constraint(
                batch_op.f(f"uq_{name}_scoring_run_id_{'_'.join(columns)}"), ["scoring_run_id", *columns]
            )
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{name}_scoring_run_id_scoring_run"), "scoring_run", ["scoring_run_id"], ["id"]
            )


def downgrade() -> None:
    for name, columns in RESULT_TABLES.items():
        op.execute(
            sa.text(f"DELETE FROM {name} WHERE scoring_run_id IN (SELECT id FROM scoring_run WHERE NOT is_current)")
        )
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"fk_{name}_scoring_run_id_scoring_run"), type_="foreignkey")
            batch_op.drop_constraint(batch_op.f(f"uq_{name}_scoring_run_id_{'_'.join(columns)}"), type_="unique")
            batch_op.drop_index(batch_op.f(f"ix_{name}_scoring_run_id"))
            batch_op.create_unique_constraint(
                batch_op.f(f"uq_{name}_submission_id_{'_'.join(columns)}"), ["submission_id", *columns]
            )
            batch_op.drop_column("scoring_run_id")
    with op.batch_alter_table("scoring_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scoring_run_submission_id"))
        batch_op.drop_index(batch_op.f("ix_scoring_run_case_id"))
    op.drop_table("scoring_run")
    with op.batch_alter_table("outcome", schema=None) as batch_op:  # after scoring_run, which refers to outcome
        batch_op.drop_column("valid_from")
