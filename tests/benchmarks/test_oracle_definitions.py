"""The oracle's own metric definitions and gamma bounds on hand-computed cases (benchmarks.simulation.definitions,
benchmarks.simulation.gamma_bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.protocols import GammaSection
from benchmarks.simulation.definitions import TargetContext, dvh_metric, measure_criteria, neighbourhoods, target_metric
from benchmarks.simulation.gamma_bounds import (
    GammaBounds,
    _node_footprint,
    gamma_outcome_from_bounds,
    gamma_pass_rate_bounds,
)
from qa_checks.protocol import Criterion, OutcomeLevel

TEN = np.arange(10, 0, -1, dtype=np.float64)  # 10, 9, ..., 1 Gy


class TestDvhMetric:
    @pytest.mark.parametrize(
        ("metric", "expected"),
        [
            ("D0cc", 10.0),
            ("D0.3cc", 8.0),  # 3 hottest voxels of 0.1 cc
            ("D0.25cc", 8.0),  # the 3rd voxel is the first to reach 0.25 cc
            ("D1cc", 1.0),  # the whole structure
            ("D50%", 6.0),  # 0.5 cc: the 5th hottest
            ("D0%", 10.0),
            ("D100%", 1.0),
            ("V5Gy", 0.6),  # 6 voxels >= 5 Gy, 0.1 cc each
            ("V5Gycc", 0.6),
            ("V5Gy%", 60.0),
            ("V5.5Gy%", 50.0),
            ("Dmean", 5.5),
            ("Dmax", 10.0),
            ("Dmin", 1.0),
        ],
    )
    def test_ten_voxels(self, metric: str, expected: float) -> None:
        rng = np.random.default_rng(0)
        assert dvh_metric(metric, rng.permutation(TEN), voxel_cc=0.1) == pytest.approx(expected, abs=1e-12)

    def test_larger_than_the_structure_is_nan(self) -> None:
        assert math.isnan(dvh_metric("D1.1cc", TEN, voxel_cc=0.1))

    def test_round_off_of_the_volume(self) -> None:
        # 0.035 / 0.001 is 35.000000000000004 in floating point: still the 35th hottest voxel.
        doses = np.arange(100, dtype=np.float64)
        assert dvh_metric("D0.035cc", doses, voxel_cc=0.001) == 65.0

    def test_unknown_metric(self) -> None:
        with pytest.raises(ValueError, match=r"unknown DVH metric 'D2cm'"):
            dvh_metric("D2cm", TEN, voxel_cc=0.1)


def _ramp_target() -> tuple[np.ndarray, TargetContext]:
    """A 1 x 1 x 60 grid of 1 mm voxels, dose 60 - x Gy at x = 0..59 mm, PTV x < 10, prescription 55 Gy."""
    values = (60.0 - np.arange(60, dtype=np.float64)).reshape(1, 1, 60)
    ptv = np.zeros((1, 1, 60), dtype=bool)
    ptv[..., :10] = True
    return values, TargetContext("PTV", 55.0, ptv, np.ones_like(ptv))


class TestTargetMetric:
    @pytest.mark.parametrize(
        ("metric", "expected"),
        [
            ("V100%", 60.0),  # x = 0..5 of the 10 PTV voxels reach 55 Gy
            ("Dmax%", 100.0 * 60.0 / 55.0),
            ("R100%", 0.6),  # 6 voxels >= 55 Gy over 10 PTV voxels
            ("R50%", 3.3),  # x <= 32 reach 27.5 Gy: 33 voxels
            ("D2cm%", 100.0 * 31.0 / 55.0),  # x >= 29 is 20 mm from the last PTV voxel centre (x = 9)
        ],
    )
    def test_ramp(self, metric: str, expected: float) -> None:
        values, target = _ramp_target()
        assert target_metric(metric, values, target, spacing_mm=(1.0, 1.0, 1.0)) == pytest.approx(expected, rel=1e-12)

    def test_neighbourhood_limits_r100(self) -> None:
        values, target = _ramp_target()
        half = np.zeros_like(target.ptv)
        half[..., :3] = True
        near = TargetContext("PTV", 55.0, target.ptv, half)
        assert target_metric("R100%", values, near, spacing_mm=(1.0, 1.0, 1.0)) == pytest.approx(0.3)

    def test_unknown(self) -> None:
        values, target = _ramp_target()
        with pytest.raises(ValueError, match=r"unknown target metric 'CI'"):
            target_metric("CI", values, target, spacing_mm=(1.0, 1.0, 1.0))


class TestNeighbourhoods:
    def test_partition_with_ties_to_the_first(self) -> None:
        a = np.zeros((1, 1, 30), dtype=bool)
        b = np.zeros_like(a)
        a[..., 0:5] = True
        b[..., 21:26] = True  # voxel 12 is 8 mm from a (x = 4) and 9 mm from b; 13 is 9 and 8 mm away
        hoods = neighbourhoods({"PTV": a, "PTV_2": b}, (1.0, 1.0, 1.0))
        assert not (hoods["PTV"] & hoods["PTV_2"]).any() and (hoods["PTV"] | hoods["PTV_2"]).all()
        assert hoods["PTV"][0, 0, 12] and hoods["PTV_2"][0, 0, 13]
        b[..., 20] = True  # now voxel 12 is 8 mm from both: the first target keeps it
        assert neighbourhoods({"PTV": a, "PTV_2": b}, (1.0, 1.0, 1.0))["PTV"][0, 0, 12]

    def test_single_target_owns_the_grid(self) -> None:
        a = np.zeros((2, 3, 4), dtype=bool)
        a[0, 0, 0] = True
        assert neighbourhoods({"PTV": a}, (1.0, 1.0, 1.0))["PTV"].all()


def _ramp(gradient_gy_per_mm: float) -> np.ndarray:
    """Dose ``gradient * x`` Gy at x = 0..100 mm on a 1 x 1 x 101 grid of 1 mm voxels."""
    return (gradient_gy_per_mm * np.arange(101, dtype=np.float64)).reshape(1, 1, 101)


GLOBAL_3_2 = GammaSection(dose_percent=3, distance_mm=2)


def _exact_ramp_pass_percent(x_mm: np.ndarray, scale: float, *, delta_gy: float, dta_mm: float) -> float:
    """Gamma pass rate of the points ``x_mm`` (dose x Gy) against the dose ``scale * x'`` Gy on [0, 100] mm, by a
    dense search over x' (0.001 mm): the continuous truth the bounds must bracket."""
    search = np.arange(0.0, 100.0 + 1e-9, 0.001)
    passed = [np.min((search - x) ** 2 / dta_mm**2 + (scale * search - x) ** 2 / delta_gy**2) <= 1.0 for x in x_mm]
    return 100.0 * float(np.mean(passed))


class TestGammaBounds:
    def test_identical_doses(self) -> None:
        ramp = _ramp(1.0)
        bounds = gamma_pass_rate_bounds(ramp, ramp, spacing_mm=(1.0, 1.0, 1.0), gamma=GLOBAL_3_2)
        assert (bounds.lower_percent, bounds.upper_percent, bounds.n_evaluated) == (100.0, 100.0, 91)

    def test_scale_closed_form(self) -> None:
        # Scale 1.05, ΔD = 3% of 100 Gy: |0.05 x| <= 3 for x <= 60, i.e. points 10..60 of the 91 evaluated
        # (x >= 10, the 10% threshold). The exact gamma passes x <= 73 (64 points); the upper bound lies above.
        ramp = _ramp(1.0)
        bounds = gamma_pass_rate_bounds(ramp, 1.05 * ramp, spacing_mm=(1.0, 1.0, 1.0), gamma=GLOBAL_3_2)
        assert bounds.lower_percent == pytest.approx(100.0 * 51 / 91)
        exact = _exact_ramp_pass_percent(np.arange(10.0, 101.0), 1.05, delta_gy=3.0, dta_mm=2.0)
        assert exact == pytest.approx(100.0 * 64 / 91)
        assert exact <= bounds.upper_percent < 100.0

    def test_doubling_fails_everywhere(self) -> None:
        # 2 (x - 2) > x + 3 for x > 7: no dose within 2 mm comes within 3 Gy of any evaluated point.
        ramp = _ramp(1.0)
        bounds = gamma_pass_rate_bounds(ramp, 2.0 * ramp, spacing_mm=(1.0, 1.0, 1.0), gamma=GLOBAL_3_2)
        assert (bounds.lower_percent, bounds.upper_percent) == (0.0, 0.0)

    def test_shift_passes_at_the_shifted_position(self) -> None:
        # 1%/3 mm on a 1 Gy/mm ramp: ΔD = 1 Gy, so a 2 mm shift fails on dose alone (2 Gy) everywhere, but the
        # shifted position x + 2 holds the reference dose: ((2 + 0.3) / 3)² + (0.3 / 1)² < 1. The last two
        # points have no shifted position on the grid.
        gamma = GammaSection(dose_percent=1, distance_mm=3)
        ramp = _ramp(1.0)
        shifted = ramp - 2.0
        alone = gamma_pass_rate_bounds(ramp, shifted, spacing_mm=(1.0, 1.0, 1.0), gamma=gamma)
        assert alone.lower_percent == 0.0
        known = gamma_pass_rate_bounds(ramp, shifted, spacing_mm=(1.0, 1.0, 1.0), gamma=gamma, shift_mm=(0, 0, 2))
        assert known.lower_percent == pytest.approx(100.0 * 89 / 91)
        # The last point (100 Gy) surely fails: the submitted dose nowhere exceeds 98 Gy = 100 Gy - 2 ΔD.
        assert known.upper_percent == pytest.approx(100.0 * 90 / 91)

    def test_refined_upper_bound_on_a_coarse_grid(self) -> None:
        # 4 mm nodes along x, dose x Gy (x = 0, 4, ..., 100 mm), submitted scaled by 1.2, 3%/2 mm: the 23 nodes
        # x >= 12 are evaluated; 0.2 x <= 3 Gy holds only at x = 12. The exact gamma passes x = 12 and 16. Within
        # 2 mm the submitted dose is at least 1.2 (x - 2), more than x + 3 for x > 27, so the 19 nodes x >= 28
        # surely fail even without weighing distance (the unrefined 4 mm cells would only show it for x > 39).
        ramp = (4.0 * np.arange(26, dtype=np.float64)).reshape(1, 1, 26)
        bounds = gamma_pass_rate_bounds(ramp, 1.2 * ramp, spacing_mm=(1.0, 1.0, 4.0), gamma=GLOBAL_3_2)
        assert bounds.n_evaluated == 23
        assert bounds.lower_percent == pytest.approx(100.0 / 23)
        exact = _exact_ramp_pass_percent(np.arange(12.0, 101.0, 4.0), 1.2, delta_gy=3.0, dta_mm=2.0)
        assert exact == pytest.approx(100.0 * 2 / 23)
        assert exact <= bounds.upper_percent <= 100.0 * 4 / 23 + 1e-9

    def test_footprint(self) -> None:
        # 1 mm grid, DTA 1.5 mm: cells nearer than 1.5 mm have lower corners -2..1 along an axis, and the cell at
        # (1, 1, 0) (1.41 mm away) is one but not the cell at (1, 1, 1) (1.73 mm away).
        footprint = _node_footprint((1.0, 1.0, 1.0), 1.5)
        assert footprint.shape == (7, 7, 7)  # offsets -3..3
        assert footprint[1:6, 3, 3].all() and not footprint[0, 3, 3] and not footprint[6, 3, 3]
        assert footprint[5, 5, 4] and not footprint[5, 5, 5]
        assert (footprint == footprint[::-1, ::-1, ::-1]).all()
        # A cell only touching the ball's surface (1 mm grid, DTA 1 mm: the cells at 1 mm) is not needed.
        assert _node_footprint((1.0, 1.0, 1.0), 1.0)[1:4, 1:4, 1:4].all()
        assert _node_footprint((1.0, 1.0, 1.0), 1.0).sum() == 27

    @pytest.mark.parametrize(
        ("lower", "upper", "outcome"),
        [
            (96.0, 100.0, OutcomeLevel.PER_PROTOCOL),
            (91.0, 94.0, OutcomeLevel.ACCEPTABLE_VARIATION),
            (10.0, 80.0, OutcomeLevel.UNACCEPTABLE_VARIATION),
            (93.0, 97.0, None),
        ],
    )
    def test_outcome_only_when_both_bounds_agree(
        self, lower: float, upper: float, outcome: OutcomeLevel | None
    ) -> None:
        criterion = Criterion("gamma_pass_rate", "dose_grid", "gamma_pass_rate_percent", ">=", 95.0, 90.0, "%")
        got, reason = gamma_outcome_from_bounds(GammaBounds(lower, upper, 100, "test"), criterion)
        assert got is outcome
        assert reason.startswith("not decided by the deviation's closed form") == (outcome is None)


class TestMeasureCriteria:
    def test_every_named_metric_is_measured(self) -> None:
        values, target = _ramp_target()
        criteria = [
            Criterion("coverage", "PTV", "V100%", ">=", 95.0, 90.0, "%"),
            Criterion("max_dose_min", "PTV", "Dmax%", ">=", 105.0, 100.0, "%"),
            Criterion("coverage_d99", "PTV", "D99%", ">=", 50.0, 45.0, "Gy"),
            Criterion("r100_min", "PTV", "R100%", ">=", 0.5, 0.4),
            Criterion("organ", "Organ", "V20Gy%", "<=", 10.0, 15.0, "%"),
        ]
        organ = np.zeros_like(target.ptv)
        organ[..., 30:40] = True  # doses 30..21 Gy: 10 voxels, all >= 20 Gy
        measured = measure_criteria(
            criteria, values, {"PTV": target.ptv, "Organ": organ}, {"PTV": target}, spacing_mm=(1.0, 1.0, 1.0)
        )
        assert measured == pytest.approx(
            {
                ("PTV", "V100%"): 60.0,
                ("PTV", "Dmax%"): 100.0 * 60.0 / 55.0,
                ("PTV", "D99%"): 51.0,  # 99% of 10 voxels: the 10th hottest (x = 9, 51 Gy)
                ("PTV", "R100%"): 0.6,
                ("Organ", "V20Gy%"): 100.0,
            }
        )

    def test_missing_structure_is_left_out(self) -> None:
        values, target = _ramp_target()
        criteria = [Criterion("organ", "Organ", "Dmax", "<=", 10.0, 15.0, "Gy")]
        assert measure_criteria(criteria, values, {}, {"PTV": target}, spacing_mm=(1.0, 1.0, 1.0)) == {}

    def test_unknown_metric_is_refused(self) -> None:
        values, target = _ramp_target()
        criteria = [Criterion("paddick", "PTV", "paddick_ci", ">=", 0.8, 0.7)]
        with pytest.raises(ValueError, match=r"criterion 'paddick': the oracle defines no metric 'paddick_ci'"):
            measure_criteria(criteria, values, {"PTV": target.ptv}, {"PTV": target}, spacing_mm=(1.0, 1.0, 1.0))
