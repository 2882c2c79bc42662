"""Rescoring a planning benchmark after a coverage level change: the plan is scored again with the new protocol's
criteria (stored with the new results), and only the plan whose coverage lies between the old and the new
acceptable level moves. Expected levels come from the simulator's oracle V100% (its own voxel counting)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase
from benchmarks.simulator import PlanDeviation, simulate_plan_submission
from flows.catalogue import case_stage, register_protocol
from flows.rescore_plan import plan_protocol_rescore
from flows.rescoring import rescore_submission
from models.outcomes import current_outcome
from models.scoring_runs import current_run, results_of_run
from models.settings import Settings
from models.tables import BenchmarkCase, PlanResult, Technique
from tests.coarse import COARSE_LUNG, build_coarse_lung
from tests.flows.library_runs import run_flow
from tests.flows.rescore_world import write_protocol_version

COVERAGE = 'coverage: {{structure: PTV, metric: "V100%", per_protocol: 95, acceptable: {},'
"""The coverage criterion as uk-lung-sabr's file writes it; 1.0 has acceptable 90, 1.1 has 93."""


def coverage_level(v100: float, acceptable: float) -> str:
    if v100 >= 95:
        return "per_protocol"
    return "acceptable_variation" if v100 >= acceptable else "unacceptable_variation"


@pytest.fixture(scope="module")
def coarse(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_coarse_lung(tmp_path_factory.mktemp("cases"))


@pytest.mark.slow
def test_coverage_level_change(settings: Settings, engine: Engine, coarse: BuiltCase, tmp_path: Path) -> None:
    from benchmarks.protocols import load_protocol

    with Session(engine) as session:
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        session.add(
            BenchmarkCase(
                case_code=COARSE_LUNG,
                version=coarse.spec.version,
                title=coarse.spec.title,
                technique_id=lung.id or 0,
                stage=case_stage(coarse.spec),
                protocol_id="uk-lung-sabr",
                protocol_version="1.0",
                reference_sha256=coarse.content_sha256,
                reference_path=str(coarse.directory),
            )
        )
        register_protocol(session, load_protocol("uk-lung-sabr"), actor="tests")
        session.commit()
    plans = {}
    for text in ("under_coverage:92", "under_coverage:88"):
        sim = simulate_plan_submission(
            coarse, provider="the-christie", deviations=[PlanDeviation.parse(text)], seed=0, out_dir=tmp_path / text
        )
        v100 = sim.measurements[("PTV", "V100%")]
        assert abs(v100 - 93) > 0.5 and abs(v100 - 90) > 0.5, v100  # away from both levels
        plans[text] = (run_flow(settings, sim.directory, coarse), v100, sim)
    for sid, _, sim in plans.values():
        with Session(engine) as session:
            outcome = current_outcome(session, sid)
        assert outcome is not None and outcome.level.value == sim.expected_outcome.value  # type: ignore[union-attr]

    write_protocol_version(
        tmp_path, version="1.1", changes={COVERAGE.format(90): COVERAGE.format(93)}, data_dir=settings.data_dir
    )
    with Session(engine) as session:
        plan = plan_protocol_rescore(
            session, protocol_id="uk-lung-sabr", version="1.1", data_dir=settings.data_dir, actor="tests"
        )
        session.commit()
    assert sorted(i.submission_id for i in plan.items) == sorted(sid for sid, _, _ in plans.values())
    results = [
        rescore_submission(
            item,
            actor="tests",
            database_url=settings.resolved_database_url,
            data_dir=settings.data_dir,
            validity_days=settings.credential_validity_days,
        )
        for item in plan.items
    ]
    moved = {r["submission_id"] for r in results if r["old_outcome"] != r["new_outcome"]}
    expected = {sid for sid, v100, _ in plans.values() if coverage_level(v100, 90) != coverage_level(v100, 93)}
    assert moved == expected == {plans["under_coverage:92"][0]}

    with Session(engine) as session:
        sid, v100, _ = plans["under_coverage:92"]
        run = current_run(session, sid)
        assert run is not None and run.protocol_version == "1.1"
        coverage = next(r for r in results_of_run(session, PlanResult, run.id or 0) if r.metric == "V100%")
        assert coverage.parameters["protocol"] == "uk-lung-sabr@1.1"
        assert coverage.parameters["criteria"][0]["acceptable"] == 93.0
        (change,) = [c for c in run.changes["criteria"] if c["criterion"] == "coverage"]
        assert (change["old_levels"], change["new_levels"]) == ([95.0, 90.0], [95.0, 93.0])
        assert (change["old_result"], change["new_result"]) == ("acceptable_variation", "unacceptable_variation")
        assert change["new_value"] == pytest.approx(v100, abs=1.0)
        assert [c["criterion"] for c in run.changes["criteria"]] == ["coverage"]  # nothing else moved
        outcome = current_outcome(session, sid)
        assert outcome is not None and outcome.level.value == "unacceptable_variation"
