"""DVH definitions: interpolated D_x, default supersampling policy and its record, single-plane structures,
small-volume warnings in words. Analytic truth after Nelms et al. 2015 (slabs and spheres in linear gradients)."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from qa_checks.dvh import (
    D_X_DEFINITION,
    SUPERSAMPLE_BELOW_CC,
    compute_dvh,
    default_supersampling,
    dvh_warnings,
)
from qa_checks.geometry import DoseGrid
from qa_checks.rasterise import rasterise
from qa_checks.structures import Contour, Structure
from tests.qa_checks.conftest import box_contours, rectangle, sphere_contours
from tests.qa_checks.test_dvh import (
    CENTRE_DOSE_GY,
    GRADIENT_GY_PER_MM,
    SPHERE_RADIUS_MM,
    DoseFunction,
    analytic_d_percent_gradient,
    dose_grid,
    gradient_x,
    gradient_z,
    sphere_structure,
    structure_of,
)


class TestInterpolatedDx:
    def test_slab_in_a_linear_gradient_is_exact(self) -> None:
        # A box x ∈ [-10, 10] mm on a 2 mm grid (centres at odd mm, so columns -9, -7, ..., 9 fill it) in dose
        # D0 + g x: its volume is uniform in x, so D_x% = D0 + g (10 − 20 x / 100) exactly. Each column's volume
        # spreads over its 2 mm of dose, so the interpolated definition is exact between the first and last
        # column midpoints (5 % and 95 %); stepping to a sample dose was off by up to g · 2 mm = 0.4 Gy.
        planes = np.arange(-9.0, 9.01, 2.0)
        box = structure_of(box_contours((-10.0, 10.0), (-6.0, 6.0), planes), "Box")
        a = np.arange(-19.0, 19.1, 2.0)
        x = np.meshgrid(a, a, a, indexing="ij")[2]
        dose = DoseGrid(CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * x, a, a, a)
        dvh = compute_dvh(dose, box, supersample=1)
        assert dvh.volume_cc == pytest.approx(20 * 12 * 20 / 1000, rel=1e-12)
        for percent in (5, 12.5, 25, 50, 66, 80, 95):
            expected = CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * (10 - 20 * percent / 100)
            assert dvh.d_percent(percent) == pytest.approx(expected, abs=1e-9), percent
        # D_x cc is the same curve: the hottest 0.8 cc (1/6 of 4.8 cc) is at x = 10 − 20/6 mm.
        assert dvh.d_cc(0.8) == pytest.approx(CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * (10 - 20 / 6), abs=1e-9)
        # Outside the first/last midpoints D_x is clamped to the extreme sample doses (the column centres).
        assert dvh.d_percent(1) == dvh.max_gy == pytest.approx(CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * 9)

    def test_plateau_is_not_smeared_by_a_hot_voxel(self) -> None:
        # 54 Gy everywhere but one voxel at 64.8 Gy inside a 7.2 cc sphere (~7000 voxels of 1 mm³): 99.99 % of
        # the volume receives exactly 54 Gy, so D2% and D98% are 54 Gy. (Interpolating between sample doses
        # without regard to where volume lies would put D2% near 64 Gy.)
        dose = dose_grid(1.0, lambda z, y, x: np.full(z.shape, 54.0), half_width_mm=15.0)
        mask = rasterise(sphere_structure(), dose)
        values = dose.values_gy.copy()
        k, j, i = np.argwhere(mask)[len(np.argwhere(mask)) // 2]
        values[k, j, i] = 64.8
        dvh = compute_dvh(DoseGrid(values, dose.z_mm, dose.y_mm, dose.x_mm), mask)
        assert dvh.d_percent(2) == 54.0 and dvh.d_percent(98) == 54.0 and dvh.max_gy == 64.8
        assert dvh.v_gy(54.0) == pytest.approx(dvh.volume_cc, rel=1e-12)  # V_x Gy counts samples whole

    @pytest.mark.parametrize("gradient", [gradient_x, gradient_z], ids=["in-plane", "through-plane"])
    @pytest.mark.parametrize(("spacing", "supersample"), [(1.0, 1), (2.0, 1), (3.0, 1), (2.5, 3), (3.0, 5)])
    def test_sphere_within_a_third_of_a_sample_step(
        self, gradient: DoseFunction, spacing: float, supersample: int
    ) -> None:
        # Interpolation brings D_x within 0.3 of the sample dose step g·spacing/supersample of the analytic
        # value (measured ≤ 0.26 step, at D2%/D98% on the 3 mm grid where the voxelised sphere is 3 % small);
        # the stepped definition was up to 0.51 step off.
        dvh = compute_dvh(dose_grid(spacing, gradient), sphere_structure(), supersample=supersample)
        step = GRADIENT_GY_PER_MM * spacing / supersample
        for percent in (2, 10, 50, 90, 98):
            expected = analytic_d_percent_gradient(percent, SPHERE_RADIUS_MM)
            assert dvh.d_percent(percent) == pytest.approx(expected, abs=0.3 * step), percent


class TestDefaultSupersampling:
    @pytest.mark.parametrize(
        ("volume_cc", "is_target", "spacing_mm", "expected"),
        [
            (200.0, True, 3.0, 3),  # targets always
            (200.0, True, 2.0, 2),
            (200.0, True, 1.0, 1),  # already 1 mm: voxel centres are the sub-voxels
            (200.0, True, 6.0, 5),  # capped
            (200.0, True, None, 3),
            (29.9, False, 2.5, 3),  # under 30 cc
            (SUPERSAMPLE_BELOW_CC, False, 3.0, 1),
            (500.0, False, 3.0, 1),
        ],
    )
    def test_policy(self, volume_cc: float, is_target: bool, spacing_mm: float | None, expected: int) -> None:
        assert default_supersampling(volume_cc, is_target, grid_spacing_mm=spacing_mm) == expected

    def test_recorded_on_the_dvh(self) -> None:
        dose = dose_grid(2.5, gradient_x)
        small = compute_dvh(dose, sphere_structure())  # 7.2 cc organ
        assert small.supersample == 3
        # The volume in the reason is the estimate used for the decision (3× fractional occupancy): 7.2 cc.
        assert small.supersample_reason.startswith("default: 7.2")
        assert small.supersample_reason.endswith(" cc structure (< 30 cc), sub-voxels <= 1 mm on a 2.5 mm grid")
        params = small.parameters
        assert params["supersample"] == 3 and params["grid_spacing_mm"] == [2.5, 2.5, 2.5]
        assert params["interpolation"] == "trilinear" and params["d_x_definition"] == D_X_DEFINITION
        json.dumps(params)  # storable as is

    def test_targets_by_type_or_name_and_large_organs(self) -> None:
        dose = dose_grid(3.0, gradient_x, half_width_mm=45.0)
        planes = np.arange(-39.5, 39.6, 1.0)
        big = box_contours((-20.0, 20.0), (-20.0, 20.0), planes)  # 126 cc
        organ = compute_dvh(dose, structure_of(big, "Liver"))
        assert organ.supersample == 1 and "non-target" in organ.supersample_reason
        by_name = compute_dvh(dose, structure_of(big, "PTV_5000"))
        assert by_name.supersample == 3 and by_name.supersample_reason.startswith("default: target")
        by_type = Structure(1, "Boost", "GTV", tuple(Contour(p, "CLOSED_PLANAR") for p in big))
        assert compute_dvh(dose, by_type).supersample == 3
        assert compute_dvh(dose, structure_of(big, "Liver"), is_target=True).supersample == 3

    def test_masks_not_supersampled_by_default(self) -> None:
        dose = dose_grid(2.0, gradient_x)
        dvh = compute_dvh(dose, rasterise(sphere_structure(), dose))
        assert dvh.supersample == 1 and dvh.supersample_reason.startswith("default: a mask")


class TestSinglePlaneStructure:
    # A 19 mm square drawn on one CT slice at z = 0 of a 2 mm CT: a slab 361 mm² × 2 mm = 0.722 cc.
    # The dose grid has 3 mm slices; with 3× supersampling its sub-voxel centres lie on every integer mm, and
    # the square's edges (±9.5 mm) fall between them, so the analytic volume is recovered exactly.
    SQUARE = rectangle(-9.5, 9.5, -9.5, 9.5, 0.0)
    VOLUME_CC = 19 * 19 * 2 / 1000

    def dose(self) -> DoseGrid:
        return dose_grid(3.0, lambda z, y, x: np.full(z.shape, 7.0), half_width_mm=15.0)

    def test_ct_slice_thickness_is_its_extent(self) -> None:
        structure = structure_of([self.SQUARE], "Marker")
        dvh = compute_dvh(self.dose(), structure, ct_slice_thickness_mm=2.0)
        assert dvh.supersample == 3  # 0.7 cc: supersampled by default
        assert dvh.volume_cc == pytest.approx(self.VOLUME_CC, rel=1e-9)
        assert dvh.single_plane_thickness_mm == 2.0 and dvh.notes == ()
        assert dvh.parameters["single_plane_thickness_mm"] == 2.0

    def test_without_thickness_the_dose_grid_spacing_is_used_and_said(self, caplog: pytest.LogCaptureFixture) -> None:
        structure = structure_of([self.SQUARE], "Marker")
        with caplog.at_level(logging.WARNING, logger="qa_checks.dvh"):
            dvh = compute_dvh(self.dose(), structure)
        assert dvh.volume_cc == pytest.approx(19 * 19 * 3 / 1000, rel=1e-9)
        assert dvh.notes == (
            "Marker is drawn on one plane and no CT slice thickness was given: its thickness is taken as the dose "
            "grid's z spacing (3 mm)",
        )
        assert dvh.notes[0] in caplog.text

    def test_rasterise_plane_spacing(self) -> None:
        structure = structure_of([self.SQUARE], "Marker")
        occupancy = rasterise(structure, self.dose(), fractional=True, supersample=3, plane_spacing_mm=2.0)
        assert occupancy.sum() * 27 / 1000 == pytest.approx(self.VOLUME_CC, rel=1e-9)
        with pytest.raises(ValueError, match=r"plane_spacing_mm must be a positive number of mm; got -1"):
            rasterise(structure, self.dose(), plane_spacing_mm=-1.0)

    def test_multi_plane_structure_ignores_the_thickness(self) -> None:
        structure = sphere_structure()
        dose = dose_grid(2.5, gradient_x)
        with_thickness = compute_dvh(dose, structure, supersample=3, ct_slice_thickness_mm=5.0)
        assert with_thickness.volume_cc == compute_dvh(dose, structure, supersample=3).volume_cc
        assert with_thickness.single_plane_thickness_mm is None


class TestSmallVolumeWarnings:
    def cord(self, supersample: int) -> Structure:
        del supersample
        return structure_of(sphere_contours((0.0, 0.0, 0.0), 3.0, np.arange(-2.75, 2.8, 0.5)), "SpinalCord")

    def test_words(self, caplog: pytest.LogCaptureFixture) -> None:
        dose = dose_grid(3.0, gradient_x, half_width_mm=15.0)
        coarse = compute_dvh(dose, self.cord(1), supersample=1)
        fine = compute_dvh(dose, self.cord(5), supersample=5)
        assert coarse.small_volume_warning(0.02) == (
            "D0.02cc of SpinalCord on a 3 mm dose grid: the volume is smaller than one dose voxel (0.027 cc); not "
            "supersampled: the value jumps with the structure's position on the grid"
        )
        assert fine.small_volume_warning(0.035) == (
            "D0.035cc of SpinalCord on a 3 mm dose grid: the volume is 1.3 dose voxels (0.027 cc each); "
            "supersampled 5× with the dose interpolated trilinearly"
        )
        assert fine.small_volume_warning(0.1) is None  # 3.7 voxels
        with caplog.at_level(logging.WARNING, logger="qa_checks.dvh"):
            fine.d_percent(10)  # 10 % of the 0.11 cc sphere: a D_x% is named as the protocol names it
        assert re.search(
            r"D10% \(0\.011\d cc\) of SpinalCord on a 3 mm dose grid: the volume is smaller than one dose voxel",
            caplog.text,
        )
        assert "0.01728" not in caplog.text

    def test_anisotropic_grid_named_per_axis(self) -> None:
        a = np.arange(-15.0, 15.1, 2.5)
        z = np.arange(-15.0, 15.1, 3.0)
        dose = DoseGrid(np.full((z.size, a.size, a.size), 5.0), z, a, a)
        dvh = compute_dvh(dose, self.cord(1), supersample=1)
        message = dvh.small_volume_warning(0.03)
        assert message is not None
        assert message.startswith("D0.03cc of SpinalCord on a 3×2.5×2.5 mm (z×y×x) dose grid: the volume is 1.6")


class TestDvhWarnings:
    def test_for_the_reviewer_by_key(self) -> None:
        cord = structure_of(sphere_contours((0.0, 0.0, 0.0), 3.0, np.arange(-2.75, 2.8, 0.5)), "SpinalCord")
        dvh = compute_dvh(dose_grid(3.0, gradient_x, half_width_mm=15.0), cord, supersample=1)
        keys = [("SpinalCord", "D0.03cc"), ("SpinalCord", "D50%"), ("SpinalCord", "Dmax"), ("SpinalCord", "D0%")]
        keys += [("SpinalCord", "V10Gy"), ("Brainstem", "D0.03cc")]
        warnings = dvh_warnings({"SpinalCord": dvh}, keys)
        # The 0.11 cc sphere holds only 2 voxel centres of this grid (0.054 cc): half of it is one voxel.
        assert dvh.volume_cc == pytest.approx(0.054, abs=1e-9)
        assert set(warnings) == {("SpinalCord", "D0.03cc"), ("SpinalCord", "D50%")}
        assert warnings[("SpinalCord", "D50%")].startswith("D50% (0.027 cc) of SpinalCord on a 3 mm dose grid: ")
        assert warnings[("SpinalCord", "D0.03cc")].startswith(
            "D0.03cc of SpinalCord on a 3 mm dose grid: the volume is 1.1 dose voxels (0.027 cc each)"
        )
