"""Dosimetry stage scoring: points the centre's grid does not reach count as failures; histogram and parameters.

Truth is analytic: a uniform dose of 10 Gy compared with itself has gamma 0 at every point; a centre grid covering
only part of the reference leaves the rest unreached, a count known from the geometry alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from qa_checks.dosimetry import score_dosimetry
from qa_checks.geometry import DoseGrid


def _grid(nz: int, ny: int, nx: int, *, spacing: float = 2.0, x0: float = 0.0, value: float = 10.0) -> DoseGrid:
    z = np.arange(nz) * spacing
    y = np.arange(ny) * spacing
    x = x0 + np.arange(nx) * spacing
    return DoseGrid(np.full((nz, ny, nx), value), z, y, x)


class TestScoreDosimetry:
    def test_identical_doses_pass_everywhere(self) -> None:
        ref = _grid(6, 6, 6)
        score = score_dosimetry(ref, ref, dose_percent=3, distance_mm=2)
        values = {m.metric: m.value for m in score.measurements}
        assert score.pass_rate_percent == 100.0
        assert values["gamma_points_evaluated"] == 216 and values["gamma_points_not_reached"] == 0
        assert values["gamma_mean"] == 0.0
        histogram = next(m for m in score.measurements if m.metric == "gamma_histogram")
        assert histogram.parameters["bins"]["0-0.25"] == 216 and sum(histogram.parameters["bins"].values()) == 216
        assert histogram.parameters["dose_percent"] == 3 and histogram.parameters["distance_mm"] == 2
        assert score.warnings == ()

    def test_points_beyond_the_centre_grid_count_as_failures(self) -> None:
        # Reference x = 0..22 mm (12 columns); the centre's grid covers x = 0..10 mm only. The search reaches
        # 2 x DTA = 4 mm beyond its edge (trilinear interpolation is defined only inside the grid), so reference
        # columns at x <= 14 mm are reached (8 of 12) and 6 * 6 * 4 = 144 points are not. The dose is uniform, so
        # gamma is the distance to the grid edge over the DTA: 0 inside, 1 at x = 12 mm (passes), 2 at 14 mm.
        ref = _grid(6, 6, 12)
        centre = _grid(6, 6, 6)
        score = score_dosimetry(ref, centre, dose_percent=3, distance_mm=2)
        values = {m.metric: m.value for m in score.measurements}
        assert values["gamma_points_evaluated"] == 6 * 6 * 12
        assert values["gamma_points_not_reached"] == 6 * 6 * 4
        assert score.pass_rate_percent == pytest.approx(100.0 * 7 / 12)
        assert values["gamma_pass_rate_reached_percent"] == pytest.approx(100.0 * 7 / 8)
        assert len(score.warnings) == 1 and "count as failures" in score.warnings[0]
        assert "144 of 432 reference points" in score.warnings[0]

    def test_uniform_scale_beyond_the_criterion_fails_everywhere(self) -> None:
        # A uniform dose scaled by 5% differs by 5% of the maximum everywhere; no point within reach has the
        # reference dose, so gamma = 5 / 3 at every point (global 3%, uniform field: the distance term adds 0).
        ref = _grid(5, 5, 5)
        centre = _grid(5, 5, 5, value=10.5)
        score = score_dosimetry(ref, centre, dose_percent=3, distance_mm=2)
        values = {m.metric: m.value for m in score.measurements}
        assert score.pass_rate_percent == 0.0
        assert values["gamma_mean"] == pytest.approx(5 / 3, rel=1e-5)
