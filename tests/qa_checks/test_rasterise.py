"""Rasterisation: analytic shapes through DICOM round trips, even-odd rule, boundary and between-slice rules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.dicom_io import load_submission
from qa_checks.errors import InvalidGridError, UnsupportedGeometryError
from qa_checks.geometry import PATIENT_POSITIONS, DoseGrid
from qa_checks.rasterise import rasterise
from qa_checks.structures import Contour, Structure
from tests.qa_checks.conftest import (
    DicomFactory,
    box_contours,
    circle,
    cylinder_contours,
    polygon_area_mm2,
    rectangle,
    sphere_contours,
)

Polygons = list[npt.NDArray[np.float64]]


def structure_of(polygons: Polygons, name: str = "S") -> Structure:
    return Structure(number=1, name=name, contours=tuple(Contour(p, "CLOSED_PLANAR") for p in polygons))


def grid_of(z: npt.ArrayLike, y: npt.ArrayLike, x: npt.ArrayLike) -> DoseGrid:
    z, y, x = (np.asarray(a, dtype=np.float64) for a in (z, y, x))
    return DoseGrid(np.zeros((z.size, y.size, x.size)), z, y, x)


def centred_axis(spacing_mm: float, half_width_mm: float) -> npt.NDArray[np.float64]:
    n = round(half_width_mm / spacing_mm)
    return spacing_mm * np.arange(-n, n + 1, dtype=np.float64)


# (z, y, x) spacings in mm
GRIDS = {"isotropic": (1.0, 1.0, 1.0), "anisotropic": (2.5, 1.2, 0.8)}

SPHERE_CENTRE = (1.3, -2.1, 0.4)  # off the voxel lattice on every axis
SPHERE_RADIUS_MM = 12.0  # 7.2 cc


def _sphere(z: npt.NDArray[np.float64]) -> tuple[Polygons, float, tuple[float, float, float]]:
    polygons = sphere_contours(SPHERE_CENTRE, SPHERE_RADIUS_MM, z)
    return polygons, 4.0 / 3.0 * np.pi * SPHERE_RADIUS_MM**3, SPHERE_CENTRE


def _cylinder(z: npt.NDArray[np.float64]) -> tuple[Polygons, float, tuple[float, float, float]]:
    # A cylinder contoured on the CT planes within |z| < 8 mm: each plane stands for one slice thickness,
    # so the object is a cylinder of height n_planes × dz, ending half a slice beyond the outer planes.
    planes = z[np.abs(z) < 8.0]
    dz = float(z[1] - z[0])
    volume = np.pi * 10.0**2 * planes.size * dz
    return cylinder_contours((1.3, -2.1), 10.0, planes), volume, (1.3, -2.1, float(planes.mean()))


def _box(z: npt.NDArray[np.float64]) -> tuple[Polygons, float, tuple[float, float, float]]:
    # 16 × 24 mm: whole multiples of every in-plane spacing used, so voxel counting is exact up to ties,
    # and edges placed off the voxel centres so that there are no ties.
    planes = z[np.abs(z) < 8.0]
    dz = float(z[1] - z[0])
    x0, y0 = -7.7, -11.9
    volume = 16.0 * 24.0 * planes.size * dz
    return box_contours((x0, x0 + 16.0), (y0, y0 + 24.0), planes), volume, (x0 + 8.0, y0 + 12.0, float(planes.mean()))


SHAPES: dict[str, Callable[[npt.NDArray[np.float64]], tuple[Polygons, float, tuple[float, float, float]]]] = {
    "sphere": _sphere,
    "cylinder": _cylinder,
    "box": _box,
}


class TestAnalyticRoundTrip:
    """Write CT + RTSTRUCT in each patient position, load the submission, rasterise on the CT grid."""

    @pytest.mark.parametrize("position", PATIENT_POSITIONS)
    @pytest.mark.parametrize("grid_name", sorted(GRIDS))
    @pytest.mark.parametrize("shape", sorted(SHAPES))
    def test_volume_and_centroid(self, dicom_factory: DicomFactory, position: str, grid_name: str, shape: str) -> None:
        dz, dy, dx = GRIDS[grid_name]
        z, y, x = centred_axis(dz, 20.0), centred_axis(dy, 25.0), centred_axis(dx, 25.0)
        polygons, volume_mm3, centre = SHAPES[shape](z)
        ct = dicom_factory.ct_series(z, y, x, position=position)
        dicom_factory.rtstruct(ct, {shape: polygons})
        loaded = load_submission(dicom_factory.root)
        assert loaded.ct is not None and loaded.structure_set is not None

        mask = rasterise(loaded.structure_set[shape], loaded.ct)
        assert mask.shape == loaded.ct.shape and mask.dtype == np.bool_
        measured_mm3 = mask.sum() * loaded.ct.voxel_volume_mm3
        # Shapes are ≥ 5 cc: voxelising the boundary (and, for the sphere, stacking slabs) stays within 1 %.
        assert measured_mm3 == pytest.approx(volume_mm3, rel=0.01)
        zz, yy, xx = np.meshgrid(loaded.ct.z_mm, loaded.ct.y_mm, loaded.ct.x_mm, indexing="ij")
        centroid = (zz[mask].mean(), yy[mask].mean(), xx[mask].mean())
        expected = (centre[2], centre[1], centre[0])
        for axis, spacing in enumerate(loaded.ct.spacing_mm):
            # The centroid of a voxelised symmetric shape is off by less than half a voxel on each axis.
            assert abs(centroid[axis] - expected[axis]) < spacing / 2


class TestEvenOddRule:
    Z = np.array([0.0])
    AXIS = np.arange(-15.0, 16.0)  # 1 mm voxels centred on integers

    def test_hole(self) -> None:
        # outer 20 × 20 (edges at .25, never on a centre) minus inner 10 × 10
        outer = rectangle(-10.25, 9.75, -10.25, 9.75, 0.0)
        inner = rectangle(-5.25, 4.75, -5.25, 4.75, 0.0)
        mask = rasterise(structure_of([outer, inner]), grid_of(self.Z, self.AXIS, self.AXIS))
        assert mask.sum() == 400 - 100
        assert not mask[0, 15, 15]  # (x, y) = (0, 0) is in the hole
        assert mask[0, 15, 15 - 8]  # (x, y) = (-8, 0) is in the ring

    def test_order_of_polygons_does_not_matter(self) -> None:
        outer = rectangle(-10.25, 9.75, -10.25, 9.75, 0.0)
        inner = rectangle(-5.25, 4.75, -5.25, 4.75, 0.0)
        grid = grid_of(self.Z, self.AXIS, self.AXIS)
        a = rasterise(structure_of([outer, inner]), grid)
        b = rasterise(structure_of([inner, outer[::-1]]), grid)  # also reversed winding
        np.testing.assert_array_equal(a, b)

    def test_two_islands(self) -> None:
        left = rectangle(-12.5, -4.5, -3.5, 2.5, 0.0)  # 8 × 6 centres
        right = rectangle(3.5, 8.5, -3.5, 6.5, 0.0)  # 5 × 10 centres
        mask = rasterise(structure_of([left, right]), grid_of(self.Z, self.AXIS, self.AXIS))
        assert mask.sum() == 8 * 6 + 5 * 10

    def test_island_inside_hole(self) -> None:
        outer = rectangle(-10.5, 9.5, -10.5, 9.5, 0.0)  # 20 × 20
        hole = rectangle(-6.5, 5.5, -6.5, 5.5, 0.0)  # 12 × 12
        island = rectangle(-2.5, 1.5, -2.5, 1.5, 0.0)  # 4 × 4
        mask = rasterise(structure_of([outer, hole, island]), grid_of(self.Z, self.AXIS, self.AXIS))
        assert mask.sum() == 400 - 144 + 16


class TestBoundaryRule:
    def test_centres_on_edges_half_open(self) -> None:
        # Square with edges exactly on voxel centres 0 and 10: centres 0..9 in, 10 out, on both axes.
        square = rectangle(0.0, 10.0, 0.0, 10.0, 0.0)
        axis = np.arange(-3.0, 14.0)
        mask = rasterise(structure_of([square]), grid_of([0.0], axis, axis))[0]
        inside = np.flatnonzero(mask.any(axis=0))
        np.testing.assert_array_equal(axis[inside], np.arange(0.0, 10.0))
        assert mask.sum() == 100

    def test_adjacent_polygons_tile_without_overlap(self) -> None:
        axis = np.arange(-3.0, 14.0)
        grid = grid_of([0.0], axis, axis)
        a = rasterise(structure_of([rectangle(0.0, 5.0, 0.0, 10.0, 0.0)]), grid)
        b = rasterise(structure_of([rectangle(5.0, 10.0, 0.0, 10.0, 0.0)]), grid)
        assert not (a & b).any()
        assert (a | b).sum() == 100

    def test_decreasing_axes_give_the_same_voxels(self) -> None:
        polygons = [circle(1.3, -2.1, z, 7.0) for z in (0.0, 2.0, 4.0)]
        z, y, x = np.arange(-2.0, 7.0), np.arange(-12.0, 12.0), np.arange(-12.0, 12.0)
        up = rasterise(structure_of(polygons), grid_of(z, y, x))
        down = rasterise(structure_of(polygons), grid_of(z[::-1], y[::-1], x[::-1]))
        np.testing.assert_array_equal(down[::-1, ::-1, ::-1], up)


class TestBetweenSliceRule:
    """Contour planes every 3 mm, grid slices every 0.5 mm: each plane fills [plane - 1.5, plane + 1.5)."""

    PLANES = (0.0, 3.0, 6.0)
    SIDES_MM = (4.0, 6.0, 8.0)  # a different square on each plane, to tell which plane a slice took
    AXIS = np.arange(-6.0, 6.5, 1.0) + 0.5  # centres at half-integers: no in-plane ties

    def _structure(self) -> Structure:
        return structure_of(
            [rectangle(-s / 2, s / 2, -s / 2, s / 2, z) for z, s in zip(self.PLANES, self.SIDES_MM, strict=True)]
        )

    def test_each_slice_takes_the_nearest_plane_within_half_a_spacing(self) -> None:
        z = np.arange(-3.0, 9.01, 0.5)
        mask = rasterise(self._structure(), grid_of(z, self.AXIS, self.AXIS))
        counts = dict(zip(z.tolist(), mask.sum(axis=(1, 2)).tolist(), strict=True))
        expected_count = {0.0: 16, 3.0: 36, 6.0: 64}  # side² voxels of 1 mm
        for zk, count in counts.items():
            if zk < -1.5 or zk >= 7.5:
                assert count == 0, zk
            else:
                nearest = min(self.PLANES, key=lambda p: (abs(zk - p), -p))  # ties go to the upper plane
                assert count == expected_count[nearest], zk
        assert counts[1.5] == 36 and counts[4.5] == 64  # exactly half-way: the upper plane
        assert counts[-1.5] == 16 and counts[7.5] == 0  # slab is [plane - 1.5, plane + 1.5)

    def test_volume_conserved_on_a_finer_shifted_grid(self) -> None:
        z = np.arange(-3.0, 9.0, 0.5) + 0.25
        mask = rasterise(self._structure(), grid_of(z, self.AXIS, self.AXIS))
        volume = mask.sum() * 0.5 * 1.0 * 1.0
        assert volume == sum(s * s * 3.0 for s in self.SIDES_MM)  # exact: squares on whole voxels

    def test_gap_in_contours_stays_empty(self) -> None:
        polygons = [rectangle(-2.0, 2.0, -2.0, 2.0, z) for z in (0.0, 3.0, 6.0, 30.0, 33.0)]
        z = np.arange(-3.0, 37.0, 1.0)
        mask = rasterise(structure_of(polygons), grid_of(z, self.AXIS, self.AXIS))
        filled = z[mask.any(axis=(1, 2))]
        np.testing.assert_array_equal(filled, np.concatenate([np.arange(-1.0, 8.0), np.arange(29.0, 35.0)]))

    def test_single_plane_uses_grid_spacing(self) -> None:
        z = np.arange(-4.0, 5.0, 2.0)
        mask = rasterise(structure_of([rectangle(-2.0, 2.0, -2.0, 2.0, 0.6)]), grid_of(z, self.AXIS, self.AXIS))
        # one plane at z = 0.6 with a 2 mm grid: slab [-0.4, 1.6) holds only the slice at z = 0
        np.testing.assert_array_equal(mask.any(axis=(1, 2)), [False, False, True, False, False])


class TestFractional:
    def test_supersample_one_equals_mask(self) -> None:
        polygons = [circle(0.3, 0.2, z, 6.0) for z in (-2.0, 0.0, 2.0)]
        grid = grid_of(np.arange(-4.0, 5.0), np.arange(-9.0, 10.0), np.arange(-9.0, 10.0))
        mask = rasterise(structure_of(polygons), grid)
        frac = rasterise(structure_of(polygons), grid, fractional=True)
        np.testing.assert_array_equal(frac, mask.astype(np.float64))

    def test_small_sphere_on_coarse_grid(self) -> None:
        # 0.27 cc sphere (r = 4 mm) contoured every 1 mm, on a 3 mm dose grid, at three sub-voxel shifts.
        axis = np.arange(-9.0, 10.0, 3.0)
        grid = grid_of(axis, axis, axis)
        centre_errors = []
        for shift in (0.0, 0.5, 1.5):
            planes = np.arange(-3.5, 4.0, 1.0) + shift
            polygons = sphere_contours((0.4 + shift, -0.7 + shift, shift), 4.0, planes)
            contour_volume = sum(polygon_area_mm2(p) for p in polygons) * 1.0
            frac = rasterise(structure_of(polygons), grid, fractional=True, supersample=10)
            assert frac.min() >= 0.0 and frac.max() <= 1.0
            # 10 sub-samples per 3 mm axis (0.3 mm sub-voxels) on a 4 mm sphere: the boundary error is
            # below 1 % whatever the shift; 2 % leaves room for the polygonal approximation of each slab.
            assert frac.sum() * 27.0 == pytest.approx(contour_volume, rel=0.02)
            centre_only = rasterise(structure_of(polygons), grid).sum() * 27.0
            centre_errors.append(abs(centre_only / contour_volume - 1.0))
        # Centre sampling of the same sphere swings by 10-20 % with the shift: the reason to supersample.
        assert max(centre_errors) > 0.09

    def test_partial_voxels_outside_the_centre_bounding_box(self) -> None:
        # A 1 × 1 mm square at x in [0.4, 1.4) on 2 mm voxels: no voxel centre is inside it, yet it covers
        # 0.6 mm of the voxel at x = 0 (3 of its 10 sub-columns) and 0.4 mm of the voxel at x = 2 (2 of 10),
        # and the whole 1 mm of the voxel at y = 0. Sub-sample counts are exact.
        square = rectangle(0.4, 1.4, -0.5, 0.5, 0.0)
        grid = grid_of([0.0], [-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0])
        assert not rasterise(structure_of([square]), grid).any()
        frac = rasterise(structure_of([square]), grid, fractional=True, supersample=10)
        expected = np.zeros((1, 3, 3))
        expected[0, 1, 1:] = [0.3, 0.2]
        np.testing.assert_allclose(frac, expected, rtol=0, atol=1e-12)

    def test_supersample_needs_fractional(self) -> None:
        with pytest.raises(ValueError, match="supersample > 1 needs fractional=True"):
            rasterise(structure_of([rectangle(0, 1, 0, 1, 0)]), grid_of([0.0], [0.0], [0.0]), supersample=2)


class TestRasteriseErrors:
    def test_non_axial_contour(self) -> None:
        tilted = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 1.0], [5.0, 5.0, 1.0]])
        with pytest.raises(
            UnsupportedGeometryError, match=r"structure 'Tilted' \(ROINumber 1\).*z ranges from 0\.0 to 1\.0"
        ):
            rasterise(structure_of([tilted], name="Tilted"), grid_of([0.0], [0.0], [0.0]))

    def test_non_uniform_in_plane_axis(self) -> None:
        with pytest.raises(UnsupportedGeometryError, match=r"x_mm is not uniformly spaced"):
            rasterise(structure_of([rectangle(0, 1, 0, 1, 0)]), grid_of([0.0], [0.0, 1.0], [0.0, 1.0, 3.0]))

    def test_grid_axis_checked(self) -> None:
        with pytest.raises(InvalidGridError, match=r"z_mm is not strictly monotonic"):
            rasterise(structure_of([rectangle(0, 1, 0, 1, 0)]), _FakeGrid())

    def test_structure_without_closed_contours_is_empty(self) -> None:
        point = Structure(1, "Iso", "ISOCENTER", (Contour(np.zeros((1, 3)), "POINT"),))
        mask = rasterise(point, grid_of([0.0], [0.0], [0.0]))
        assert mask.shape == (1, 1, 1) and not mask.any()


class _FakeGrid:
    """A grid-like object that skipped validation."""

    z_mm = np.array([0.0, 1.0, 1.0])
    y_mm = np.array([0.0])
    x_mm = np.array([0.0])
