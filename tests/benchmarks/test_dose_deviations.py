"""Tests of simulated plan / TPS-check submissions (benchmarks.simulator plan and dose deviations).

Each deviation is written to DICOM, read back with qa_checks and measured with qa_checks tools, and must move
the measurement the right way by about the right amount.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.anatomy import thorax_phantom
from benchmarks.cases import BuiltCase, build_case, build_case_from_spec, get_case, model_dose
from benchmarks.dose_model import DoseModelOptions
from benchmarks.phantoms import Phantom
from benchmarks.simulator import (
    PlanDeviation,
    PlanDeviationKind,
    SimulatedPlanSubmission,
    SimulationError,
    dose_centroid_mm,
    expected_gamma_outcome,
    simulate_plan_submission,
)
from qa_checks.dicom_io import load_submission, read_rtdose
from qa_checks.dvh import compute_dvh
from qa_checks.gamma import gamma_3d
from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import compute_plan_indices
from qa_checks.protocol import OutcomeLevel

RX_GY = 54.0


def _coarse_lung() -> Phantom:
    return thorax_phantom(spacing_mm=(4.0, 2.5, 2.5))


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    spec = get_case("lung-sabr-planning")
    assert spec.plan is not None
    coarse = replace(
        spec,
        case_id="lung-sabr-planning-coarse",
        builder=_coarse_lung,
        plan=replace(spec.plan, subsampling=(1, 1, 1)),
    )
    return build_case_from_spec(coarse, tmp_path_factory.mktemp("cases"))


@pytest.fixture(scope="module")
def reference(case: BuiltCase) -> DoseGrid:
    assert case.rtdose_path is not None
    return read_rtdose(case.rtdose_path)


@pytest.fixture(scope="module")
def masks(case: BuiltCase) -> dict[str, np.ndarray]:
    assert case.spec.plan is not None
    return dict(model_dose(case.spec.plan, case.phantom()).masks)


def _simulate(case: BuiltCase, tmp_path: Path, *texts: str, seed: int = 0) -> tuple[SimulatedPlanSubmission, DoseGrid]:
    sim = simulate_plan_submission(
        case,
        provider="Centre A",
        deviations=[PlanDeviation.parse(t) for t in texts],
        seed=seed,
        out_dir=tmp_path / "submission",
    )
    loaded = load_submission(sim.directory)  # also checks RTDOSE -> RTPLAN -> RTSTRUCT references
    assert loaded.dose is not None and loaded.plan is not None
    for effect in sim.expected_effects:
        assert effect.met, effect
    return sim, loaded.dose


class TestDoseDeviations:
    def test_scale_raises_d95(
        self, case: BuiltCase, reference: DoseGrid, masks: dict[str, np.ndarray], tmp_path: Path
    ) -> None:
        _, dose = _simulate(case, tmp_path, "dose_scale_percent:3")
        before = compute_dvh(reference, masks["PTV"]).d_percent(95)
        after = compute_dvh(dose, masks["PTV"]).d_percent(95)
        # 3% up; 0.1% covers the 0.01 Gy DVH bins (0.02% of 54 Gy) and 16-bit storage (2e-5 relative).
        assert after / before == pytest.approx(1.03, abs=0.001)

    @pytest.mark.parametrize("shift", [(0.0, 0.0, 2.0), (2.0, -1.0, 0.0)])
    def test_shift_moves_centroid(
        self, case: BuiltCase, reference: DoseGrid, tmp_path: Path, shift: tuple[float, float, float]
    ) -> None:
        _, dose = _simulate(case, tmp_path, "dose_shift_mm:" + ",".join(f"{v:g}" for v in shift))
        moved = np.subtract(dose_centroid_mm(dose.values_gy, dose), dose_centroid_mm(reference.values_gy, reference))
        # Linear interpolation of a fractional-voxel shift blurs the cloud slightly: 0.3 mm (under a tenth of
        # the 4 mm slice spacing) covers it.
        assert moved == pytest.approx(shift, abs=0.3)

    def test_noise_is_seeded(self, case: BuiltCase, reference: DoseGrid, tmp_path: Path) -> None:
        sim, dose = _simulate(case, tmp_path, "dose_noise_percent:2", seed=7)
        high = reference.values_gy >= 0.1 * reference.values_gy.max()
        sd = float((dose.values_gy - reference.values_gy)[high].std())
        # Standard deviation 2% of the maximum; 10% relative covers sampling (tens of thousands of voxels) and
        # the clipping at 0 Gy, which is negligible above 10% of the maximum.
        assert sd == pytest.approx(0.02 * reference.values_gy.max(), rel=0.1)
        first = sim.rtdose_path.read_bytes()
        again = simulate_plan_submission(
            case,
            provider="Centre A",
            deviations=[PlanDeviation.parse("dose_noise_percent:2")],
            seed=7,
            out_dir=tmp_path / "again",
        )
        assert again.rtdose_path.read_bytes() == first
        other = simulate_plan_submission(
            case,
            provider="Centre A",
            deviations=[PlanDeviation.parse("dose_noise_percent:2")],
            seed=8,
            out_dir=tmp_path / "other",
        )
        assert read_rtdose(other.rtdose_path).values_gy.tolist() != dose.values_gy.tolist()


class TestPlanDeviations:
    def test_under_coverage(
        self, case: BuiltCase, reference: DoseGrid, masks: dict[str, np.ndarray], tmp_path: Path
    ) -> None:
        _, dose = _simulate(case, tmp_path, "under_coverage:85")
        before = compute_plan_indices(reference, masks["PTV"], RX_GY)
        after = compute_plan_indices(dose, masks["PTV"], RX_GY)
        assert before.ptv_coverage_percent == pytest.approx(DoseModelOptions().coverage_percent, abs=1.0)
        # Coverage is tuned by bisection on this grid: 1 point covers voxel granularity.
        assert after.ptv_coverage_percent == pytest.approx(85.0, abs=1.0)
        assert compute_dvh(dose, masks["PTV"]).d_percent(95) < RX_GY

    def test_hot_spot(self, case: BuiltCase, reference: DoseGrid, masks: dict[str, np.ndarray], tmp_path: Path) -> None:
        _, dose = _simulate(case, tmp_path, "hot_spot:150")
        # Dmax / Rx of the PTV: 1.5 to 16-bit precision (max dose / 65535 is 1e-3 Gy at 81 Gy); 0.1% is ample.
        assert compute_plan_indices(dose, masks["PTV"], RX_GY).hi_rtog == pytest.approx(1.5, rel=0.001)
        assert compute_plan_indices(reference, masks["PTV"], RX_GY).hi_rtog < 1.3
        # Coverage is untouched by a hot spot.
        assert compute_plan_indices(dose, masks["PTV"], RX_GY).ptv_coverage_percent == pytest.approx(
            compute_plan_indices(reference, masks["PTV"], RX_GY).ptv_coverage_percent, abs=0.5
        )

    def test_poor_conformity(
        self, case: BuiltCase, reference: DoseGrid, masks: dict[str, np.ndarray], tmp_path: Path
    ) -> None:
        _, dose = _simulate(case, tmp_path, "poor_conformity:1.5")
        before = compute_plan_indices(reference, masks["PTV"], RX_GY)
        after = compute_plan_indices(dose, masks["PTV"], RX_GY)
        # R50% 1.5 times larger; 7% relative covers the voxel quantile of the tuning and the bath's tail.
        assert after.r50 / before.r50 == pytest.approx(1.5, rel=0.07)
        assert after.d2cm_percent > before.d2cm_percent
        assert after.ptv_coverage_percent == pytest.approx(DoseModelOptions().coverage_percent, abs=1.0)

    def test_organ_overdose(
        self, case: BuiltCase, reference: DoseGrid, masks: dict[str, np.ndarray], tmp_path: Path
    ) -> None:
        _, dose = _simulate(case, tmp_path, "organ_overdose:SpinalCord:25")
        assert compute_dvh(reference, masks["SpinalCord"]).max_gy < 5.0
        # Raised to 25 Gy, read back to within the 16-bit step (about 1 mGy).
        assert compute_dvh(dose, masks["SpinalCord"]).max_gy == pytest.approx(25.0, abs=0.01)

    def test_combined(self, case: BuiltCase, tmp_path: Path) -> None:
        sim, _ = _simulate(case, tmp_path, "under_coverage:90", "organ_overdose:Heart:30", "dose_scale_percent:2")
        assert [e.metric for e in sim.expected_effects] == ["coverage_percent", "dmax_gy", "d95_gy"]
        assert sim.expected_gamma_outcome is None
        summary = sim.to_json_dict()
        assert summary["deviations"] == ["under_coverage:90", "organ_overdose:Heart:30", "dose_scale_percent:2"]


class TestGammaExpectation:
    def test_small_scale_passes(self, case: BuiltCase, reference: DoseGrid, tmp_path: Path) -> None:
        sim, dose = _simulate(case, tmp_path, "dose_scale_percent:2")
        assert sim.expected_gamma_outcome is OutcomeLevel.PER_PROTOCOL
        result = gamma_3d(reference, dose, dose_percent=3, distance_mm=2, lower_cutoff_percent=10)
        assert result.pass_rate_percent >= 95.0  # uk-lung-sabr per-protocol level

    def test_large_scale_is_not_predicted_and_fails_more(
        self, case: BuiltCase, reference: DoseGrid, tmp_path: Path
    ) -> None:
        sim, dose = _simulate(case, tmp_path, "dose_scale_percent:8")
        assert sim.expected_gamma_outcome is None
        small = gamma_3d(reference, reference, dose_percent=3, distance_mm=2, lower_cutoff_percent=10)
        large = gamma_3d(reference, dose, dose_percent=3, distance_mm=2, lower_cutoff_percent=10)
        assert small.pass_rate_percent == 100.0
        assert large.pass_rate_percent < 99.0

    def test_rules(self) -> None:
        gamma = {"dose_percent": 3, "distance_mm": 2, "normalisation": "global"}
        assert expected_gamma_outcome([], gamma)[0] is OutcomeLevel.PER_PROTOCOL
        assert (
            expected_gamma_outcome([PlanDeviation.parse("dose_shift_mm:0,0,1")], gamma)[0] is OutcomeLevel.PER_PROTOCOL
        )
        assert expected_gamma_outcome([PlanDeviation.parse("dose_shift_mm:0,0,3")], gamma)[0] is None
        assert (
            expected_gamma_outcome([PlanDeviation.parse("dose_scale_percent:-3")], gamma)[0]
            is OutcomeLevel.PER_PROTOCOL
        )
        assert expected_gamma_outcome([PlanDeviation.parse("dose_noise_percent:1")], gamma)[0] is None
        assert expected_gamma_outcome([], None)[0] is None
        assert expected_gamma_outcome([], {**gamma, "normalisation": "local"})[0] is None


class TestParsingAndErrors:
    def test_parse_round_trip(self) -> None:
        for text in ("dose_scale_percent:3", "dose_shift_mm:0,0,2", "organ_overdose:SpinalCord:25", "hot_spot:150"):
            assert str(PlanDeviation.parse(text)) == text
        assert PlanDeviation.parse("under_coverage:85").kind is PlanDeviationKind.UNDER_COVERAGE

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("nope:1", "unknown kind 'nope'"),
            ("dose_shift_mm:1,2", "shift needs dz,dy,dx"),
            ("organ_overdose:25", "expected 'organ_overdose:Structure:Gy'"),
            ("hot_spot:90", r"hot_spot: value 90 outside \[101, 200\]"),
            ("dose_scale_percent:abc", "bad number"),
        ],
    )
    def test_parse_errors(self, text: str, message: str) -> None:
        with pytest.raises(SimulationError, match=message):
            PlanDeviation.parse(text)

    def test_outlining_case_refused(self, tmp_path: Path) -> None:
        mini = build_case("lung-sabr-outlining-mini", tmp_path / "cases")
        with pytest.raises(SimulationError, match="is not a planning case"):
            simulate_plan_submission(mini, provider="X", deviations=[], seed=0, out_dir=tmp_path / "out")

    def test_unknown_organ(self, case: BuiltCase, tmp_path: Path) -> None:
        with pytest.raises(SimulationError, match="structure 'Liver' is not in the case"):
            simulate_plan_submission(
                case,
                provider="X",
                deviations=[PlanDeviation.parse("organ_overdose:Liver:10")],
                seed=0,
                out_dir=tmp_path,
            )

    def test_foreign_files_protected(self, case: BuiltCase, tmp_path: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        (out / "notes.txt").write_text("keep")
        with pytest.raises(SimulationError, match=r"holds files other than a simulated submission \(notes.txt\)"):
            simulate_plan_submission(case, provider="X", deviations=[], seed=0, out_dir=out)
        sim = simulate_plan_submission(case, provider="X", deviations=[], seed=0, out_dir=out, overwrite=True)
        assert not (out / "notes.txt").exists()
        assert sim.rtplan_path.name == "RTPLAN_X.dcm" and sim.rtdose_path.name == "RTDOSE_X.dcm"
        # Without deviations the submitted dose is the reference dose.
        assert case.rtdose_path is not None
        assert np.array_equal(read_rtdose(sim.rtdose_path).values_gy, read_rtdose(case.rtdose_path).values_gy)


def test_poor_conformity_scales_an_explicit_r50() -> None:
    """A plan whose dose options fix R50% (the spine case) gets a shallower fall-off from poor_conformity: the
    factor multiplies that R50%, and the expected effect is met (it used to leave the dose unchanged)."""
    from benchmarks.anatomy_sites import spine_phantom
    from benchmarks.simulator import PlanDeviation, apply_plan_deviations

    spec = get_case("spine-sabr-planning")
    assert spec.plan is not None and spec.plan.options.r50 is not None
    plan = replace(spec.plan, subsampling=(1, 1, 1))
    phantom = spine_phantom(spacing_mm=(4.0, 2.5, 2.5))
    reference, submitted, effects = apply_plan_deviations(
        plan, phantom, [PlanDeviation.parse("poor_conformity:1.5")], rng=np.random.default_rng(0)
    )
    assert np.max(np.abs(submitted.dose.values_gy - reference.dose.values_gy)) > 1.0
    (effect,) = effects
    assert effect.metric == "r50" and effect.expected == pytest.approx(1.5 * spec.plan.options.r50)
    assert effect.met, effect
