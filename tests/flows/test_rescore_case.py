"""Rescoring against a case's new reference version: submissions are scored against the new reference contours
(results and outcomes beside the old), and a version on another frame of reference is refused per submission,
audited, changing nothing.

The expected Dice against the new reference comes from the simulator's oracle (the deviated phantom masks against
the new reference's masks, by voxel counting), not from qa_checks.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from benchmarks.cases import BuiltCase, build_case, build_case_from_spec
from benchmarks.simulator import Deviation, apply_deviations, oracle_measurements, simulate_submission
from flows.case_import import import_case
from flows.catalogue import build_reference, register_case
from flows.rescore_flows import rescore_case, rescore_case_steps
from flows.rescore_plan import RescoreError, plan_case_rescore
from flows.runtime import using_settings
from models.enums import OutcomeLevel
from models.outcomes import current_outcome
from models.scoring_runs import current_run, runs_of
from models.settings import Settings
from models.tables import AuditEvent, BenchmarkCase, Outcome
from tests.flows.rescore_world import CASE, provider_codes, run_centre

REFERENCE_DEVIATION = "margin_mm:PTV:1"
"""The new reference (version 1.1): the PTV drawn 1 mm larger all round, on the same CT."""

CENTRES = {
    "margin_mm:PTV:2": ("acceptable_variation", "per_protocol"),  # oracle Dice 0.787 -> 0.914
    "margin_mm:PTV:2.5": ("unacceptable_variation", "per_protocol"),  # 0.738 -> 0.862
    "margin_mm:PTV:1": ("per_protocol", "per_protocol"),  # 0.871 -> 1.0
    "shift_mm:PTV:0,0,1": ("per_protocol", "per_protocol"),  # 0.952 -> 0.918
}
"""Deviation -> (level against version 1.0, level against 1.1) under uk-lung-sabr 1.0 (PTV Dice 0.85 / 0.75)."""


def _masks(built: BuiltCase, deviation: str, seed: int) -> list:  # type: ignore[type-arg]
    phantom = built.phantom()
    return apply_deviations(
        phantom.masks,
        phantom.interpreted_types,
        [Deviation.parse(deviation)],
        spacing_mm=phantom.spacing_mm,
        rng=np.random.default_rng(seed),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(CASE, tmp_path_factory.mktemp("cases"))


@pytest.mark.slow
def test_new_reference_version(
    prefect_harness: None, settings: Settings, engine: Engine, built: BuiltCase, tmp_path: Path
) -> None:
    url = settings.resolved_database_url
    register_case.fn(build_reference.fn(CASE, str(built.directory.parent)), actor="tests", database_url=url)
    codes = provider_codes(settings, len(CENTRES))
    centres = {d: run_centre(settings, built, tmp_path / "sims", p, d) for p, d in zip(codes, CENTRES, strict=True)}

    # Version 1.1: the case's CT and a reference structure set with the PTV 1 mm larger, imported as an export.
    export = simulate_submission(
        built, provider="reference", deviations=[Deviation.parse(REFERENCE_DEVIATION)], seed=5, out_dir=tmp_path / "x"
    ).directory
    imported = import_case(
        export,
        code=CASE,
        protocol_id="uk-lung-sabr",
        stage="outlining_benchmark",
        technique=None,
        version="1.1",
        title=None,
        actor="tests",
        database_url=url,
        data_dir=settings.data_dir,
    )
    new_reference = {s.canonical: s.mask for s in _masks(built, REFERENCE_DEVIATION, 5)}
    spacing = built.phantom().spacing_mm
    with using_settings(settings):
        summary = rescore_case(f"{CASE}@1.1", actor="tests")

    moved = {centres[d].submission_id for d, (old, new) in CENTRES.items() if old != new}
    assert summary["moved"] == sorted(moved) and summary["skipped"] == []
    with Session(engine) as session:
        for deviation, (old_level, new_level) in CENTRES.items():
            sid = centres[deviation].submission_id
            expected = oracle_measurements(
                _masks(built, deviation, 0), new_reference, {("PTV", "dice")}, spacing_mm=spacing
            )[("PTV", "dice")]
            run = current_run(session, sid)
            assert run is not None and run.case_id == imported.case_id
            assert run.changes["case"] == {"old": f"{CASE}@1.0", "new": f"{CASE}@1.1"}
            assert run.changes["protocol"] == {"old": "uk-lung-sabr@1.0", "new": "uk-lung-sabr@1.0"}
            assert run.changes["outcome"] == {"old": old_level, "new": new_level}
            ptv = next(c for c in run.changes["criteria"] if c["criterion"] == "dice_ptv")
            assert ptv["new_value"] == pytest.approx(expected, abs=0.01)
            assert ptv["old_value"] == pytest.approx(centres[deviation].ptv_dice, abs=0.01)
            outcome = current_outcome(session, sid)
            assert outcome is not None and outcome.level is OutcomeLevel(new_level)
            assert len(session.exec(select(Outcome).where(Outcome.submission_id == sid)).all()) == 2
        rescored = session.exec(select(AuditEvent).where(AuditEvent.action == "submission.rescored")).all()
        assert len(rescored) == len(CENTRES)
        assert all(f"case {CASE}@1.0 -> {CASE}@1.1" in (e.reason or "") for e in rescored)

    # Version 2.0 is a rebuild with new UIDs: another frame of reference, so nothing fits and nothing changes.
    rebuilt = build_case_from_spec(replace(built.spec, version="2.0"), tmp_path / "v2")
    with Session(engine) as session:
        first = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == CASE)).first()
        assert first is not None
        session.add(
            BenchmarkCase(
                **{
                    **first.model_dump(exclude={"id", "created_at"}),
                    "version": "2.0",
                    "reference_sha256": rebuilt.content_sha256,
                    "reference_path": str(rebuilt.directory),
                }
            )
        )
        session.commit()
    summary = rescore_case_steps(settings, f"{CASE}@2.0", actor="tests")  # inline: the flow's body
    assert summary["skipped"] == sorted(c.submission_id for c in centres.values()) and summary["moved"] == []
    assert all("FrameOfReferenceUID" in r["reason"] for r in summary["results"])
    with Session(engine) as session:
        for c in centres.values():
            assert [r.case_id for r in runs_of(session, c.submission_id)][-1] == imported.case_id
        skipped = session.exec(
            select(AuditEvent).where(AuditEvent.action == "submission.rescore_skipped").order_by(col(AuditEvent.id))
        ).all()
        assert len(skipped) == len(CENTRES)
        assert all(f"case {CASE}@1.1 -> {CASE}@2.0" in str(e.after) for e in skipped)
    shutil.rmtree(tmp_path / "v2")


def test_unknown_version_names_the_versions(settings: Settings, engine: Engine, built: BuiltCase) -> None:
    register_case.fn(
        build_reference.fn(CASE, str(built.directory.parent)),
        actor="tests",
        database_url=settings.resolved_database_url,
    )
    with Session(engine) as session, pytest.raises(RescoreError, match=r"unknown case .*@9\.9 \(versions: 1\.0\)"):
        plan_case_rescore(session, case_code=CASE, version="9.9")
