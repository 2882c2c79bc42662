"""Tests of the oracle outcome of simulated plan and TPS-check submissions (benchmarks.simulation.oracle).

The oracle scores the deviated dose on the modelled grid with the case's protocol, using its own metric
definitions and gamma bounds (no scorer code); these tests check that a correct plan is per protocol, that gross
deviations are unacceptable for the right criterion, and that the scorer (qa_checks plan indices, DVH and gamma,
on the model grid and on the written DICOM files) agrees with the oracle within stated tolerances.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from benchmarks.anatomy import thorax_phantom
from benchmarks.cases import BuiltCase, PlanSpec, build_case_from_spec, get_case, model_dose
from benchmarks.dose_model import ModelDose
from benchmarks.phantoms import Phantom
from benchmarks.protocols import load_protocol
from benchmarks.simulation.oracle import PlanOracle, plan_oracle, target_contexts
from benchmarks.simulation.output import simulate_plan_submission
from benchmarks.simulation.plans import PlanDeviation, plan_check_of
from benchmarks.simulator import SimulationError, apply_plan_deviations
from qa_checks.dicom_io import read_rtdose
from qa_checks.dvh import compute_dvh, dvh_measurements
from qa_checks.gamma import gamma_3d
from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import compute_plan_indices
from qa_checks.protocol import Criterion, OutcomeLevel, evaluate, evaluate_criterion

PLANNING_CASES = (
    "lung-sabr-planning",
    "prostate-sabr-planning",
    "srs-brain-planning",
    "spine-sabr-planning",
    "oligomets-sabr-planning",
)


def _coarse_lung() -> Phantom:
    return thorax_phantom(spacing_mm=(4.0, 2.5, 2.5))


@pytest.fixture(scope="module")
def coarse_plan() -> tuple[PlanSpec, Phantom]:
    spec = get_case("lung-sabr-planning")
    assert spec.plan is not None
    return replace(spec.plan, subsampling=(1, 1, 1)), _coarse_lung()


@pytest.fixture(scope="module")
def coarse_case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    spec = get_case("lung-sabr-planning")
    assert spec.plan is not None
    coarse = replace(
        spec, case_id="lung-sabr-planning-coarse", builder=_coarse_lung, plan=replace(spec.plan, subsampling=(1, 1, 1))
    )
    return build_case_from_spec(coarse, tmp_path_factory.mktemp("cases"))


def _oracle(plan: PlanSpec, phantom: Phantom, *texts: str) -> tuple[PlanOracle, ModelDose, ModelDose]:
    deviations = [PlanDeviation.parse(t) for t in texts]
    reference, submitted, _ = apply_plan_deviations(plan, phantom, deviations, rng=np.random.default_rng(0))
    check = plan_check_of(deviations)
    oracle = plan_oracle(load_protocol("uk-lung-sabr"), plan, reference, submitted, check=check, deviations=deviations)
    return oracle, reference, submitted


DOSE_AT_VOLUME = re.compile(r"^D\d+(?:\.\d+)?(?:%|cc)$")
"""D<x>% and D<x>cc: the dose at a volume, read from the DVH curve."""


def _curve_tolerance(dose: DoseGrid, mask: np.ndarray, metric: str) -> float:
    """How far the scorer's D_x may lie from the oracle's voxel quantile by definition.

    The oracle reads D_x off the step DVH of voxel-centre doses. qa_checks reads it off a continuous DVH in which
    each voxel's volume is spread over its local dose range δ = Σ_a |∂D/∂a| h_a (central differences), so every
    voxel's volume lies within δ/2 of its centre dose and the two curves' D_x differ by at most max δ/2 over the
    structure. 0 for every other metric.
    """
    if not DOSE_AT_VOLUME.match(metric):
        return 0.0
    spread = np.zeros(dose.shape)
    for axis, (coords, h) in enumerate(zip((dose.z_mm, dose.y_mm, dose.x_mm), dose.spacing_mm, strict=True)):
        spread += np.abs(np.gradient(dose.values_gy, coords, axis=axis)) * h
    return 0.5 * float(spread[mask].max())


def _continuous_dx(dose: DoseGrid, mask: np.ndarray, metric: str) -> float:
    """D_x on the continuous DVH, written here from its definition (qa_checks.dvh_curve's docstring), not its code.

    Each voxel of ``mask`` has dose d, volume v and spread δ = Σ_a |∂D/∂a| h_a (central differences, 0 below 1e-6
    Gy); its volume is uniform over [d − δ/2, d + δ/2], so V(D) = Σ v · clip((d + δ/2 − D) / δ, 0, 1), a step
    v · [d ≥ D] when δ = 0. D_x = sup{D : V(D) ≥ x}, found by bisection to 1e-9 Gy.
    """
    spread = np.zeros(dose.shape)
    for axis, (coords, h) in enumerate(zip((dose.z_mm, dose.y_mm, dose.x_mm), dose.spacing_mm, strict=True)):
        spread += np.abs(np.gradient(dose.values_gy, coords, axis=axis)) * h
    spread[spread < 1e-6] = 0.0
    d, delta = dose.values_gy[mask], spread[mask]
    v = float(np.prod(dose.spacing_mm)) / 1000.0
    total = v * d.size
    number = float(metric[1:-1] if metric.endswith("%") else metric[1:-2])
    wanted = min(total, number / 100.0 * total if metric.endswith("%") else number)

    def volume_at(level: float) -> float:
        smooth = delta > 0
        frac = np.where(smooth, np.clip((d + delta / 2 - level) / np.where(smooth, delta, 1.0), 0.0, 1.0), d >= level)
        return v * float(frac.sum())

    lo, hi = float(d.min()) - float(delta.max()), float(d.max()) + float(delta.max())
    while hi - lo > 1e-9:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if volume_at(mid) >= wanted - 1e-12 else (lo, mid)
    return min(max(lo, float(d.min())), float(d.max()))


def _scorer_measurements(
    dose: DoseGrid, masks: dict[str, np.ndarray], criteria: list[Criterion], prescription_gy: float
) -> dict[tuple[str, str], float]:
    """The scorer's measurements (qa_checks plan indices and DVH metrics) of single-target criteria on PTV."""
    indices = compute_plan_indices(dose, masks["PTV"], prescription_gy)
    fields = {"V100%": "ptv_coverage_percent", "R100%": "r100", "R50%": "r50", "D2cm%": "d2cm_percent"}
    out = {c.key: float(getattr(indices, fields[c.metric])) for c in criteria if c.metric in fields}
    out.update({c.key: 100.0 * indices.hi_rtog for c in criteria if c.metric == "Dmax%"})
    masks = {**masks, "Lungs": masks["Lung_L"] | masks["Lung_R"]}
    dvh_keys = [c.key for c in criteria if c.key not in out]
    dvhs = {s: compute_dvh(dose, masks[s]) for s, _ in dvh_keys}
    out.update(dvh_measurements(dvhs, dvh_keys))
    return out


class TestReferencePlans:
    @pytest.mark.parametrize(
        "case_id",
        PLANNING_CASES,
    )
    def test_reference_plan_is_per_protocol(self, case_id: str) -> None:
        spec = get_case(case_id)
        assert spec.plan is not None
        reference = model_dose(spec.plan, spec.builder())
        oracle = plan_oracle(load_protocol(spec.protocol_id), spec.plan, reference, reference, check="planning")
        assert oracle.outcome is OutcomeLevel.PER_PROTOCOL, oracle.reason
        # Every criterion was measured (none reported missing or NaN).
        assert oracle.evaluation is not None
        assert all(r.value is not None and np.isfinite(r.value) for r in oracle.evaluation.results)
        assert set(oracle.measurements) == {c.key for c in oracle.criteria}
        # Every target of the plan is scored with its own prescription (second-target ids end in "@<target>").
        for rx in spec.plan.targets[1:]:
            assert f"coverage@{rx.structure}" in {c.id for c in oracle.criteria}

    @pytest.mark.parametrize("case_id", PLANNING_CASES)
    def test_reference_dose_passes_its_own_tps_check(self, case_id: str) -> None:
        spec = get_case(case_id)
        assert spec.plan is not None
        plan = replace(spec.plan, subsampling=(2, 3, 3))  # a coarse grid: identical doses pass on any grid
        reference = model_dose(plan, spec.builder())
        oracle = plan_oracle(load_protocol(spec.protocol_id), plan, reference, reference, check="tps_check")
        assert oracle.gamma_bounds is not None
        assert (oracle.gamma_bounds.lower_percent, oracle.gamma_bounds.upper_percent) == (100.0, 100.0)
        assert oracle.outcome is OutcomeLevel.PER_PROTOCOL


class TestPlanningDeviations:
    def test_reference_per_protocol_on_coarse_grid(self, coarse_plan: tuple[PlanSpec, Phantom]) -> None:
        oracle, _, _ = _oracle(*coarse_plan)
        assert oracle.check == "planning"
        assert oracle.outcome is OutcomeLevel.PER_PROTOCOL, oracle.reason

    @pytest.mark.parametrize(
        ("deviation", "criterion_id", "outcome"),
        [
            # Coverage set to 70% (acceptable level 90%) and to 92% (between 90% and the per-protocol 95%).
            ("under_coverage:70", "coverage", OutcomeLevel.UNACCEPTABLE_VARIATION),
            ("under_coverage:92", "coverage", OutcomeLevel.ACCEPTABLE_VARIATION),
            # Dmax 180% of prescription: above the 167% acceptable level (RTOG 60% isodose).
            ("hot_spot:180", "max_dose", OutcomeLevel.UNACCEPTABLE_VARIATION),
            ("hot_spot:150", "max_dose", OutcomeLevel.ACCEPTABLE_VARIATION),
            # Reference R50% is 0.85 of the no-deviation limit for the ~20 cc PTV: x1.5 passes the
            # minor-deviation limit (0.85 x 1.5 = 1.28 times the no-deviation limit, above 5.5 / 4.5 = 1.22);
            # x1.2 lies between the two limits (1.02 times the no-deviation limit).
            ("poor_conformity:1.5", "r50", OutcomeLevel.UNACCEPTABLE_VARIATION),
            ("poor_conformity:1.2", "r50", OutcomeLevel.ACCEPTABLE_VARIATION),
            # TG-101 3-fraction cord: D0.35cc <= 18 Gy, max point dose <= 21.9 Gy (no acceptable band).
            ("organ_overdose:SpinalCord:30", "oar_spinalcord_d0_35cc_3fx", OutcomeLevel.UNACCEPTABLE_VARIATION),
            ("organ_overdose:SpinalCord:30", "oar_spinalcord_d0_035cc_3fx", OutcomeLevel.UNACCEPTABLE_VARIATION),
        ],
    )
    def test_deviation_outcome(
        self, coarse_plan: tuple[PlanSpec, Phantom], deviation: str, criterion_id: str, outcome: OutcomeLevel
    ) -> None:
        oracle, _, _ = _oracle(*coarse_plan, deviation)
        assert oracle.evaluation is not None and oracle.outcome is not None
        result = oracle.evaluation.result(criterion_id)
        assert result.outcome is outcome, result.reason
        assert oracle.outcome.severity >= outcome.severity
        assert result.reason in oracle.reason

    def test_mild_deviation_stays_per_protocol(self, coarse_plan: tuple[PlanSpec, Phantom]) -> None:
        # A 130% hot spot is inside the UK SABR 110-140% range; an organ dose of 10 Gy is far below TG-101.
        oracle, _, _ = _oracle(*coarse_plan, "hot_spot:130", "organ_overdose:SpinalCord:10")
        assert oracle.outcome is OutcomeLevel.PER_PROTOCOL, oracle.reason

    @pytest.mark.parametrize(
        "deviations", [(), ("poor_conformity:1.5",), ("hot_spot:150", "organ_overdose:SpinalCord:30")], ids=str
    )
    def test_scorer_agrees_with_the_oracle(
        self, coarse_plan: tuple[PlanSpec, Phantom], deviations: tuple[str, ...]
    ) -> None:
        """The scorer's plan indices and DVH metrics equal the oracle's independent voxel-counting definitions on
        the same grid: volumes are the same voxel counts (exact to float round-off, 1e-9 relative) and doses are
        the same voxel doses (1e-9 Gy covers summation order in Dmean). D_x is checked against the continuous
        DVH's definition computed here (:func:`_continuous_dx`), and the oracle's step quantile against it within
        the bound of :func:`_curve_tolerance`."""
        oracle, _, submitted = _oracle(*coarse_plan, *deviations)
        scorer = _scorer_measurements(submitted.dose, dict(submitted.masks), list(oracle.criteria), 54.0)
        assert set(scorer) == set(oracle.measurements)
        masks = {**submitted.masks, "Lungs": submitted.masks["Lung_L"] | submitted.masks["Lung_R"]}
        for (structure, metric), value in oracle.measurements.items():
            key = (structure, metric)
            if DOSE_AT_VOLUME.match(metric):
                # D_x: the scorer reads the continuous DVH; the oracle's step quantile lies within max δ/2 of it.
                exact = _continuous_dx(submitted.dose, masks[structure], metric)
                assert scorer[key] == pytest.approx(exact, abs=1e-6), key
                assert value == pytest.approx(exact, abs=_curve_tolerance(submitted.dose, masks[structure], metric))
            else:
                assert scorer[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
        assert evaluate(oracle.criteria, scorer).outcome is oracle.outcome

    def test_lungs_composite(self, coarse_plan: tuple[PlanSpec, Phantom]) -> None:
        oracle, _, submitted = _oracle(*coarse_plan, "poor_conformity:1.5")
        # Lungs is the union of Lung_L and Lung_R: its V20Gy% lies between the two lungs' own values.
        lungs = oracle.measurements[("Lungs", "V20Gy%")]
        left = (submitted.dose.values_gy[submitted.masks["Lung_L"]] >= 20).mean() * 100
        right = (submitted.dose.values_gy[submitted.masks["Lung_R"]] >= 20).mean() * 100
        assert min(left, right) < lungs < max(left, right)


class TestTpsCheck:
    @pytest.mark.parametrize(
        ("deviation", "outcome"),
        [
            # Every dose difference is at most 2% of the maximum: every point passes 3%/2 mm on dose alone.
            ("dose_scale_percent:2", OutcomeLevel.PER_PROTOCOL),
            # 8% and 20%: only points below 3/8 (3/20) of the maximum surely pass on dose alone (82% / 51% of the
            # evaluated points) and few surely fail: the bounds straddle the 95% and 90% levels, no outcome.
            ("dose_scale_percent:8", None),
            ("dose_scale_percent:20", None),
            # 20% down: more than a tenth of the points find no dose within 3% anywhere within 2 mm.
            ("dose_scale_percent:-20", OutcomeLevel.UNACCEPTABLE_VARIATION),
            # 50% up or 40% down: no grid dose within 2 mm comes within 3% of the maximum for most points.
            ("dose_scale_percent:50", OutcomeLevel.UNACCEPTABLE_VARIATION),
            ("dose_scale_percent:-40", OutcomeLevel.UNACCEPTABLE_VARIATION),
            # A 1 mm shift: the shifted position lies within the 2 mm DTA for (almost) every point.
            ("dose_shift_mm:0,0,1", OutcomeLevel.PER_PROTOCOL),
            # 5 and 10 mm shifts: over a tenth (a third) of the points find no dose within 3% within 2 mm.
            ("dose_shift_mm:0,0,5", OutcomeLevel.UNACCEPTABLE_VARIATION),
            ("dose_shift_mm:0,0,10", OutcomeLevel.UNACCEPTABLE_VARIATION),
            # Noise of 1% (sd) of the maximum: above 99% of points within 3% on dose alone; 10% is undecided.
            ("dose_noise_percent:1", OutcomeLevel.PER_PROTOCOL),
            ("dose_noise_percent:10", None),
        ],
    )
    def test_scorer_gamma_lies_within_the_oracle_bounds(
        self, coarse_plan: tuple[PlanSpec, Phantom], deviation: str, outcome: OutcomeLevel | None
    ) -> None:
        oracle, reference, submitted = _oracle(*coarse_plan, deviation)
        assert oracle.check == "tps_check" and oracle.gamma_bounds is not None
        assert oracle.outcome is outcome, oracle.reason
        # The scorer's gamma (qa_checks.gamma) must lie within the oracle's closed-form bounds and, when the
        # bounds decide the outcome, give that outcome.
        direct = gamma_3d(reference.dose, submitted.dose, dose_percent=3, distance_mm=2, lower_cutoff_percent=10)
        bounds = oracle.gamma_bounds
        assert bounds.n_evaluated == direct.n_evaluated
        assert bounds.lower_percent <= direct.pass_rate_percent <= bounds.upper_percent
        if outcome is not None:
            assert evaluate_criterion(oracle.criteria[0], direct.pass_rate_percent).outcome is outcome
        else:
            assert oracle.reason.startswith("not decided by the deviation's closed form")

    def test_larger_scale_lowers_the_bounds(self, coarse_plan: tuple[PlanSpec, Phantom]) -> None:
        bounds = [_oracle(*coarse_plan, f"dose_scale_percent:{s}")[0].gamma_bounds for s in (2, 8, 20)]
        lower = [b.lower_percent for b in bounds if b is not None]
        upper = [b.upper_percent for b in bounds if b is not None]
        assert lower[0] == 100.0
        assert lower[0] > lower[1] > lower[2]
        assert upper[0] >= upper[1] >= upper[2]

    def test_check_can_be_forced(self, coarse_plan: tuple[PlanSpec, Phantom]) -> None:
        plan, phantom = coarse_plan
        deviations = [PlanDeviation.parse("dose_scale_percent:20")]
        reference, submitted, _ = apply_plan_deviations(plan, phantom, deviations, rng=np.random.default_rng(0))
        oracle = plan_oracle(load_protocol("uk-lung-sabr"), plan, reference, submitted, check="planning")
        assert oracle.evaluation is not None
        # Scaled by 1.2, the 124% maximum becomes 149%: above the per-protocol 140%, an acceptable variation.
        assert oracle.evaluation.result("max_dose").outcome is OutcomeLevel.ACCEPTABLE_VARIATION

    def test_protocol_without_planning(self, coarse_plan: tuple[PlanSpec, Phantom]) -> None:
        plan, phantom = coarse_plan
        reference = model_dose(plan, phantom)
        without = load_protocol("oligomets-sabr").model_copy(update={"planning": None})
        with pytest.raises(SimulationError, match=r"protocol 'oligomets-sabr' has no planning section"):
            plan_oracle(without, plan, reference, reference, check="planning")


def _tolerance(metric: str, values_gy: np.ndarray, voxel_cc: np.ndarray, volume_cc: float, step_gy: float) -> float:
    """How far a measurement may move when every voxel dose moves by at most ``step_gy`` (16-bit storage)."""
    rx = 54.0
    if metric in ("Dmax%", "D2cm%"):  # a dose in % of the prescription
        return 100.0 * step_gy / rx + 1e-9
    if metric.startswith("D"):  # a dose quantile moves by at most the dose error
        return step_gy + 1e-9
    # Volume metrics change only through voxels whose dose lies within one step of the threshold.
    threshold = {"V100%": rx, "R100%": rx, "R50%": 0.5 * rx}.get(metric)
    if threshold is None:  # VxGy%
        threshold = float(metric[1:].split("Gy")[0])
    near = np.abs(values_gy - threshold) <= step_gy
    changed_cc = float(voxel_cc[near].sum())
    percent = metric.endswith("%") and metric not in ("R100%", "R50%")
    return (100.0 * changed_cc / volume_cc if percent else changed_cc / volume_cc) + 1e-12


class TestRoundTrip:
    @pytest.mark.parametrize(
        "deviations", [(), ("poor_conformity:1.2", "organ_overdose:SpinalCord:30", "hot_spot:150")], ids=str
    )
    def test_oracle_matches_measurements_after_dicom(
        self, coarse_case: BuiltCase, tmp_path: Path, deviations: tuple[str, ...]
    ) -> None:
        sim = simulate_plan_submission(
            coarse_case,
            provider="Centre B",
            deviations=[PlanDeviation.parse(t) for t in deviations],
            seed=1,
            out_dir=tmp_path / "submission",
        )
        assert sim.check == "planning" and sim.evaluation is not None and sim.expected_outcome is not None
        read_back = read_rtdose(sim.rtdose_path)
        model = sim.submitted
        assert read_back.shape == model.dose.shape
        np.testing.assert_allclose(read_back.z_mm, model.dose.z_mm, atol=1e-6)
        # 16-bit storage: stored value round(dose / scaling), so every voxel is within half a step, plus the
        # rounding of (3004,000E) DoseGridScaling to 10 significant digits (5e-10 relative) times at most 65535.
        scaling = float(pydicom.dcmread(sim.rtdose_path, stop_before_pixels=True).DoseGridScaling)
        step_gy = scaling * (0.5 + 65535 * 5e-10)
        assert np.max(np.abs(read_back.values_gy - model.dose.values_gy)) <= step_gy

        # The scorer (qa_checks) measuring the RTDOSE read back agrees with the oracle's own measurements on the
        # model grid to within what 16-bit storage can move each metric.
        again = model.with_values(np.asarray(read_back.values_gy, dtype=np.float64))
        criteria = [r.criterion for r in sim.evaluation.results]
        measured = _scorer_measurements(again.dose, dict(model.masks), criteria, 54.0)
        assert set(measured) == set(sim.measurements)
        voxel_cc = np.full(model.dose.shape, np.prod(model.dose.spacing_mm) / 1000.0)
        for (structure, metric), value in sim.measurements.items():
            lungs = model.masks["Lung_L"] | model.masks["Lung_R"]
            mask = lungs if structure == "Lungs" else model.masks[structure]
            # R100% and R50% count isodose volumes anywhere on the grid
            region = np.ones(model.dose.shape, dtype=bool) if metric in ("R100%", "R50%") else mask
            volume_cc = float(voxel_cc[mask].sum())
            tol = _tolerance(metric, model.dose.values_gy[region], voxel_cc[region], volume_cc, step_gy)
            tol += _curve_tolerance(again.dose, mask, metric)
            assert measured[(structure, metric)] == pytest.approx(value, abs=tol, rel=1e-9), (structure, metric)
        # Outcomes after the round trip differ from the oracle's only for criteria it flagged as borderline.
        after = evaluate([r.criterion for r in sim.evaluation.results], measured)
        for before_result, after_result in zip(sim.evaluation.results, after.results, strict=True):
            if before_result.outcome is not after_result.outcome:
                assert before_result.criterion.id in sim.borderline, (before_result.reason, after_result.reason)
        summary = sim.to_json_dict()
        assert summary["expected_outcome"] == sim.expected_outcome.value
        assert summary["borderline"] == list(sim.borderline)

    def test_reference_plan_is_clearly_per_protocol_after_dicom(self, coarse_case: BuiltCase, tmp_path: Path) -> None:
        # The dose model covers 96% of the PTV, 1% above the protocol's 95% level: more than 16-bit storage moves
        # any voxel, so nothing is borderline and the coverage read back from RTDOSE is still per protocol.
        sim = simulate_plan_submission(coarse_case, provider="Centre D", deviations=[], seed=3, out_dir=tmp_path / "s")
        assert sim.expected_outcome is OutcomeLevel.PER_PROTOCOL
        assert sim.borderline == ()
        assert sim.rtdose_path is not None
        dose = read_rtdose(sim.rtdose_path)
        ptv = sim.reference.masks["PTV"]
        assert compute_plan_indices(dose, ptv, 54.0).ptv_coverage_percent >= 95.0

    def test_gamma_after_dicom(self, coarse_case: BuiltCase, tmp_path: Path) -> None:
        sim = simulate_plan_submission(
            coarse_case,
            provider="Centre C",
            deviations=[PlanDeviation.parse("dose_scale_percent:8")],
            seed=2,
            out_dir=tmp_path / "submission",
        )
        assert sim.check == "tps_check" and coarse_case.rtdose_path is not None
        assert sim.expected_outcome is None and sim.gamma_pass_rate_bounds_percent is not None
        lower, upper = sim.gamma_pass_rate_bounds_percent
        reference_dicom, submitted_dicom = read_rtdose(coarse_case.rtdose_path), read_rtdose(sim.rtdose_path)
        params = load_protocol("uk-lung-sabr").gamma_parameters()
        oracle_gamma = gamma_3d(sim.reference.dose, sim.submitted.dose, **params)
        after = gamma_3d(reference_dicom, submitted_dicom, **params)
        assert sim.measurements == {}
        assert lower <= oracle_gamma.pass_rate_percent <= upper
        assert sim.to_json_dict()["gamma_pass_rate_bounds_percent"] == [lower, upper]
        # Storage errs by at most half a step (maximum / 65535 / 2) on each dose: the dose term of gamma moves by
        # at most (1 / 65535) / 3% = 0.0005, the normalisation by 8e-6 relative. Only points with gamma within
        # 0.001 of 1, or with a reference dose within a step of the 10% threshold, can change their verdict.
        gamma = oracle_gamma.gamma
        ref = sim.reference.dose.values_gy
        step = float(ref.max()) / 65535.0
        cutoff = 0.1 * float(ref.max())
        borderline = int(np.count_nonzero(np.abs(gamma[np.isfinite(gamma)] - 1.0) <= 0.001))
        borderline += int(np.count_nonzero(np.abs(ref - cutoff) <= step))
        assert after.pass_rate_percent == pytest.approx(
            oracle_gamma.pass_rate_percent, abs=100.0 * borderline / oracle_gamma.n_evaluated + 1e-9
        )


@pytest.fixture(scope="module")
def srs() -> tuple[PlanSpec, Phantom]:
    spec = get_case("srs-brain-planning")
    assert spec.plan is not None
    return replace(spec.plan, subsampling=(1, 2, 2)), spec.builder()


class TestTwoTargets:
    def test_each_target_scored_with_its_own_prescription(self, srs: tuple[PlanSpec, Phantom]) -> None:
        plan, phantom = srs
        deviations = [PlanDeviation.parse("under_coverage:70")]
        reference, submitted, _ = apply_plan_deviations(plan, phantom, deviations, rng=np.random.default_rng(0))
        oracle = plan_oracle(load_protocol("srs-brain"), plan, reference, submitted, check="planning")
        assert oracle.evaluation is not None
        # Coverage is tuned to 70% on both targets: unacceptable for each (acceptable level 90%).
        for criterion_id in ("coverage", "coverage@PTV_2"):
            assert oracle.evaluation.result(criterion_id).outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert oracle.measurements[("PTV_2", "V100%")] == pytest.approx(70.0, abs=1.0)

    def test_r100_counts_the_target_neighbourhood(self, srs: tuple[PlanSpec, Phantom]) -> None:
        plan, phantom = srs
        model = model_dose(plan, phantom)
        oracle = plan_oracle(load_protocol("srs-brain"), plan, model, model, check="planning")
        values = model.dose.values_gy
        # PTV_2's cloud (at most 125% of 18 Gy = 22.5 Gy) never reaches PTV's 24 Gy: the scorer's whole-grid R100%
        # of PTV equals the oracle's.
        whole = compute_plan_indices(model.dose, model.masks["PTV"], 24.0)
        assert oracle.measurements[("PTV", "R100%")] == pytest.approx(whole.r100, rel=1e-12)
        # PTV's cloud exceeds 18 Gy around PTV: the oracle counts only PTV_2's neighbourhood, which is what the
        # scorer gives when the dose nearer to PTV is removed.
        hood = target_contexts(model, first="PTV")["PTV_2"].neighbourhood
        alone_dose = model.with_values(np.where(hood, values, 0.0)).dose
        alone = compute_plan_indices(alone_dose, model.masks["PTV_2"], 18.0)
        assert oracle.measurements[("PTV_2", "R100%")] == pytest.approx(alone.r100, rel=1e-12)
        whole_2 = compute_plan_indices(model.dose, model.masks["PTV_2"], 18.0)
        assert oracle.measurements[("PTV_2", "R100%")] < whole_2.r100
