"""Plan indices of plans with several targets, D2cm from a supersampled contour surface, and grid edges."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.dvh import compute_dvh
from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import (
    D2CM_SURFACE,
    D2CM_VOXEL_CENTRES,
    NEAREST_TARGET,
    WHOLE_GRID,
    compute_plan_indices,
    compute_target_indices,
    evaluate_rtog_conformity,
)
from qa_checks.protocol import OutcomeLevel
from qa_checks.structures import CLOSED_PLANAR, Contour, Structure
from qa_checks.target_geometry import crop_dose

RX_GY = 24.0


def falloff(d_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Relative dose at signed distance d (mm) from a sphere's surface: 1 up to +1 mm, linear to 0.5 at +6 mm,
    then 0.5 exp(-(d - 6) / 10). Decreasing in d."""
    linear = 1.0 - 0.5 * (d_mm - 1.0) / 5.0
    tail = 0.5 * np.exp(-(d_mm - 6.0) / 10.0)
    return np.where(d_mm <= 1.0, 1.0, np.where(d_mm <= 6.0, linear, tail))


def grid_axes(low: tuple[float, float, float], high: tuple[float, float, float], step: float) -> list[np.ndarray]:
    return [np.arange(lo, hi + step / 2, step, dtype=np.float64) for lo, hi in zip(low, high, strict=True)]


def radius_field(axes: list[np.ndarray], centre_zyx: tuple[float, float, float]) -> npt.NDArray[np.float64]:
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.asarray(np.sqrt((z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2))


def sphere_structure(
    name: str, centre_zyx: tuple[float, float, float], radius_mm: float, plane_mm: float = 1.0
) -> Structure:
    """Axial polygons (256 points) of a sphere on planes ``plane_mm`` apart, each the sphere's section at the
    plane (the rasteriser's slabs then approximate the sphere within half a plane spacing)."""
    cz, cy, cx = centre_zyx
    contours = []
    angles = np.linspace(0.0, 2.0 * np.pi, 256, endpoint=False)
    for z in np.arange(cz - radius_mm + plane_mm / 2, cz + radius_mm, plane_mm):
        r = math.sqrt(max(radius_mm**2 - (z - cz) ** 2, 0.0))
        pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles), np.full(angles.size, z)], axis=1)
        contours.append(Contour(pts, CLOSED_PLANAR))
    return Structure(1, name, "PTV", tuple(contours))


class TestTwoMetastases:
    """Two spherical targets 50 mm apart (centre to centre), each with its own dose cloud (voxel-wise maximum)."""

    CENTRES = ((0.3, -0.2, 0.1), (0.3, -0.2, 50.1))
    RADII = (8.0, 11.0)

    def plan(self) -> tuple[list[np.ndarray], list[npt.NDArray[np.float64]], list[npt.NDArray[np.bool_]]]:
        axes = grid_axes((-45.0, -45.0, -45.0), (45.0, 45.0, 95.0), 1.0)
        rho = [radius_field(axes, c) for c in self.CENTRES]
        clouds = [RX_GY * falloff(r - radius) for r, radius in zip(rho, self.RADII, strict=True)]
        masks = [r <= radius for r, radius in zip(rho, self.RADII, strict=True)]
        return axes, clouds, masks

    def test_each_target_scores_as_if_alone(self) -> None:
        axes, clouds, masks = self.plan()
        both = DoseGrid(np.maximum(clouds[0], clouds[1]), *axes)
        together = compute_target_indices(both, {"PTV": masks[0], "PTV_2": masks[1]}, {"PTV": RX_GY, "PTV_2": RX_GY})
        for i, name in enumerate(("PTV", "PTV_2")):
            alone = compute_plan_indices(DoseGrid(clouds[i], *axes), masks[i], RX_GY)
            got = together[name]
            assert got.neighbourhood == NEAREST_TARGET and got.target_count == 2
            assert alone.neighbourhood == WHOLE_GRID
            for field_name in ("r100", "r50", "gradient_index", "paddick_ci", "d2cm_percent", "ptv_coverage_percent"):
                assert getattr(got, field_name) == pytest.approx(getattr(alone, field_name), rel=0.02), field_name
            assert got.ptv_volume_cc == alone.ptv_volume_cc

    def test_without_partition_the_other_cloud_counts(self) -> None:
        # The failure the partition prevents: PTV's R50% and D2cm count PTV_2's dose cloud.
        axes, clouds, masks = self.plan()
        both = DoseGrid(np.maximum(clouds[0], clouds[1]), *axes)
        naive = compute_plan_indices(both, masks[0], RX_GY)
        alone = compute_plan_indices(DoseGrid(clouds[0], *axes), masks[0], RX_GY)
        assert naive.r50 is not None and alone.r50 is not None
        assert naive.r50 > 2.0 * alone.r50
        assert naive.d2cm_percent is not None and alone.d2cm_percent is not None
        assert naive.d2cm_percent > 90.0 > alone.d2cm_percent
        partitioned = compute_plan_indices(both, masks[0], RX_GY, other_targets=[masks[1]])
        assert partitioned.r50 == pytest.approx(alone.r50, rel=0.02)

    def test_prescriptions_needed_for_every_evaluated_target(self) -> None:
        axes, clouds, masks = self.plan()
        both = DoseGrid(np.maximum(clouds[0], clouds[1]), *axes)
        with pytest.raises(ValueError, match=r"target 'PTV_2' has no prescription dose"):
            compute_target_indices(both, {"PTV": masks[0], "PTV_2": masks[1]}, {"PTV": RX_GY})


class TestD2cmFromSurface:
    """Spherically symmetric dose around a spherical PTV: D2cm = 100 · falloff(20 mm) exactly."""

    RADIUS_MM = 15.0
    CENTRE = (0.4, -0.7, 0.9)

    def dose(self, step: float) -> DoseGrid:
        axes = grid_axes((-45.0, -45.0, -45.0), (45.0, 45.0, 45.0), step)
        rho = radius_field(axes, self.CENTRE)
        return DoseGrid(RX_GY * falloff(rho - self.RADIUS_MM), *axes)

    def test_three_mm_grid_gives_the_analytic_value(self) -> None:
        truth = 100.0 * float(falloff(np.array(20.0)))
        dose = self.dose(3.0)
        ptv = sphere_structure("PTV", self.CENTRE, self.RADIUS_MM)
        ind = compute_plan_indices(dose, ptv, RX_GY)
        assert ind.d2cm_method == D2CM_SURFACE and ind.supersample == 7
        assert ind.d2cm_percent is not None
        # Surface samples lie within half a fine voxel (0.43 mm) of the sphere; the falloff's slope at 20 mm is
        # 1.2 % per mm, and voxel centres lie at every distance near 20 mm on a 30-mm-radius shell.
        assert ind.d2cm_percent == pytest.approx(truth, abs=1.0)

    def test_voxel_centre_rule_is_off_on_a_three_mm_grid(self) -> None:
        # The mask-only rule (distance to PTV voxel centres) errs high by more than 1 percentage point here: the
        # reason contoured targets are measured from their surface.
        truth = 100.0 * float(falloff(np.array(20.0)))
        dose = self.dose(3.0)
        rho = radius_field([dose.z_mm, dose.y_mm, dose.x_mm], self.CENTRE)
        ind = compute_plan_indices(dose, rho <= self.RADIUS_MM, RX_GY)
        assert ind.d2cm_method == D2CM_VOXEL_CENTRES
        assert ind.d2cm_percent is not None and ind.d2cm_percent > truth + 1.0


class TestGridEdge:
    def test_fifty_percent_isodose_touching_the_edge_is_unknown(self) -> None:
        # 50 % isodose at 6 mm from a 10 mm sphere (radius 16 mm); the grid stops at x = 14 mm.
        axes = grid_axes((-40.0, -40.0, -40.0), (40.0, 40.0, 14.0), 2.0)
        rho = radius_field(axes, (0.0, 0.0, 0.0))
        dose = DoseGrid(RX_GY * falloff(rho - 10.0), *axes)
        ind = compute_plan_indices(dose, rho <= 10.0, RX_GY)
        assert ind.r50 is None and ind.gradient_index is None and ind.half_prescription_isodose_volume_cc is None
        assert ind.d2cm_percent is None
        assert "reaches the dose-grid edge at left (x = 14 mm)" in ind.unknown["r50"]
        assert ind.unknown["d2cm_percent"] == ind.unknown["r50"]
        assert ind.r100 > 0  # the prescription isodose is inside the grid: R100% is known
        result = evaluate_rtog_conformity(ind)
        assert result.result("r50").outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert "reaches the dose-grid edge" in result.result("r50").reason

    def test_shell_leaving_the_grid_is_flagged(self) -> None:
        # 50 % isodose inside the grid, but the grid stops 18 mm from the PTV surface on the right (-x) side.
        axes = grid_axes((-40.0, -40.0, -28.0), (40.0, 40.0, 40.0), 2.0)
        rho = radius_field(axes, (0.0, 0.0, 0.0))
        dose = DoseGrid(RX_GY * falloff(rho - 10.0), *axes)
        ind = compute_plan_indices(dose, rho <= 10.0, RX_GY)
        assert ind.r50 is not None and ind.d2cm_percent is not None
        assert len(ind.warnings) == 1
        assert "20 mm shell around the PTV leaves the dose grid on the right (x," in ind.warnings[0]


class TestCropDose:
    @pytest.mark.parametrize("supersample", [1, 3])
    def test_dvh_on_the_cropped_grid_equals_the_whole_grid(self, supersample: int) -> None:
        axes = grid_axes((-45.0, -45.0, -45.0), (45.0, 45.0, 45.0), 3.0)
        rho = radius_field(axes, (4.0, -3.0, 2.0))
        dose = DoseGrid(RX_GY * falloff(rho - 8.0), *axes)
        ptv = sphere_structure("PTV", (4.0, -3.0, 2.0), 8.0)
        cropped, box = crop_dose(dose, ptv)
        assert cropped.shape < dose.shape
        whole = compute_dvh(dose, ptv, supersample=supersample)
        part = compute_dvh(cropped, ptv, supersample=supersample)
        for metric in ("Dmax", "Dmin", "Dmean", "D95%", "D0.035cc", "V20Gy"):
            assert part.metric(metric) == pytest.approx(whole.metric(metric), rel=1e-12, abs=1e-12), metric
        mask = rho <= 8.0
        cropped_mask, mask_box = crop_dose(dose, mask)
        assert compute_dvh(cropped_mask, mask[mask_box]).mean_gy == pytest.approx(compute_dvh(dose, mask).mean_gy)
        np.testing.assert_array_equal(cropped.values_gy, dose.values_gy[box])
