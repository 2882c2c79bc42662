"""Figure geometry against values worked out by hand: nearest slices, centroids, contours on a plane, image extents
and view windows."""

from __future__ import annotations

import numpy as np
import pytest

from qa_checks.errors import InvalidGridError
from qa_checks.figure_data import (
    Window,
    centroid_mm,
    contours_on_plane,
    image_extent_mm,
    nearest_index,
    slice_through,
    window_around,
)
from qa_checks.geometry import DoseGrid
from qa_checks.structures import CLOSED_PLANAR, POINT, Contour, Structure


def _square(x0: float, y0: float, x1: float, y1: float, z: float) -> Contour:
    points = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)
    return Contour(points, CLOSED_PLANAR)


class TestNearestIndex:
    @pytest.mark.parametrize(
        ("axis", "value", "expected"),
        [
            ([0.0, 3.0, 6.0, 9.0], 4.4, 1),
            ([0.0, 3.0, 6.0, 9.0], 4.6, 2),
            ([0.0, 3.0, 6.0, 9.0], 4.5, 1),  # a tie goes to the lower index
            ([0.0, 3.0, 6.0, 9.0], -50.0, 0),
            ([0.0, 3.0, 6.0, 9.0], 50.0, 3),
            ([9.0, 6.0, 3.0, 0.0], 5.0, 1),  # decreasing axis
        ],
    )
    def test_table(self, axis: list[float], value: float, expected: int) -> None:
        assert nearest_index(axis, value) == expected

    def test_refuses_a_non_finite_value(self) -> None:
        with pytest.raises(ValueError, match="finite"):
            nearest_index([0.0, 1.0], float("nan"))


class TestCentroid:
    def _grid(self) -> DoseGrid:
        z = np.arange(0.0, 30.0, 3.0)  # 10 slices, 3 mm
        y = np.arange(-10.0, 10.0, 2.0)  # 10 rows, 2 mm
        x = np.arange(100.0, 120.0, 1.0)  # 20 columns, 1 mm
        return DoseGrid(np.zeros((z.size, y.size, x.size)), z, y, x)

    def test_box_centroid_is_its_centre(self) -> None:
        grid = self._grid()
        mask = np.zeros(grid.shape, dtype=bool)
        mask[2:5, 1:4, 10:16] = True  # z 6, 9, 12; y -8, -6, -4; x 110..115
        assert centroid_mm(mask, grid) == pytest.approx((9.0, -6.0, 112.5))
        assert slice_through(mask, grid) == 3  # z = 9 mm

    def test_unequal_slices_weigh_by_voxel_count(self) -> None:
        grid = self._grid()
        mask = np.zeros(grid.shape, dtype=bool)
        mask[1, 0, :3] = True  # 3 voxels at z = 3
        mask[4, 0, :1] = True  # 1 voxel at z = 12
        centre = centroid_mm(mask, grid)
        assert centre is not None and centre[0] == pytest.approx((3 * 3.0 + 12.0) / 4)  # 5.25 mm
        assert slice_through(mask, grid) == 2  # nearest slice to 5.25 mm is z = 6

    def test_empty_mask_has_none(self) -> None:
        grid = self._grid()
        assert centroid_mm(np.zeros(grid.shape, dtype=bool), grid) is None
        assert slice_through(np.zeros(grid.shape, dtype=bool), grid) is None

    def test_shape_must_match(self) -> None:
        with pytest.raises(ValueError, match="shape"):
            centroid_mm(np.zeros((2, 2, 2), dtype=bool), self._grid())


class TestContoursOnPlane:
    def test_only_the_plane_within_tolerance(self) -> None:
        structure = Structure(
            1,
            "PTV",
            contours=(
                _square(0, 0, 10, 10, 0.0),
                _square(1, 1, 9, 9, 3.0),
                _square(20, 20, 25, 25, 3.0),  # a second island on the same plane
                _square(2, 2, 8, 8, 6.0),
                Contour(np.array([[5.0, 5.0, 3.0]]), POINT),  # markers are not contours
            ),
        )
        paths = contours_on_plane(structure, 3.2, tolerance_mm=1.5)
        assert len(paths) == 2
        np.testing.assert_array_equal(paths[0], [[1, 1], [9, 1], [9, 9], [1, 9]])
        np.testing.assert_array_equal(paths[1], [[20, 20], [25, 20], [25, 25], [20, 25]])
        assert contours_on_plane(structure, 4.5, tolerance_mm=1.0) == ()  # 1.5 mm from both planes
        assert len(contours_on_plane(structure, 1.5, tolerance_mm=1.5)) == 3  # both planes 0 and 3 are 1.5 away

    def test_negative_tolerance_is_refused(self) -> None:
        with pytest.raises(ValueError, match="tolerance_mm"):
            contours_on_plane(Structure(1, "x"), 0.0, tolerance_mm=-1)


class TestImageExtent:
    def test_half_a_pixel_beyond_the_centres(self) -> None:
        assert image_extent_mm(np.arange(0.0, 10.0), np.arange(10.0, 30.0, 2.0)) == (-0.5, 9.5, 29.0, 9.0)

    def test_decreasing_rows_keep_row_zero_on_top(self) -> None:
        left, right, bottom, top = image_extent_mm([0.0, 1.0], [4.0, 2.0, 0.0])
        assert (left, right) == (-0.5, 1.5) and (bottom, top) == (-1.0, 5.0)

    def test_one_pixel_has_no_size(self) -> None:
        with pytest.raises(InvalidGridError, match="two or more"):
            image_extent_mm([0.0], [0.0, 1.0])


class TestWindow:
    def test_margin_then_minimum_size(self) -> None:
        path = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 4.0]])
        assert window_around([path], margin_mm=5, min_size_mm=10) == Window(-5.0, 15.0, -5.0, 9.0)
        assert window_around([path], margin_mm=5, min_size_mm=40) == Window(-15.0, 25.0, -18.0, 22.0)

    def test_no_points_no_window(self) -> None:
        assert window_around([], margin_mm=5, min_size_mm=10) is None
        assert window_around([np.zeros((0, 2))], margin_mm=5, min_size_mm=10) is None
