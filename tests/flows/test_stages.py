"""Every QA stage through the flow's tasks: planning benchmarks and dosimetry (TPS) checks decided as the
independent oracle expects, per-beam and cropped doses handled, and a provider credentialed stage by stage.

The expected outcomes come from :mod:`benchmarks.simulation.oracle`, which measures the analytic dose model with
its own definitions and bounds gamma in closed form; it imports no qa_checks metric code.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import STAGE_DOSIMETRY, BuiltCase
from benchmarks.simulator import PlanDeviation, SimulatedPlanSubmission, simulate_plan_submission
from flows.catalogue import register_protocol
from models.settings import Settings
from models.tables import BenchmarkCase, DoseResult, PlanResult
from tests.coarse import COARSE_LUNG, build_coarse_lung
from tests.flows.library_runs import PROVIDER, run_flow, stored_outcome

COARSE_TPS = "lung-sabr-tps-check-coarse"


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltCase]:
    root = tmp_path_factory.mktemp("cases")
    return {
        COARSE_LUNG: build_coarse_lung(root),
        COARSE_TPS: build_coarse_lung(root, case_id=COARSE_TPS, stage=STAGE_DOSIMETRY),
    }


@pytest.fixture
def registered(engine: Engine, cases: dict[str, BuiltCase]) -> dict[str, BuiltCase]:
    """The coarse planning and TPS-check cases registered as the library's cases would be (with their stages)."""
    from benchmarks.protocols import load_protocol
    from flows.catalogue import case_stage
    from models.tables import Technique

    with Session(engine) as session:
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        for built in cases.values():
            session.add(
                BenchmarkCase(
                    case_code=built.spec.case_id,
                    version=built.spec.version,
                    title=built.spec.title,
                    technique_id=lung.id or 0,
                    stage=case_stage(built.spec),
                    protocol_id="uk-lung-sabr",
                    protocol_version="1.0",
                    reference_sha256=built.content_sha256,
                    reference_path=str(built.directory),
                )
            )
        register_protocol(session, load_protocol("uk-lung-sabr"), actor="tests")
        session.commit()
    return cases


def _simulate(built: BuiltCase, tmp: Path, *texts: str, check: Any = None, seed: int = 0) -> SimulatedPlanSubmission:
    return simulate_plan_submission(
        built,
        provider=PROVIDER,
        deviations=[PlanDeviation.parse(t) for t in texts],
        seed=seed,
        out_dir=tmp / "submission",
        check=check,
    )


class TestPlanningStage:
    @pytest.mark.parametrize(
        "deviations",
        [(), ("under_coverage:85",), ("hot_spot:180",), ("poor_conformity:1.5",), ("organ_overdose:SpinalCord:30",)],
        ids=lambda d: ",".join(d) or "reference",
    )
    def test_outcome_is_the_oracles(
        self,
        settings: Settings,
        engine: Engine,
        registered: dict[str, BuiltCase],
        tmp_path: Path,
        deviations: tuple[str, ...],
    ) -> None:
        sim = _simulate(registered[COARSE_LUNG], tmp_path, *deviations)
        assert sim.check == "planning" and sim.expected_outcome is not None
        sid = run_flow(settings, sim.directory, registered[COARSE_LUNG])
        level, reasons = stored_outcome(settings, sid)
        assert level == sim.expected_outcome.value, (reasons, sim.expected_reason)
        with Session(engine) as session:
            rows = session.exec(select(PlanResult).where(PlanResult.submission_id == sid)).all()
        by_key = {(r.structure, r.metric): r for r in rows}
        # Protocol metric names, with units, the criteria they were judged against and the prescription's source.
        coverage = by_key[("PTV", "V100%")]
        assert coverage.unit == "%" and coverage.parameters["criteria"][0]["id"] == "coverage"
        assert "RTPLAN" in coverage.parameters["prescription_source"]
        assert by_key[("SpinalCord", "D0.35cc")].unit == "Gy"
        assert by_key[("Lungs", "V20Gy%")].parameters["criteria"][0]["id"].startswith("oar_lungs_v20gy")
        assert by_key[("PTV", "Volume")].unit == "cc" and by_key[("PTV", "Volume")].value > 0  # type: ignore[operator]

    def test_per_beam_dose_alone_is_rejected(
        self, settings: Settings, engine: Engine, registered: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        sim = _simulate(registered[COARSE_LUNG], tmp_path)
        ds = pydicom.dcmread(sim.rtdose_path)
        ds.DoseSummationType = "BEAM"
        ds.save_as(sim.rtdose_path)
        sid = run_flow(settings, sim.directory, registered[COARSE_LUNG])
        level, reasons = stored_outcome(settings, sid)
        assert level == "rejected"
        assert sim.rtdose_path.name in reasons[0] and "(3004,000A)" in reasons[0] and "BEAM" in reasons[0]

    def test_organ_cut_by_the_dose_grid_is_not_evaluated(
        self, settings: Settings, engine: Engine, registered: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        sim = _simulate(registered[COARSE_LUNG], tmp_path)
        _crop_dose_slices(sim.rtdose_path, keep=slice(10, -10))  # the cord runs the whole CT length
        sid = run_flow(settings, sim.directory, registered[COARSE_LUNG])
        level, reasons = stored_outcome(settings, sid)
        assert level == "unacceptable_variation"
        assert any("SpinalCord" in r and "outside the dose grid" in r for r in reasons), reasons


def _crop_dose_slices(path: Path, *, keep: slice) -> None:
    """Keep only some frames of an RTDOSE (a centre's dose grid shorter than the CT)."""
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array[keep].copy()
    offsets = [float(v) for v in ds.GridFrameOffsetVector][keep]
    position = [float(v) for v in ds.ImagePositionPatient]
    position[2] += offsets[0]
    ds.ImagePositionPatient = position
    ds.GridFrameOffsetVector = [o - offsets[0] for o in offsets]
    ds.NumberOfFrames = frames.shape[0]
    ds.PixelData = frames.tobytes()
    ds.save_as(path)


class TestDosimetryStage:
    @pytest.mark.parametrize(
        ("deviations", "check"),
        [((), "tps_check"), (("dose_scale_percent:2",), None), (("dose_shift_mm:0,0,5",), None)],
        ids=["reference", "scale 2%", "shift 5 mm"],
    )
    def test_outcome_is_the_oracles(
        self,
        settings: Settings,
        engine: Engine,
        registered: dict[str, BuiltCase],
        tmp_path: Path,
        deviations: tuple[str, ...],
        check: Any,
    ) -> None:
        sim = _simulate(registered[COARSE_TPS], tmp_path, *deviations, check=check)
        assert sim.check == "tps_check" and sim.expected_outcome is not None, sim.expected_reason
        sid = run_flow(settings, sim.directory, registered[COARSE_TPS])
        level, reasons = stored_outcome(settings, sid)
        assert level == sim.expected_outcome.value, (reasons, sim.expected_reason)
        with Session(engine) as session:
            rows = {r.metric: r for r in session.exec(select(DoseResult).where(DoseResult.submission_id == sid)).all()}
        rate = rows["gamma_pass_rate_percent"]
        low, high = sim.gamma_pass_rate_bounds_percent or (0.0, 100.0)
        assert low - 1e-9 <= rate.value <= high + 1e-9  # type: ignore[operator]
        assert rate.parameters["dose_percent"] == 3 and rate.parameters["distance_mm"] == 2
        assert rate.parameters["criteria"][0]["id"] == "gamma_pass_rate"
        assert sum(rows["gamma_histogram"].parameters["bins"].values()) == rows["gamma_histogram"].value

    def test_scoring_reads_only_the_reference_dose(
        self,
        settings: Settings,
        engine: Engine,
        registered: dict[str, BuiltCase],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import flows.submission_reads

        read: list[list[str]] = []
        original = flows.submission_reads.load_submission

        def recording(files: Any, **kwargs: Any) -> Any:
            read.append(sorted(Path(p).name for p in ([files] if isinstance(files, str | Path) else files)))
            return original(files, **kwargs)

        monkeypatch.setattr(flows.submission_reads, "load_submission", recording)
        sim = _simulate(registered[COARSE_TPS], tmp_path, check="tps_check")
        assert sim.expected_outcome is not None, sim.expected_reason
        with flows.submission_reads.reading_once():
            sid = run_flow(settings, sim.directory, registered[COARSE_TPS])
        assert stored_outcome(settings, sid)[0] == sim.expected_outcome.value
        # the stored submission (once: validation's read serves scoring), then the reference dose alone
        assert len(read) == 2 and read[1] == ["RTDOSE.dcm"]


class TestTaskRunsUnderPrefect:
    """The credential-submission flow on a plan and on a TPS check, with task runs recorded by one session-wide
    Prefect test server: each stage's parts are task runs named by what they measure."""

    def _task_run_names(self, settings: Settings, sim: SimulatedPlanSubmission, case: str) -> tuple[int, list[str]]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        from flows.credentialing import credential_submission
        from flows.runtime import using_settings

        with using_settings(settings):
            state = credential_submission(str(sim.directory), PROVIDER, case, actor="tests", return_state=True)
        result = state.result()
        assert result["status"] == "decided"
        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        with get_client(sync_client=True) as client:
            tasks = client.read_task_runs(flow_run_filter=this_run)
        return int(result["submission_id"]), sorted(t.name for t in tasks)

    def test_planning_runs_the_indices_and_each_structures_dvh(
        self,
        prefect_harness: None,
        settings: Settings,
        engine: Engine,
        registered: dict[str, BuiltCase],
        tmp_path: Path,
    ) -> None:
        sim = _simulate(registered[COARSE_LUNG], tmp_path)
        sid, names = self._task_run_names(settings, sim, COARSE_LUNG)
        with Session(engine) as session:
            rows = session.exec(select(PlanResult).where(PlanResult.submission_id == sid)).all()
        measured = sorted({r.structure for r in rows if r.metric == "Volume" and r.value is not None})
        assert {"PTV", "SpinalCord", "Lungs"} <= set(measured)  # a target, an organ and a composite
        assert names == sorted(
            [
                f"ingest[{PROVIDER} {COARSE_LUNG}]",
                f"validate[submission {sid}]",
                f"score-plan[submission {sid}]",
                "plan-indices[PTV]",
                *(f"dvh[{structure}]" for structure in measured),  # one task run per structure's DVH
                f"decide[submission {sid}]",
                f"update-credentials[submission {sid}]",
            ]
        )

    def test_tps_check_runs_gamma_named_by_its_criterion(
        self,
        prefect_harness: None,
        settings: Settings,
        engine: Engine,
        registered: dict[str, BuiltCase],
        tmp_path: Path,
    ) -> None:
        sim = _simulate(registered[COARSE_TPS], tmp_path, check="tps_check")
        sid, names = self._task_run_names(settings, sim, COARSE_TPS)
        with Session(engine) as session:
            rate = session.exec(
                select(DoseResult).where(
                    DoseResult.submission_id == sid, DoseResult.metric == "gamma_pass_rate_percent"
                )
            ).one()
        criterion = f"{rate.parameters['dose_percent']:g}%/{rate.parameters['distance_mm']:g}mm"
        assert criterion == "3%/2mm" and rate.parameters["normalisation"] == "global"  # the protocol's criterion
        assert names == sorted(
            [
                f"ingest[{PROVIDER} {COARSE_TPS}]",
                f"validate[submission {sid}]",
                f"gamma-check[submission {sid}]",
                f"gamma[{criterion}]",
                f"decide[submission {sid}]",
                f"update-credentials[submission {sid}]",
            ]
        )


def test_provider_becomes_credentialed_stage_by_stage(
    settings: Settings, engine: Engine, registered: dict[str, BuiltCase], tmp_path: Path
) -> None:
    """Questionnaire, outlining, planning and TPS check: pending until the last stage passes."""
    from benchmarks.cases import build_case
    from benchmarks.questionnaires import example_answers
    from benchmarks.simulator import Deviation, simulate_submission
    from flows.catalogue import build_reference, register_case
    from flows.questionnaire import submit_answers
    from models.tables import Credential

    def lung_status() -> tuple[str, list[str]]:
        with Session(engine) as session:
            cred = session.exec(select(Credential).where(Credential.trial_id == None)).one()  # noqa: E711
            return cred.status.value, list(cred.evidence["outstanding"])

    url = settings.resolved_database_url
    submit_answers(
        PROVIDER,
        "sabr_lung",
        example_answers("sabr_lung"),
        actor="tests",
        database_url=url,
        data_dir=settings.data_dir,
        validity_days=365,
    )
    assert lung_status()[0] == "pending" and len(lung_status()[1]) == 3

    mini = build_case("lung-sabr-outlining-mini", settings.cases_dir)
    register_case.fn(build_reference.fn(mini.spec.case_id, str(settings.cases_dir)), actor="tests", database_url=url)
    contours = simulate_submission(
        mini, provider=PROVIDER, deviations=[Deviation.parse("margin_mm:PTV:1")], seed=0, out_dir=tmp_path / "c"
    )
    run_flow(settings, contours.directory, mini)
    assert lung_status() == ("pending", ["planning benchmark: missing", "complex treatment dosimetry check: missing"])

    plan = _simulate(registered[COARSE_LUNG], tmp_path / "p")
    run_flow(settings, plan.directory, registered[COARSE_LUNG])
    assert lung_status() == ("pending", ["complex treatment dosimetry check: missing"])

    tps = _simulate(registered[COARSE_TPS], tmp_path / "t", "dose_scale_percent:1")
    run_flow(settings, tps.directory, registered[COARSE_TPS])
    assert lung_status() == ("credentialed", [])


def test_scored_cases_are_reproducible(cases: dict[str, BuiltCase], tmp_path: Path) -> None:
    """The coarse cases build deterministically (a rebuild has the same content hash)."""
    again = build_coarse_lung(tmp_path)
    assert again.content_sha256 == cases[COARSE_LUNG].content_sha256
    shutil.rmtree(again.directory)
