"""Surface metrics: analytic spheres, invariances, empty masks, errors, and agreement with DeepMind's package."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.contours import (
    SurfaceMetrics,
    centroid_distance_mm,
    contour_length_table,
    surface_metrics,
    surfel_area_table,
    volume_ratio,
)

Mask = npt.NDArray[np.bool_]

# (z, y, x) spacings in mm
SPACINGS = {"isotropic": (1.0, 1.0, 1.0), "anisotropic": (2.0, 0.8, 1.1)}


def ellipsoid(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    centre_mm: tuple[float, float, float],
    radii_mm: tuple[float, float, float],
) -> Mask:
    """Voxels whose centre (index × spacing, (z, y, x) mm) is inside the ellipsoid."""
    zz, yy, xx = (np.arange(n) * s for n, s in zip(shape, spacing_mm, strict=True))
    z, y, x = np.meshgrid(zz, yy, xx, indexing="ij")
    (cz, cy, cx), (rz, ry, rx) = centre_mm, radii_mm
    return np.asarray(((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0)


def sphere(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    centre_mm: tuple[float, float, float],
    radius_mm: float,
) -> Mask:
    return ellipsoid(shape, spacing_mm, centre_mm, (radius_mm,) * 3)


def grid_shape(spacing_mm: tuple[float, float, float], extent_mm: float) -> tuple[int, int, int]:
    sz, sy, sx = spacing_mm
    return (math.ceil(extent_mm / sz), math.ceil(extent_mm / sy), math.ceil(extent_mm / sx))


def voxel_diagonal(spacing_mm: tuple[float, float, float]) -> float:
    return float(np.linalg.norm(spacing_mm))


def shifted_sphere_mean_distance(radius_mm: float, shift_mm: float) -> float:
    """Mean over sphere A's surface of the distance to sphere B (same radius, centre shifted by s): the
    distance from a point at polar angle θ is |√(r² + s² − 2rs cosθ) − r|, averaged over cosθ uniform in
    [-1, 1] (area element of a sphere). Integrated numerically to 1e-9."""
    t = np.linspace(-1.0, 1.0, 200_001)
    f = np.abs(np.sqrt(radius_mm**2 + shift_mm**2 - 2 * radius_mm * shift_mm * t) - radius_mm)
    return float(np.trapezoid(f, t) / 2.0)


class TestAnalyticSpheres:
    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_concentric_spheres(self, spacing: tuple[float, float, float]) -> None:
        # Sphere r vs sphere r + d, same centre: every point of either surface is d from the other, so
        # Hausdorff = HD95 = MSD = d. Voxelisation moves each surfel by up to half a voxel diagonal on each
        # surface, so the tolerance is one voxel diagonal.
        r, d = 15.0, 4.0
        shape = grid_shape(spacing, 50.0)
        centre = (25.3, 24.6, 25.1)
        inner = sphere(shape, spacing, centre, r)
        outer = sphere(shape, spacing, centre, r + d)
        m = surface_metrics(inner, outer, spacing_mm=spacing, tolerance_mm=1.0)
        tol = voxel_diagonal(spacing)
        assert m.hausdorff_mm == pytest.approx(d, abs=tol)
        assert m.hd95_mm == pytest.approx(d, abs=tol)
        assert m.mean_surface_distance_mm == pytest.approx(d, abs=tol)
        # Areas: marching cubes on a binary (staircase) sphere always overestimates 4πr², and does not
        # converge with finer voxels: by 8-9 % on 1 mm voxels and 13-14 % on (2, 0.8, 1.1) mm, for r = 8-25 mm.
        # One-sided bound: at least the sphere's area and at most 15 % more.
        for area, radius in ((m.reference_area_mm2, r), (m.evaluated_area_mm2, r + d)):
            assert 4 * np.pi * radius**2 <= area <= 1.15 * 4 * np.pi * radius**2

    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_surface_dice_and_apl_at_both_sides_of_the_gap(self, spacing: tuple[float, float, float]) -> None:
        # Gap d between concentric surfaces: with τ above d + one voxel diagonal every surfel is within τ
        # (surface Dice 1); with τ below d − one diagonal none is (surface Dice 0, and as the in-plane gap
        # between the circles of a slice is at least d, APL = the whole reference length). The in-plane gap
        # is largest on the slice through the inner sphere's pole, √((r + d)² − r²): with τ above that plus a
        # diagonal, APL is 0.
        r, d = 15.0, 5.0
        shape = grid_shape(spacing, 50.0)
        centre = (25.3, 24.6, 25.1)
        inner = sphere(shape, spacing, centre, r)
        outer = sphere(shape, spacing, centre, r + d)
        diag = voxel_diagonal(spacing)
        loose = surface_metrics(inner, outer, spacing_mm=spacing, tolerance_mm=d + diag)
        assert loose.surface_dice == 1.0
        pole_gap = math.sqrt((r + d) ** 2 - r**2)
        assert surface_metrics(inner, outer, spacing_mm=spacing, tolerance_mm=pole_gap + diag).added_path_length_mm == 0
        tight = surface_metrics(inner, outer, spacing_mm=spacing, tolerance_mm=d - diag)
        assert tight.surface_dice == 0.0
        assert tight.added_path_length_mm == tight.reference_contour_length_mm

    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_reference_contour_length_is_sum_of_circle_perimeters(self, spacing: tuple[float, float, float]) -> None:
        # Oracle: Σ over slices of 2π √(r² − z_k²). Marching squares on a voxelised (staircase) circle
        # overestimates its perimeter, by 5-6.5 % for r = 8-25 mm on these spacings; one-sided bound: ≤ 8 %.
        r = 15.0
        shape = grid_shape(spacing, 40.0)
        centre = (20.3, 19.6, 20.1)
        mask = sphere(shape, spacing, centre, r)
        m = surface_metrics(mask, mask, spacing_mm=spacing)
        z = np.arange(shape[0]) * spacing[0] - centre[0]
        expected = float(np.sum(2 * np.pi * np.sqrt(np.clip(r**2 - z**2, 0, None))))
        assert expected <= m.reference_contour_length_mm <= 1.08 * expected
        assert m.added_path_length_mm == 0.0
        assert m.hausdorff_mm == 0.0 and m.surface_dice == 1.0

    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    @pytest.mark.parametrize("axis", [0, 1, 2])
    def test_shifted_sphere(self, spacing: tuple[float, float, float], axis: int) -> None:
        # Two spheres of radius r, centres s apart: Hausdorff = s (at the poles on the shift axis); the mean
        # surface distance is the integral of shifted_sphere_mean_distance. Tolerance: one voxel diagonal.
        r, s = 12.0, 5.0
        shape = grid_shape(spacing, 50.0)
        c = (22.3, 22.6, 22.1)
        cz, cy, cx = (v + (s if i == axis else 0.0) for i, v in enumerate(c))
        a = sphere(shape, spacing, c, r)
        b = sphere(shape, spacing, (cz, cy, cx), r)
        m = surface_metrics(a, b, spacing_mm=spacing)
        tol = voxel_diagonal(spacing)
        assert m.hausdorff_mm == pytest.approx(s, abs=tol)
        assert m.mean_surface_distance_mm == pytest.approx(shifted_sphere_mean_distance(r, s), abs=tol)


def _pair(spacing: tuple[float, float, float]) -> tuple[Mask, Mask]:
    shape = grid_shape(spacing, 48.0)
    a = ellipsoid(shape, spacing, (24.0, 23.0, 22.0), (14.0, 10.0, 12.0))
    b = ellipsoid(shape, spacing, (25.0, 24.5, 21.0), (12.0, 11.0, 13.0))
    b[: shape[0] // 3, : shape[1] // 2, : shape[2] // 2] = False  # a bite out of b: asymmetric distances
    return a, b


class TestInvariances:
    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_swapping_arguments(self, spacing: tuple[float, float, float]) -> None:
        a, b = _pair(spacing)
        ab = surface_metrics(a, b, spacing_mm=spacing)
        ba = surface_metrics(b, a, spacing_mm=spacing)
        # Symmetric by definition; the sums are the same two terms in the other order, so exactly equal.
        assert ab.hausdorff_mm == ba.hausdorff_mm
        assert ab.hd95_mm == ba.hd95_mm
        assert ab.surface_dice == ba.surface_dice
        assert ab.mean_surface_distance_mm == pytest.approx(ba.mean_surface_distance_mm, rel=1e-12)
        assert ab.mean_distance_reference_to_evaluated_mm == ba.mean_distance_evaluated_to_reference_mm
        assert ab.reference_area_mm2 == ba.evaluated_area_mm2

    def test_added_path_length_is_directional(self) -> None:
        # evaluated = reference plus a far blob: nothing of the reference needs adding (APL 0), but the blob's
        # contour must be added to turn the reference into the evaluated (APL > 0, = the blob's contours).
        spacing = (2.0, 1.0, 1.0)
        shape = (30, 80, 80)
        reference = sphere(shape, spacing, (30.0, 30.0, 30.0), 12.0)
        blob = sphere(shape, spacing, (30.0, 30.0, 65.0), 6.0)
        evaluated = reference | blob
        forward = surface_metrics(reference, evaluated, spacing_mm=spacing)
        backward = surface_metrics(evaluated, reference, spacing_mm=spacing)
        blob_length = surface_metrics(blob, blob, spacing_mm=spacing).reference_contour_length_mm
        assert forward.added_path_length_mm == 0.0
        assert backward.added_path_length_mm == pytest.approx(blob_length, rel=1e-12)

    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_translation_by_whole_voxels(self, spacing: tuple[float, float, float]) -> None:
        a, b = _pair(spacing)
        pad = ((3, 4), (2, 5), (6, 1))
        moved = surface_metrics(np.pad(a, pad), np.pad(b, pad), spacing_mm=spacing)
        assert moved == surface_metrics(a, b, spacing_mm=spacing)

    @pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
    def test_doubling_the_spacing_doubles_distances(self, spacing: tuple[float, float, float]) -> None:
        a, b = _pair(spacing)
        one = surface_metrics(a, b, spacing_mm=spacing, tolerance_mm=1.5)
        double = tuple(2 * s for s in spacing)
        two = surface_metrics(a, b, spacing_mm=double, tolerance_mm=3.0)
        # Multiplying by 2 is exact in binary floating point; the sums may round differently: rel 1e-12.
        for name in ("hausdorff_mm", "hd95_mm", "mean_surface_distance_mm", "added_path_length_mm"):
            assert getattr(two, name) == pytest.approx(2 * getattr(one, name), rel=1e-12), name
        assert two.reference_area_mm2 == pytest.approx(4 * one.reference_area_mm2, rel=1e-12)
        assert two.surface_dice == pytest.approx(one.surface_dice, rel=1e-12)


class TestEmptyMasks:
    def test_evaluated_empty(self) -> None:
        a, _ = _pair((1.0, 1.0, 1.0))
        m = surface_metrics(a, np.zeros_like(a), spacing_mm=(1.0, 1.0, 1.0))
        assert m.hausdorff_mm == math.inf and m.hd95_mm == math.inf and m.mean_surface_distance_mm == math.inf
        assert m.mean_distance_reference_to_evaluated_mm == math.inf
        assert math.isnan(m.mean_distance_evaluated_to_reference_mm)
        assert m.surface_dice == 0.0
        assert m.added_path_length_mm == m.reference_contour_length_mm > 0
        assert m.evaluated_area_mm2 == 0.0

    def test_reference_empty(self) -> None:
        a, _ = _pair((1.0, 1.0, 1.0))
        m = surface_metrics(np.zeros_like(a), a, spacing_mm=(1.0, 1.0, 1.0))
        assert m.hausdorff_mm == math.inf and m.surface_dice == 0.0
        assert m.added_path_length_mm == 0.0 and m.reference_contour_length_mm == 0.0

    def test_both_empty(self) -> None:
        empty = np.zeros((4, 5, 6), dtype=bool)
        m = surface_metrics(empty, empty, spacing_mm=(1.0, 1.0, 1.0))
        for name in ("hausdorff_mm", "hd95_mm", "mean_surface_distance_mm", "surface_dice"):
            assert math.isnan(getattr(m, name)), name
        assert m.added_path_length_mm == 0.0

    def test_mask_touching_the_array_edge_is_closed(self) -> None:
        # The mask is surrounded by background: a full array is a closed box, whose surfel area is the
        # box surface measured through the outer voxel centres' half-voxel ring: exactly that of the
        # padded box, and distances to itself are zero.
        full = np.ones((3, 4, 5), dtype=bool)
        m = surface_metrics(full, full, spacing_mm=(1.0, 1.0, 1.0))
        padded = np.pad(full, 2)
        assert m.reference_area_mm2 == surface_metrics(padded, padded, spacing_mm=(1.0, 1.0, 1.0)).reference_area_mm2
        assert m.hausdorff_mm == 0.0


class TestErrors:
    def test_shape_mismatch_names_both_shapes(self) -> None:
        with pytest.raises(ValueError, match=r"reference has shape \(2, 3, 4\) but evaluated has shape \(2, 3, 5\)"):
            surface_metrics(np.zeros((2, 3, 4), bool), np.zeros((2, 3, 5), bool), spacing_mm=(1, 1, 1))

    @pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -1.0, 1.0), (1.0, math.nan, 1.0)])
    def test_bad_spacing_is_named(self, spacing: tuple[float, ...]) -> None:
        mask = np.ones((2, 2, 2), bool)
        with pytest.raises(ValueError, match=r"spacing_mm must be 3 positive finite numbers.*got \("):
            surface_metrics(mask, mask, spacing_mm=spacing)

    @pytest.mark.parametrize("tolerance", [-1.0, math.inf])
    def test_bad_tolerance(self, tolerance: float) -> None:
        mask = np.ones((2, 2, 2), bool)
        with pytest.raises(ValueError, match=rf"tolerance_mm must be a finite number >= 0; got {tolerance}"):
            surface_metrics(mask, mask, spacing_mm=(1, 1, 1), tolerance_mm=tolerance)

    def test_not_boolean(self) -> None:
        with pytest.raises(TypeError, match=r"evaluated must be a boolean numpy array.*uint8"):
            surface_metrics(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), np.uint8), spacing_mm=(1, 1, 1))

    def test_not_3d(self) -> None:
        with pytest.raises(ValueError, match=r"masks must be 3-D \(z, y, x\); got shape \(4, 4\)"):
            surface_metrics(np.ones((4, 4), bool), np.ones((4, 4), bool), spacing_mm=(1, 1, 1))


class TestVolumeRatioAndCentroid:
    def test_volume_ratio_exact(self) -> None:
        a = np.zeros((4, 10, 10), bool)
        b = np.zeros((4, 10, 10), bool)
        a[1:3, 2:7, 2:7] = True  # 50 voxels
        b[1:3, 2:8, 2:7] = True  # 60 voxels
        assert volume_ratio(a, b) == 60 / 50
        assert volume_ratio(a, np.zeros_like(a)) == 0.0
        assert math.isnan(volume_ratio(np.zeros_like(a), b))

    def test_centroid_distance_anisotropic(self) -> None:
        # Two boxes whose centroids differ by (1, 2, 3) voxels: distance √((1·2)² + (2·0.5)² + (3·1)²) mm.
        a = np.zeros((8, 10, 12), bool)
        b = np.zeros((8, 10, 12), bool)
        a[1:3, 1:4, 1:5] = True
        b[2:4, 3:6, 4:8] = True
        expected = math.sqrt(2.0**2 + 1.0**2 + 3.0**2)
        assert centroid_distance_mm(a, b, spacing_mm=(2.0, 0.5, 1.0)) == pytest.approx(expected, rel=1e-12)
        assert math.isnan(centroid_distance_mm(a, np.zeros_like(a), spacing_mm=(2.0, 0.5, 1.0)))

    def test_centroid_spacing_checked(self) -> None:
        a = np.ones((2, 2, 2), bool)
        with pytest.raises(ValueError, match=r"spacing_mm must be 3 positive finite numbers"):
            centroid_distance_mm(a, a, spacing_mm=(1.0, 1.0))


# ----------------------------------------------------------------------------------------------------------
# Agreement with DeepMind's surface-distance (the peer whose surfel definition we reproduce)


@pytest.fixture
def deepmind(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    sd: ModuleType = pytest.importorskip("surface_distance")
    # surface-distance 0.1 uses np.Inf / np.NaN for empty surfaces, removed in NumPy 2.
    monkeypatch.setattr(np, "Inf", np.inf, raising=False)
    monkeypatch.setattr(np, "NaN", np.nan, raising=False)
    return sd


AGREEMENT_CASES = {
    "isotropic-pair": ((1.0, 1.0, 1.0), 1.0),
    "anisotropic-pair": ((2.0, 0.8, 1.1), 2.0),
    "thick-slices": ((3.0, 0.9, 0.9), 2.5),
}


# surface-distance 0.1 imports from the scipy.ndimage.filters / .morphology namespaces, deprecated in SciPy.
@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
class TestAgreementWithDeepMind:
    @pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 1.3), (3.0, 0.977, 0.977)])
    def test_surfel_area_tables_equal(self, deepmind: ModuleType, spacing: tuple[float, float, float]) -> None:
        from surface_distance import lookup_tables

        # Same triangles, areas by cross product here and by scaled normals there: float rounding only.
        expected = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
        np.testing.assert_allclose(surfel_area_table(spacing), expected, rtol=1e-12, atol=1e-12)
        expected_2d = lookup_tables.create_table_neighbour_code_to_contour_length(spacing[1:])
        np.testing.assert_allclose(contour_length_table(spacing[1:]), expected_2d, rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("case", AGREEMENT_CASES.values(), ids=AGREEMENT_CASES.keys())
    def test_metrics_equal(self, deepmind: ModuleType, case: tuple[tuple[float, float, float], float]) -> None:
        spacing, tolerance = case
        a, b = _pair(spacing)
        ours = surface_metrics(a, b, spacing_mm=spacing, tolerance_mm=tolerance)
        _assert_matches_deepmind(deepmind, ours, a, b, spacing, tolerance)

    def test_hd95_is_the_larger_directional_percentile(self, deepmind: ModuleType) -> None:
        # evaluated = reference plus a protrusion: the reference surface is entirely on the evaluated one
        # (distances 0) while > 5 % of the evaluated area is far from the reference. The directional maximum
        # (DeepMind's definition, ours) then differs from the percentile of the pooled distances.
        spacing = (2.0, 1.0, 1.0)
        shape = (24, 60, 60)
        reference = sphere(shape, spacing, (24.0, 30.0, 30.0), 10.0)
        evaluated = reference.copy()
        evaluated[8:16, 26:34, 30:58] = True  # a 16 × 8 × 28 mm bar sticking out along x
        ours = surface_metrics(reference, evaluated, spacing_mm=spacing)
        _assert_matches_deepmind(deepmind, ours, reference, evaluated, spacing, 2.0)
        d = deepmind.compute_surface_distances(reference, evaluated, spacing)
        distances = np.concatenate([d["distances_gt_to_pred"], d["distances_pred_to_gt"]])
        areas = np.concatenate([d["surfel_areas_gt"], d["surfel_areas_pred"]])
        order = np.argsort(distances)
        pooled = distances[order][np.searchsorted(np.cumsum(areas[order]) / areas.sum(), 0.95)]
        assert ours.hd95_mm > pooled  # 17.1 mm vs 16.4 mm here

    def test_random_blobs_touching_the_edge(self, deepmind: ModuleType) -> None:
        rng = np.random.default_rng(1809_04430)
        spacing = (2.0, 0.9, 1.2)
        for _ in range(3):
            a = rng.random((12, 20, 18)) < 0.55
            b = rng.random((12, 20, 18)) < 0.55
            ours = surface_metrics(a, b, spacing_mm=spacing, tolerance_mm=1.0)
            _assert_matches_deepmind(deepmind, ours, a, b, spacing, 1.0)

    def test_added_path_length_matches_per_slice_2d(self, deepmind: ModuleType) -> None:
        # APL rebuilt from DeepMind's 2-D contour elements slice by slice: reference element lengths whose
        # distance to the evaluated contour on the slice exceeds τ (inf when the slice is empty).
        spacing, tolerance = (2.0, 0.8, 1.1), 1.5
        a, b = _pair(spacing)
        b[5] = False  # a slice where the evaluated contour is missing
        ours = surface_metrics(a, b, spacing_mm=spacing, tolerance_mm=tolerance)
        apl = length = 0.0
        for k in range(a.shape[0]):
            if not a[k].any():
                continue
            d = deepmind.compute_surface_distances(a[k], b[k], spacing[1:])
            apl += float(d["surfel_areas_gt"][d["distances_gt_to_pred"] > tolerance].sum())
            length += float(d["surfel_areas_gt"].sum())
        assert ours.reference_contour_length_mm == pytest.approx(length, rel=1e-12)
        assert ours.added_path_length_mm == pytest.approx(apl, rel=1e-12)
        assert ours.added_path_length_mm > 0


def _assert_matches_deepmind(
    sd: ModuleType, ours: SurfaceMetrics, a: Mask, b: Mask, spacing: tuple[float, float, float], tolerance: float
) -> None:
    d = sd.compute_surface_distances(a, b, spacing)
    mean_ab, mean_ba = sd.compute_average_surface_distance(d)
    area_a, area_b = float(d["surfel_areas_gt"].sum()), float(d["surfel_areas_pred"].sum())
    # Same surfels, same distances; sums in another order: equal to float rounding (rel 1e-9).
    rel = 1e-9
    assert ours.hausdorff_mm == pytest.approx(sd.compute_robust_hausdorff(d, 100), rel=rel)
    assert ours.hd95_mm == pytest.approx(sd.compute_robust_hausdorff(d, 95), rel=rel)
    assert ours.mean_distance_reference_to_evaluated_mm == pytest.approx(mean_ab, rel=rel)
    assert ours.mean_distance_evaluated_to_reference_mm == pytest.approx(mean_ba, rel=rel)
    pooled = (mean_ab * area_a + mean_ba * area_b) / (area_a + area_b)
    assert ours.mean_surface_distance_mm == pytest.approx(pooled, rel=rel)
    assert ours.surface_dice == pytest.approx(sd.compute_surface_dice_at_tolerance(d, tolerance), rel=rel)
    assert ours.reference_area_mm2 == pytest.approx(area_a, rel=rel)
    assert ours.evaluated_area_mm2 == pytest.approx(area_b, rel=rel)
