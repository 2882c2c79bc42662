"""Plan indices on an analytic spherical plan, D2cm on a known radial dose, and the RTOG 0813/0915 table."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import (
    RTOG_CONFORMITY_TABLE,
    PlanIndices,
    compute_plan_indices,
    evaluate_rtog_conformity,
    rtog_conformity_criteria,
    rtog_conformity_limits,
)
from qa_checks.protocol import OutcomeLevel

RX_GY = 54.0
PTV_RADIUS_MM = 12.0
MARGIN_100_MM = 1.0  # prescription isodose at r + a
MARGIN_50_MM = 8.0  # 50 % isodose at r + b
TAIL_MM = 10.0  # beyond r + b the dose falls as exp(-(ρ - r - b) / λ)
CENTRE_MM = (0.37, -0.21, 0.44)  # (z, y, x), off the lattice

# (z, y, x) spacings in mm
SPACINGS = {"isotropic": (1.0, 1.0, 1.0), "anisotropic": (2.0, 1.0, 1.5)}


def radial_dose(rho_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rx up to r + a; linear to 50 % at r + b; then 50 % · exp(−(ρ − r − b)/λ). Decreasing in ρ."""
    r, a, b = PTV_RADIUS_MM, MARGIN_100_MM, MARGIN_50_MM
    linear = RX_GY * (1.0 - 0.5 * (rho_mm - r - a) / (b - a))
    tail = 0.5 * RX_GY * np.exp(-(rho_mm - r - b) / TAIL_MM)
    return np.where(rho_mm <= r + a, RX_GY, np.where(rho_mm <= r + b, linear, tail))


def spherical_plan(spacing_mm: tuple[float, float, float]) -> tuple[DoseGrid, npt.NDArray[np.bool_]]:
    axes = [s * np.arange(-round(45 / s), round(45 / s) + 1, dtype=np.float64) for s in spacing_mm]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    rho = np.sqrt((z - CENTRE_MM[0]) ** 2 + (y - CENTRE_MM[1]) ** 2 + (x - CENTRE_MM[2]) ** 2)
    return DoseGrid(radial_dose(rho), axes[0], axes[1], axes[2]), rho <= PTV_RADIUS_MM


def ball_cc(radius_mm: float) -> float:
    return 4.0 / 3.0 * math.pi * radius_mm**3 / 1000.0


class TestSphericalPlan:
    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_conformity_and_gradient_indices(self, spacing: tuple[float, float, float]) -> None:
        dose, ptv = spherical_plan(spacing)
        ind = compute_plan_indices(dose, ptv, RX_GY)
        r, a, b = PTV_RADIUS_MM, MARGIN_100_MM, MARGIN_50_MM
        # Analytic: every isodose surface is a sphere. TV = V(r), PIV = V(r + a), TV_PIV = TV,
        # PIV50 = V(r + b). Voxel-centre counting of a ball of radius ≥ 12 voxels along the coarsest axis is
        # within 1 % of its volume on these grids (measured ≤ 0.22 %); ratios of two such counts within 2 %
        # (measured ≤ 0.4 %).
        assert ind.ptv_volume_cc == pytest.approx(ball_cc(r), rel=0.01)
        assert ind.prescription_isodose_volume_cc == pytest.approx(ball_cc(r + a), rel=0.01)
        assert ind.half_prescription_isodose_volume_cc == pytest.approx(ball_cc(r + b), rel=0.01)
        assert ind.rtog_ci == pytest.approx(((r + a) / r) ** 3, rel=0.02)
        assert ind.r100 == ind.rtog_ci
        assert ind.paddick_ci == pytest.approx((r / (r + a)) ** 3, rel=0.02)
        assert ind.gradient_index == pytest.approx(((r + b) / (r + a)) ** 3, rel=0.02)
        assert ind.r50 == pytest.approx(((r + b) / r) ** 3, rel=0.02)
        # The PTV is inside the prescription isodose: coverage is exactly 100 %, TV_PIV = TV exactly.
        assert ind.ptv_coverage_percent == 100.0
        assert ind.ptv_in_prescription_isodose_cc == ind.ptv_volume_cc
        # Uniform dose in the PTV: ICRU 83 HI exactly 0, RTOG HI exactly 1.
        assert ind.hi_icru83 == 0.0 and ind.hi_rtog == 1.0
        assert ind.grid_spacing_mm == spacing

    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_d2cm_on_a_known_radial_dose(self, spacing: tuple[float, float, float]) -> None:
        # A voxel's distance to the nearest PTV voxel centre is at least ρ − r (triangle inequality: those
        # centres lie within r of the centre) and at most ρ − r + one voxel diagonal (the outermost PTV voxel
        # centres are within a diagonal of the sphere surface). So every voxel at ρ ≥ r + 20 counts, some voxel
        # at ρ < r + 20 − diag never does, and as the dose decreases with ρ:
        # D(r + 20) ≤ D2cm ≤ D(r + 20 − diag).
        dose, ptv = spherical_plan(spacing)
        ind = compute_plan_indices(dose, ptv, RX_GY)
        diag = float(np.linalg.norm(spacing))
        lower = 100 * float(radial_dose(np.array(PTV_RADIUS_MM + 20.0))) / RX_GY
        upper = 100 * float(radial_dose(np.array(PTV_RADIUS_MM + 20.0 - diag))) / RX_GY
        assert lower <= ind.d2cm_percent <= upper
        assert ind.d2cm_distance_mm == 20.0

    def test_d2cm_is_unknown_when_the_grid_is_too_small(self) -> None:
        dose, ptv = spherical_plan((1.0, 1.0, 1.0))
        ind = compute_plan_indices(dose, ptv, RX_GY, d2cm_distance_mm=80.0)
        assert ind.d2cm_percent is None
        assert "80 mm or more" in ind.unknown["d2cm_percent"]
        assert any("shell" in w for w in ind.warnings)

    def test_hot_spot_sets_rtog_homogeneity(self) -> None:
        dose, ptv = spherical_plan((1.0, 1.0, 1.0))
        values = dose.values_gy.copy()
        k, j, i = np.argwhere(ptv)[len(np.argwhere(ptv)) // 2]
        values[k, j, i] = 1.2 * RX_GY
        hot = DoseGrid(values, dose.z_mm, dose.y_mm, dose.x_mm)
        ind = compute_plan_indices(hot, ptv, RX_GY)
        assert ind.hi_rtog == pytest.approx(1.2, rel=1e-12)
        # One voxel among ~7000 is below 2 % of the volume: D2% still Rx, HI (ICRU 83) still 0.
        assert ind.hi_icru83 == 0.0

    def test_underdosed_ptv(self) -> None:
        # Prescribing above the plateau: no voxel reaches Rx. PIV = 0, Paddick 0, GI inf, coverage 0.
        dose, ptv = spherical_plan((2.0, 2.0, 2.0))
        ind = compute_plan_indices(dose, ptv, 1.1 * RX_GY)
        assert ind.prescription_isodose_volume_cc == 0.0 and ind.paddick_ci == 0.0
        assert ind.gradient_index == math.inf and ind.ptv_coverage_percent == 0.0


class TestErrors:
    def test_empty_ptv(self) -> None:
        dose, ptv = spherical_plan((3.0, 3.0, 3.0))
        with pytest.raises(ValueError, match=r"ptv_mask is empty"):
            compute_plan_indices(dose, np.zeros_like(ptv), RX_GY)

    def test_shape_mismatch(self) -> None:
        dose, _ = spherical_plan((3.0, 3.0, 3.0))
        with pytest.raises(
            ValueError, match=r"ptv_mask has shape \(2, 2, 2\) but the dose grid has shape \(31, 31, 31\)"
        ):
            compute_plan_indices(dose, np.ones((2, 2, 2), bool), RX_GY)

    def test_not_boolean(self) -> None:
        dose, ptv = spherical_plan((3.0, 3.0, 3.0))
        with pytest.raises(TypeError, match=r"ptv_mask must be a boolean.*float64"):
            compute_plan_indices(dose, ptv.astype(float), RX_GY)

    @pytest.mark.parametrize("rx", [0.0, -5.0, math.nan])
    def test_prescription(self, rx: float) -> None:
        dose, ptv = spherical_plan((3.0, 3.0, 3.0))
        with pytest.raises(ValueError, match=r"prescription_gy must be a positive number of Gy"):
            compute_plan_indices(dose, ptv, rx)


class TestRtogTable:
    @pytest.mark.parametrize("row", RTOG_CONFORMITY_TABLE, ids=[f"{r[0]}cc" for r in RTOG_CONFORMITY_TABLE])
    def test_rows_are_returned_exactly(self, row: tuple[float, float, float, float, float]) -> None:
        limits = rtog_conformity_limits(row[0])
        assert (
            limits.r50_no_deviation,
            limits.r50_minor_deviation,
            limits.d2cm_no_deviation_percent,
            limits.d2cm_minor_deviation_percent,
        ) == row[1:]
        assert (limits.r100_no_deviation, limits.r100_minor_deviation) == (1.2, 1.5)
        assert not limits.clamped

    @pytest.mark.parametrize(
        ("volume", "expected"),
        [
            (2.8, (5.7, 7.0, 50.0, 57.0)),  # midway between 1.8 and 3.8 cc
            (28.0, (4.4, 5.4, 56.0, 65.5)),  # midway between 22 and 34 cc
            (60.0, (3.75, 4.9, 64.0, 81.5)),  # midway between 50 and 70 cc
            (144.5, (3.0, 3.85, 75.0, 92.5)),  # midway between 126 and 163 cc
            (25.0, (4.45, 5.45, 55.0, 64.25)),  # a quarter of the way from 22 to 34 cc
        ],
    )
    def test_linear_interpolation_between_rows(self, volume: float, expected: tuple[float, ...]) -> None:
        limits = rtog_conformity_limits(volume)
        got = (
            limits.r50_no_deviation,
            limits.r50_minor_deviation,
            limits.d2cm_no_deviation_percent,
            limits.d2cm_minor_deviation_percent,
        )
        assert got == pytest.approx(expected, abs=1e-12)  # linear interpolation: exact up to float rounding

    @pytest.mark.parametrize(("volume", "row"), [(1.0, 0), (200.0, -1)])
    def test_outside_the_table_uses_the_nearest_row(
        self, volume: float, row: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="qa_checks.plan_indices"):
            limits = rtog_conformity_limits(volume)
        assert limits.clamped
        assert limits.r50_no_deviation == RTOG_CONFORMITY_TABLE[row][1]
        assert "outside the RTOG 0813/0915 table" in caplog.text
        assert "nearest row" in rtog_conformity_criteria(limits)[0].description

    @pytest.mark.parametrize("volume", [0.0, -1.0, math.inf])
    def test_bad_volume(self, volume: float) -> None:
        with pytest.raises(ValueError, match=r"ptv_volume_cc must be a positive number of cc"):
            rtog_conformity_limits(volume)


def _indices(*, ptv_cc: float, r50: float, d2cm: float, r100: float) -> PlanIndices:
    dose, ptv = spherical_plan((3.0, 3.0, 3.0))
    base = compute_plan_indices(dose, ptv, RX_GY)
    return dataclasses.replace(base, ptv_volume_cc=ptv_cc, r50=r50, d2cm_percent=d2cm, r100=r100)


class TestEvaluation:
    # 22 cc PTV: R50 4.5 / 5.5, D2cm 54 / 63 %, R100 1.2 / 1.5.
    def test_all_within_no_deviation(self) -> None:
        result = evaluate_rtog_conformity(_indices(ptv_cc=22.0, r50=4.5, d2cm=50.0, r100=1.1))
        assert result.outcome is OutcomeLevel.PER_PROTOCOL
        assert result.reasons == ()

    def test_minor_deviation_is_acceptable_variation(self) -> None:
        result = evaluate_rtog_conformity(_indices(ptv_cc=22.0, r50=5.0, d2cm=50.0, r100=1.1))
        assert result.outcome is OutcomeLevel.ACCEPTABLE_VARIATION
        assert result.result("r50").outcome is OutcomeLevel.ACCEPTABLE_VARIATION
        assert result.result("d2cm").outcome is OutcomeLevel.PER_PROTOCOL

    def test_beyond_minor_deviation_is_unacceptable(self) -> None:
        result = evaluate_rtog_conformity(_indices(ptv_cc=22.0, r50=4.0, d2cm=63.5, r100=1.6))
        assert result.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert result.result("d2cm").outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert result.result("r100").outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert result.result("r50").outcome is OutcomeLevel.PER_PROTOCOL

    def test_limits_follow_the_ptv_volume(self) -> None:
        # R50 5.0 is a minor deviation for a 22 cc PTV (limit 4.5) but per protocol for 3.8 cc (limit 5.5).
        small = evaluate_rtog_conformity(_indices(ptv_cc=3.8, r50=5.0, d2cm=50.0, r100=1.1))
        assert small.outcome is OutcomeLevel.PER_PROTOCOL

    def test_nan_d2cm_is_not_credited(self) -> None:
        result = evaluate_rtog_conformity(_indices(ptv_cc=22.0, r50=4.0, d2cm=math.nan, r100=1.1))
        assert result.result("d2cm").outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
