"""Migration 0005_rescoring: results scored before scoring runs existed get one current initial run per
submission; downgrading keeps only the current run's results. SQLite always, PostgreSQL when configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from models.migrate import downgrade, upgrade
from tests import dbutil

SHA = "0" * 64


@pytest.fixture(params=["sqlite", "configured"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mig.db'}"
        return
    base = dbutil.base_url()
    if base is None or not dbutil.is_postgres(base):
        pytest.skip("RTQA_DATABASE_URL does not name a PostgreSQL database")
    url = dbutil.new_database(tmp_path)
    yield url
    dbutil.drop_database(url)


def _world_at_0002(conn: sa.Connection) -> None:
    """Two decided submissions with results (one with an override on top) and one without results."""
    conn.execute(sa.text("INSERT INTO technique (code, name, family, site) VALUES ('t', 'T', 'sabr', 'x')"))
    conn.execute(
        sa.text(
            "INSERT INTO benchmark_case (case_code, version, title, technique_id, stage, protocol_id, "
            "protocol_version, reference_sha256, reference_path, created_at) SELECT 'c', '1.0', 'C', id, "
            "'outlining_benchmark', 'p', '1.3', :sha, '/x', CURRENT_TIMESTAMP FROM technique"
        ),
        {"sha": SHA},
    )
    conn.execute(sa.text("INSERT INTO network (code, name) VALUES ('n', 'N')"))
    conn.execute(sa.text("INSERT INTO provider (code, name, network_id) SELECT 'p', 'P', id FROM network"))
    for attempt, sha in ((1, "1" * 64), (2, "2" * 64), (3, "3" * 64)):
        conn.execute(
            sa.text(
                "INSERT INTO submission (provider_id, case_id, attempt, content_sha256, status, storage_path, "
                "submitted_by, received_at, updated_at) SELECT provider.id, benchmark_case.id, :attempt, :sha, "
                "'decided', '/s', 'x', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM provider, benchmark_case"
            ),
            {"attempt": attempt, "sha": sha},
        )
    for attempt in (1, 2):
        for structure in ("PTV", "GTV"):
            conn.execute(
                sa.text(
                    "INSERT INTO structure_result (submission_id, structure, metric, value, unit, computed_at, "
                    "parameters) SELECT id, :structure, 'dice', 0.9, '1', CURRENT_TIMESTAMP, '{}' FROM submission "
                    "WHERE attempt = :attempt"
                ),
                {"structure": structure, "attempt": attempt},
            )
    for attempt, source, current in ((1, "automatic", False), (1, "override", True), (2, "automatic", True)):
        conn.execute(
            sa.text(
                "INSERT INTO outcome (submission_id, level, reasons, source, decided_by, justification, protocol_id, "
                "protocol_version, is_current, decided_at) SELECT id, 'per_protocol', '[]', :source, 'x', :why, "
                "'p', '1.3', :current, CURRENT_TIMESTAMP "
                "FROM submission WHERE attempt = :attempt"
            ),
            {"attempt": attempt, "source": source, "current": current, "why": "why" if source == "override" else None},
        )


def test_existing_results_get_one_initial_run(fresh_url: str) -> None:
    upgrade(fresh_url, "0002")
    engine = sa.create_engine(fresh_url)
    try:
        with engine.begin() as conn:
            _world_at_0002(conn)
        upgrade(fresh_url)
        with engine.connect() as conn:
            runs = conn.execute(
                sa.text(
                    "SELECT s.attempt, r.trigger, r.is_current, r.protocol_id, r.protocol_version, o.source "
                    "FROM scoring_run r JOIN submission s ON s.id = r.submission_id "
                    "LEFT JOIN outcome o ON o.id = r.outcome_id ORDER BY s.attempt"
                )
            ).all()
            # One run per submission with results, linked to its first automatic outcome (not the override).
            assert [tuple(r) for r in runs] == [
                (1, "initial", True, "p", "1.3", "automatic"),
                (2, "initial", True, "p", "1.3", "automatic"),
            ]
            linked = conn.execute(
                sa.text(
                    "SELECT count(*) FROM structure_result x JOIN scoring_run r ON r.id = x.scoring_run_id "
                    "WHERE r.submission_id = x.submission_id"
                )
            ).scalar_one()
            assert linked == 4
            # Results are now unique per run: a second run of attempt 1 may hold the same structure and metric.
            conn.execute(
                sa.text(
                    "INSERT INTO scoring_run (submission_id, case_id, protocol_id, protocol_version, trigger, reason, "
                    "is_current, changes, created_by, created_at) SELECT id, case_id, 'p', '1.4', 'rescore', '', "
                    ":current, '{}', 'x', CURRENT_TIMESTAMP FROM submission WHERE attempt = 1"
                ),
                {"current": False},
            )
            conn.execute(
                sa.text(
                    "UPDATE scoring_run SET is_current = (protocol_version = '1.4') "
                    "WHERE submission_id = (SELECT id FROM submission WHERE attempt = 1)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO structure_result (submission_id, scoring_run_id, structure, metric, value, unit, "
                    "computed_at, parameters) SELECT submission_id, id, 'PTV', 'dice', 0.8, '1', CURRENT_TIMESTAMP, "
                    "'{}' FROM scoring_run WHERE protocol_version = '1.4'"
                )
            )
            conn.commit()
        downgrade(fresh_url, "0002")
        with engine.connect() as conn:
            kept = conn.execute(
                sa.text(
                    "SELECT s.attempt, x.structure, x.value FROM structure_result x "
                    "JOIN submission s ON s.id = x.submission_id ORDER BY s.attempt, x.structure"
                )
            ).all()
            # Downgrade keeps each submission's current results only (attempt 1: the newer run's single row).
            assert [tuple(r) for r in kept] == [(1, "PTV", 0.8), (2, "GTV", 0.9), (2, "PTV", 0.9)]
    finally:
        engine.dispose()
