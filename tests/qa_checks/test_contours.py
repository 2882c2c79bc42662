"""Dice and Jaccard: exact by voxel count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qa_checks.contours import dice, jaccard


def _masks() -> tuple[np.ndarray, np.ndarray]:
    reference = np.zeros((4, 10, 10), dtype=bool)
    evaluated = np.zeros((4, 10, 10), dtype=bool)
    reference[1:3, 2:7, 2:7] = True  # 2 × 5 × 5 = 50 voxels
    evaluated[1:3, 4:9, 2:7] = True  # 50 voxels, overlapping rows 4-6: 2 × 3 × 5 = 30
    return reference, evaluated


class TestDice:
    def test_exact_by_voxel_count(self) -> None:
        reference, evaluated = _masks()
        assert dice(reference, evaluated) == 2 * 30 / (50 + 50)

    def test_symmetric(self) -> None:
        reference, evaluated = _masks()
        assert dice(reference, evaluated) == dice(evaluated, reference)

    def test_identical_and_disjoint(self) -> None:
        reference, _ = _masks()
        assert dice(reference, reference) == 1.0
        assert dice(reference, ~reference) == 0.0

    def test_one_empty(self) -> None:
        reference, _ = _masks()
        assert dice(reference, np.zeros_like(reference)) == 0.0

    def test_both_empty_is_nan(self) -> None:
        empty = np.zeros((2, 2, 2), dtype=bool)
        assert math.isnan(dice(empty, empty))

    def test_shape_mismatch_names_both_shapes(self) -> None:
        with pytest.raises(ValueError, match=r"reference has shape \(2, 3, 4\) but evaluated has shape \(2, 3, 5\)"):
            dice(np.zeros((2, 3, 4), bool), np.zeros((2, 3, 5), bool))

    def test_not_boolean(self) -> None:
        with pytest.raises(TypeError, match=r"evaluated must be a boolean numpy array.*float64"):
            dice(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2)))


class TestJaccard:
    def test_exact_by_voxel_count(self) -> None:
        reference, evaluated = _masks()
        assert jaccard(reference, evaluated) == 30 / (50 + 50 - 30)

    def test_relation_to_dice(self) -> None:
        reference, evaluated = _masks()
        d, j = dice(reference, evaluated), jaccard(reference, evaluated)
        assert j == pytest.approx(d / (2 - d), rel=1e-12)  # identity J = D / (2 - D); float rounding only

    def test_both_empty_is_nan(self) -> None:
        empty = np.zeros((2, 2, 2), dtype=bool)
        assert math.isnan(jaccard(empty, empty))

    def test_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match=r"reference has shape \(1, 1, 1\) but evaluated has shape \(1, 1\)"):
            jaccard(np.zeros((1, 1, 1), bool), np.zeros((1, 1), bool))
