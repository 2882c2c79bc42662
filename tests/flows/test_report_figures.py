"""Report figure data against analytic truth: the DVH of a uniform dose in a box of known volume, the gamma map of a
uniformly scaled dose (gamma = difference / criterion everywhere), and contours cut through a box's centre."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flows.report_figures import contour_slice, dvh_curve, gamma_slice
from qa_checks.geometry import DoseGrid, ImageVolume
from qa_checks.structures import CLOSED_PLANAR, Contour, Structure


def _box(
    name: str, x: tuple[float, float], y: tuple[float, float], planes: np.ndarray, *, kind: str = "PTV"
) -> Structure:
    contours = tuple(
        Contour(np.array([[x[0], y[0], z], [x[1], y[0], z], [x[1], y[1], z], [x[0], y[1], z]]), CLOSED_PLANAR)
        for z in planes
    )
    return Structure(1, name, kind, contours)


def _grid(values: float | np.ndarray) -> DoseGrid:
    """2 mm voxels, centres at odd mm (edges at even mm): z -15..15, y and x -19..19."""
    z = np.arange(-15.0, 16.0, 2.0)
    y = x = np.arange(-19.0, 20.0, 2.0)
    shape = (z.size, y.size, x.size)
    data = np.full(shape, float(values)) if np.isscalar(values) else np.asarray(values, dtype=float)
    return DoseGrid(data, z, y, x, dose_units="GY")


# A 20 x 20 mm square (edges on voxel edges) on the planes z = -9, -7, ..., 9 (10 planes, 2 mm apart): a slab
# from z = -10 to 10, so the volume is 20 x 20 x 20 mm = 8.0 cc exactly.
BOX_PLANES = np.arange(-9.0, 10.0, 2.0)
BOX_CC = 20.0 * 20.0 * 20.0 / 1000.0


class TestDvhCurve:
    def test_uniform_dose_in_a_known_volume(self) -> None:
        box = _box("PTV", (-10.0, 10.0), (-10.0, 10.0), BOX_PLANES)
        curve = dvh_curve(_grid(12.5), box, structure="PTV", source="submitted")
        assert curve.volume_cc == pytest.approx(BOX_CC, rel=1e-9)
        below = curve.dose_gy <= 12.5 - 1e-9
        above = curve.dose_gy > 12.5 + 1e-9
        assert below.sum() > 1000 and np.all(curve.volume_percent[below] == pytest.approx(100.0))
        assert np.all(curve.volume_percent[above] == 0.0)
        assert curve.structure == "PTV" and curve.source == "submitted"

    def test_mask_half_the_volume_at_twice_the_dose(self) -> None:
        # Organ mask on the dose grid: 10 x 10 x 10 voxels; the 500 with x > 0 get 20 Gy, the others 10 Gy. Masks
        # are not supersampled: each voxel counts whole, so 50% receives 20 Gy and 100% receives 10 Gy.
        grid = _grid(0.0)
        values = np.where(grid.x_mm[None, None, :] > 0, 20.0, 10.0) * np.ones(grid.shape)
        mask = np.zeros(grid.shape, dtype=bool)
        mask[3:13, 5:15, 5:15] = True
        curve = dvh_curve(_grid(values), mask, structure="Lungs", source="reference")
        assert curve.volume_cc == pytest.approx(1000 * 8.0 / 1000)
        at = np.interp([5.0, 10.0 - 1e-6, 15.0, 20.0 - 1e-6, 20.5], curve.dose_gy, curve.volume_percent)
        np.testing.assert_allclose(at, [100.0, 100.0, 50.0, 50.0, 0.0], atol=1e-9)

    def test_empty_region_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="no volume"):
            dvh_curve(_grid(1.0), np.zeros(_grid(1.0).shape, dtype=bool), structure="X", source="submitted")


STORED_GAMMA: dict[str, Any] = {  # as the scorer stores them
    "dose_percent": 3.0,
    "distance_mm": 2.0,
    "normalisation": "global",
    "normalisation_gy": 50.0,
    "lower_cutoff_percent": 10.0,
    "search_step_mm": 0.2,
    "max_search_distance_mm": 4.0,
    "max_gamma": None,
}


class TestGammaSlice:
    def test_uniform_two_percent_difference_is_two_thirds(self) -> None:
        # Reference 50 Gy everywhere, the centre's 51 Gy: no point nearby is closer in dose, so at 3% of 50 Gy
        # gamma = 1 Gy / 1.5 Gy = 2/3 at every point, and every point passes.
        target = _box("PTV", (-6.0, 6.0), (-6.0, 6.0), np.array([5.0, 7.0, 9.0]))
        cut = gamma_slice(_grid(50.0), _grid(51.0), dict(STORED_GAMMA), target=target)
        np.testing.assert_allclose(cut.gamma, 2.0 / 3.0, rtol=1e-6)
        assert cut.pass_rate_percent == 100.0 and cut.points == _grid(50.0).values_gy.size
        assert cut.z_mm == 7.0 and cut.slice_index == 11  # the target's centroid plane
        assert cut.target == "PTV" and len(cut.target_paths) == 1
        np.testing.assert_array_equal(cut.target_paths[0], [[-6, -6], [6, -6], [6, 6], [-6, 6]])
        assert cut.extent == (-20.0, 20.0, 20.0, -20.0)
        assert cut.parameters["dose_percent"] == 3.0 and cut.parameters["normalisation_gy"] == 50.0

    def test_without_a_target_the_slice_of_the_maximum(self) -> None:
        grid = _grid(10.0)
        values = grid.values_gy.copy()
        values[4, 10, 10] = 20.0
        cut = gamma_slice(_grid(values), _grid(values), {**STORED_GAMMA, "normalisation_gy": 20.0}, target=None)
        assert cut.slice_index == 4 and cut.target is None and cut.target_paths == ()
        assert np.nanmax(cut.gamma) == 0.0


class TestContourSlice:
    def test_cut_through_the_reference_centre(self) -> None:
        z = np.arange(-15.0, 16.0, 2.0)
        y = x = np.arange(-39.0, 40.0, 2.0)
        ct = ImageVolume(np.full((z.size, y.size, x.size), -800.0, dtype=np.float32), z, y, x)
        reference = _box("GTV", (-10.0, 10.0), (-10.0, 10.0), np.arange(-1.0, 8.0, 2.0))  # planes -1..7: centre 3
        submitted = _box("gtv", (-6.0, 14.0), (-10.0, 10.0), np.arange(-1.0, 8.0, 2.0))  # 4 mm to the left
        cut = contour_slice(reference, submitted, ct, structure="GTV", submitted_name="gtv")
        assert cut is not None
        assert cut.z_mm == 3.0 and cut.slice_index == 9
        assert len(cut.reference) == 1 and len(cut.submitted) == 1
        np.testing.assert_array_equal(cut.submitted[0][:, 0], [-6, 14, 14, -6])
        assert cut.ct_hu.shape == (y.size, x.size) and float(cut.ct_hu[0, 0]) == -800.0
        assert cut.window is not None and cut.window.x_min_mm == pytest.approx(
            2.0 - 30.0
        )  # x -10..14: centre 2, 60 mm wide
        assert contour_slice(reference, None, ct, structure="GTV", submitted_name=None).submitted == ()  # type: ignore[union-attr]

    def test_reference_off_the_ct_gives_none(self) -> None:
        z = np.arange(0.0, 10.0, 2.0)
        y = x = np.arange(-9.0, 10.0, 2.0)
        ct = ImageVolume(np.zeros((z.size, y.size, x.size), dtype=np.float32), z, y, x)
        far = _box("GTV", (100.0, 110.0), (100.0, 110.0), np.array([4.0]))
        assert contour_slice(far, None, ct, structure="GTV", submitted_name=None) is None
