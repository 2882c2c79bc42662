"""overlap_metrics and centroid_distance_mm equal the plain-numpy definitions, value for value."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.contours import OverlapMetrics, centroid_distance_mm, dice, jaccard, overlap_metrics, volume_ratio

Mask = npt.NDArray[np.bool_]


def plain(reference: Mask, evaluated: Mask, spacing: tuple[float, ...]) -> dict[str, float]:
    """The definitions written out with nonzero and full-size counts (independent of the code under test)."""
    a = int(reference.sum())
    b = int(evaluated.sum())
    both = int(np.logical_and(reference, evaluated).sum())
    nan = float("nan")
    if a and b:
        c_ref = np.array([idx.mean() for idx in np.nonzero(reference)]) * np.asarray(spacing)
        c_ev = np.array([idx.mean() for idx in np.nonzero(evaluated)]) * np.asarray(spacing)
        centroid = float(np.linalg.norm(c_ref - c_ev))
    else:
        centroid = nan
    return {
        "reference_voxels": a,
        "evaluated_voxels": b,
        "intersection_voxels": both,
        "dice": 2.0 * both / (a + b) if a + b else nan,
        "jaccard": both / (a + b - both) if a + b - both else nan,
        "volume_ratio": b / a if a else nan,
        "centroid_distance_mm": centroid,
    }


def same(x: float, y: float) -> bool:
    """Equal bit for bit, nan equal to nan."""
    return (math.isnan(x) and math.isnan(y)) or x == y


def random_blob(rng: np.random.Generator, shape: tuple[int, ...], density: float) -> Mask:
    """Random voxels inside a random sub-box: irregular masks with bounding boxes anywhere, including edges."""
    mask = np.zeros(shape, dtype=bool)
    lo = [int(rng.integers(0, n)) for n in shape]
    hi = [int(rng.integers(low + 1, n + 1)) for low, n in zip(lo, shape, strict=True)]
    box = tuple(slice(low, high) for low, high in zip(lo, hi, strict=True))
    mask[box] = rng.random(mask[box].shape) < density
    return mask


CASES = [((7, 13, 11), (2.0, 0.977, 0.977)), ((1, 9, 5), (3.0, 1.0, 0.5)), ((20, 6), (1.5, 2.5)), ((17,), (0.7,))]


class TestOverlapMetricsEqualsDefinitions:
    @pytest.mark.parametrize(("shape", "spacing"), CASES)
    @pytest.mark.parametrize("seed", range(12))
    def test_random_masks(self, shape: tuple[int, ...], spacing: tuple[float, ...], seed: int) -> None:
        rng = np.random.default_rng(seed)
        density = (0.02, 0.3, 0.9, 1.0)[seed % 4]
        reference = random_blob(rng, shape, density)
        evaluated = random_blob(rng, shape, density) if seed % 6 else reference.copy()
        got = overlap_metrics(reference, evaluated, spacing_mm=spacing)
        want = plain(reference, evaluated, spacing)
        for name, value in want.items():
            assert same(getattr(got, name), value), name
        assert same(centroid_distance_mm(reference, evaluated, spacing_mm=spacing), want["centroid_distance_mm"])
        assert same(got.dice, dice(reference, evaluated))
        assert same(got.jaccard, jaccard(reference, evaluated))
        assert same(got.volume_ratio, volume_ratio(reference, evaluated))

    def test_large_offset_masks(self) -> None:
        # Index sums far from small integers: centroids must still match numpy's mean exactly.
        reference = np.zeros((40, 300, 310), dtype=bool)
        evaluated = np.zeros_like(reference)
        reference[3:37, 20:290, 5:300] = True
        evaluated[5:39, 31:299, 9:305] = np.random.default_rng(5).random((34, 268, 296)) < 0.7
        spacing = (2.0, 0.9765625, 0.9765625)
        got = overlap_metrics(reference, evaluated, spacing_mm=spacing)
        want = plain(reference, evaluated, spacing)
        for name, value in want.items():
            assert same(getattr(got, name), value), name

    def test_disjoint_boxes(self) -> None:
        reference = np.zeros((4, 8, 8), dtype=bool)
        evaluated = np.zeros_like(reference)
        reference[0, :2, :2] = True
        evaluated[3, 6:, 6:] = True
        got = overlap_metrics(reference, evaluated, spacing_mm=(2.0, 1.0, 1.0))
        assert got.intersection_voxels == 0 and got.dice == 0.0 and got.jaccard == 0.0
        assert got.centroid_distance_mm == pytest.approx(math.sqrt(6.0**2 + 6.0**2 + 6.0**2))

    def test_empty_masks(self) -> None:
        empty = np.zeros((3, 4, 5), dtype=bool)
        full = np.ones_like(empty)
        both_empty = overlap_metrics(empty, empty, spacing_mm=(1.0, 1.0, 1.0))
        assert isinstance(both_empty, OverlapMetrics)
        assert (both_empty.reference_voxels, both_empty.evaluated_voxels, both_empty.intersection_voxels) == (0, 0, 0)
        assert math.isnan(both_empty.dice) and math.isnan(both_empty.jaccard)
        assert math.isnan(both_empty.volume_ratio) and math.isnan(both_empty.centroid_distance_mm)
        one = overlap_metrics(empty, full, spacing_mm=(1.0, 1.0, 1.0))
        assert one.dice == 0.0 and math.isnan(one.volume_ratio) and math.isnan(one.centroid_distance_mm)
        other = overlap_metrics(full, empty, spacing_mm=(1.0, 1.0, 1.0))
        assert other.volume_ratio == 0.0 and other.evaluated_voxels == 0

    def test_non_contiguous_views(self) -> None:
        rng = np.random.default_rng(9)
        reference = rng.random((10, 12, 14)) < 0.4
        evaluated = rng.random((10, 12, 14)) < 0.4
        ref_view, ev_view = reference[::2, 1:, ::-1], evaluated[::2, 1:, ::-1]
        got = overlap_metrics(ref_view, ev_view, spacing_mm=(1.0, 2.0, 3.0))
        want = plain(ref_view, ev_view, (1.0, 2.0, 3.0))
        for name, value in want.items():
            assert same(getattr(got, name), value), name


class TestOverlapMetricsErrors:
    def test_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match=r"reference has shape \(2, 2, 2\) but evaluated has shape \(2, 2, 3\)"):
            overlap_metrics(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool), spacing_mm=(1, 1, 1))

    def test_not_boolean(self) -> None:
        with pytest.raises(TypeError, match="evaluated must be a boolean numpy array"):
            overlap_metrics(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), np.uint8), spacing_mm=(1, 1, 1))

    def test_bad_spacing(self) -> None:
        with pytest.raises(ValueError, match="spacing_mm must be 3 positive finite numbers"):
            overlap_metrics(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), spacing_mm=(1, 0, 1))
