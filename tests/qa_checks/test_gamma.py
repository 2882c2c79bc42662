"""3D gamma: analytic cases, invariances, threshold handling, recorded parameters and bad input.

Float tolerances: ``gamma_3d`` interpolates and compares doses in float32 (relative rounding about 6e-8). A dose
of at most 60 Gy is then exact to ~4e-6 Gy, which against a dose criterion of >= 0.2 Gy moves gamma by < 2e-5;
tests that expect an exact value use ``GAMMA_ATOL = 1e-4`` (five times that).
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.errors import InvalidGridError
from qa_checks.gamma import DEFAULT_MAX_SEARCH_FACTOR, DEFAULT_SEARCH_FRACTION, GammaResult, gamma_3d
from qa_checks.geometry import DoseGrid

FloatArray = npt.NDArray[np.float64]

GAMMA_ATOL = 1e-4
"""Absolute tolerance on gamma for float32 rounding (see the module docstring)."""


def axis_mm(n: int, spacing_mm: float, origin_mm: float = 0.0) -> FloatArray:
    return origin_mm + spacing_mm * np.arange(n, dtype=np.float64)


def sabr_like_grid(
    shape_zyx: tuple[int, int, int] = (24, 30, 30),
    spacing_mm: float | tuple[float, float, float] = 2.0,
    *,
    origin_zyx_mm: tuple[float, float, float] | None = None,
    centre_zyx_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    noise_fraction: float = 0.0,
    rng: np.random.Generator | None = None,
    prescription_gy: float = 60.0,
    radius_mm: float = 8.0,
) -> DoseGrid:
    """A SABR-like dose: a spheroid with a steep sigmoid edge (2 mm) and a low-dose bath, on a (z, y, x) grid
    centred on 0 by default. ``centre_zyx_mm`` moves the dose (a shift), ``scale`` scales it, and
    ``noise_fraction`` adds Gaussian noise of that fraction of the prescription (clipped at 0 Gy)."""
    spacings = (spacing_mm,) * 3 if isinstance(spacing_mm, float | int) else spacing_mm
    if origin_zyx_mm is None:
        origin_zyx_mm = tuple(-(n - 1) / 2 * s for n, s in zip(shape_zyx, spacings, strict=True))  # type: ignore[assignment]
    assert origin_zyx_mm is not None
    z, y, x = (axis_mm(n, s, o) for n, s, o in zip(shape_zyx, spacings, origin_zyx_mm, strict=True))
    zz, yy, xx = np.meshgrid(z - centre_zyx_mm[0], y - centre_zyx_mm[1], x - centre_zyx_mm[2], indexing="ij")
    radius = np.sqrt(zz**2 + (yy / 1.2) ** 2 + (xx / 0.9) ** 2)
    core = 1.0 / (1.0 + np.exp((radius - radius_mm) / 2.0))
    bath = np.exp(-np.maximum(radius - radius_mm, 0.0) / 10.0)
    dose = prescription_gy * scale * (0.75 * core + 0.25 * bath)
    if noise_fraction:
        assert rng is not None
        dose = np.clip(dose + rng.normal(0.0, noise_fraction * prescription_gy, dose.shape), 0.0, None)
    return DoseGrid(dose, z, y, x)


def recalculated_grid(
    reference: DoseGrid,
    spacing_mm: float,
    offset_zyx_mm: tuple[float, float, float],
    *,
    margin_mm: float = 5.0,
    **dose: object,
) -> DoseGrid:
    """The SABR-like dose (``sabr_like_grid`` options in ``dose``) on another grid, as a centre's recalculation:
    ``spacing_mm`` on every axis, covering the reference's box plus ``margin_mm``, with its origin moved off the
    reference lattice by ``offset_zyx_mm``."""
    origin = tuple(
        float(axis[0]) - margin_mm + offset
        for axis, offset in zip((reference.z_mm, reference.y_mm, reference.x_mm), offset_zyx_mm, strict=True)
    )
    shape = tuple(
        int(np.ceil((float(axis[-1]) + margin_mm - start) / spacing_mm)) + 1
        for axis, start in zip((reference.z_mm, reference.y_mm, reference.x_mm), origin, strict=True)
    )
    return sabr_like_grid(shape, spacing_mm, origin_zyx_mm=origin, **dose)  # type: ignore[arg-type]


def uniform_grid(dose_gy: float, shape: tuple[int, int, int] = (8, 9, 10), spacing_mm: float = 2.0) -> DoseGrid:
    z, y, x = (axis_mm(n, spacing_mm) for n in shape)
    return DoseGrid(np.full(shape, dose_gy), z, y, x)


def evaluated_values(result: GammaResult) -> npt.NDArray[np.float32]:
    return result.gamma[np.isfinite(result.gamma)]


class TestIdentical:
    @pytest.mark.parametrize(("dose_percent", "distance_mm"), [(3.0, 3.0), (3.0, 2.0), (2.0, 1.0)])
    def test_gamma_zero_everywhere_evaluated(self, dose_percent: float, distance_mm: float) -> None:
        grid = sabr_like_grid(noise_fraction=0.01, rng=np.random.default_rng(1))
        result = gamma_3d(grid, grid, dose_percent=dose_percent, distance_mm=distance_mm)
        assert result.pass_rate_percent == 100.0
        assert result.mean_gamma == 0.0
        # the zero-distance position interpolates exactly at the node: no rounding at all
        assert np.all(evaluated_values(result) == 0.0)
        assert result.n_evaluated == int(np.count_nonzero(grid.values_gy >= 0.1 * grid.values_gy.max()))
        assert result.n_passed == result.n_evaluated
        assert result.n_unreachable == 0


class TestAnalytic:
    @pytest.mark.parametrize("scale", [1.01, 1.02, 0.97, 1.05])
    @pytest.mark.parametrize("dose_percent", [2.0, 3.0])
    @pytest.mark.parametrize("local", [False, True])
    def test_uniform_scaling(self, scale: float, dose_percent: float, local: bool) -> None:
        # Uniform dose: moving never changes the evaluated dose, so the minimum is at zero distance and
        # gamma = |s - 1| * 100 / dose_percent (global: of the maximum = the dose; local: of the dose itself).
        reference = uniform_grid(10.0)
        evaluated = uniform_grid(10.0 * scale)
        result = gamma_3d(reference, evaluated, dose_percent=dose_percent, distance_mm=2.0, local=local)
        expected = abs(scale - 1.0) * 100.0 / dose_percent
        assert result.n_evaluated == reference.values_gy.size
        np.testing.assert_allclose(result.gamma, expected, atol=GAMMA_ATOL, rtol=0)
        if abs(expected - 1.0) > GAMMA_ATOL:  # 2% at 2% is exactly on the pass/fail edge: rounding decides
            assert result.pass_rate_percent == (100.0 if expected < 1.0 else 0.0)

    @pytest.mark.parametrize("shift_mm", [0.5, 1.0, 2.0, -1.5])
    @pytest.mark.parametrize(("dose_percent", "distance_mm"), [(3.0, 2.0), (3.0, 3.0), (2.0, 1.0)])
    def test_shifted_linear_gradient(self, shift_mm: float, dose_percent: float, distance_mm: float) -> None:
        # D(x) = 30 + g x Gy along x; evaluated = D(x - shift). Then De(r + o) - Dr(r) = g (o_x - shift), and
        # the continuous minimum of |o|²/DTA² + g² (o_x - shift)²/ΔD² is gamma² = shift² / (DTA² + (ΔD / g)²).
        # Search positions are discrete, so gamma can only be larger, and the shells put positions on the x axis
        # at every multiple k*s of the step s, so it is at most min_k of the same quadratic at o_x = k*s.
        g = 2.0
        z, y, x = axis_mm(7, 2.0, -6.0), axis_mm(7, 2.0, -6.0), axis_mm(21, 1.0, -10.0)
        reference = DoseGrid(np.broadcast_to(30.0 + g * x, (7, 7, 21)).copy(), z, y, x)
        evaluated = DoseGrid(np.broadcast_to(30.0 + g * (x - shift_mm), (7, 7, 21)).copy(), z, y, x)
        result = gamma_3d(reference, evaluated, dose_percent=dose_percent, distance_mm=distance_mm)
        criterion_gy = dose_percent / 100.0 * float(reference.values_gy.max())
        analytic = abs(shift_mm) / math.sqrt(distance_mm**2 + (criterion_gy / g) ** 2)
        step = distance_mm / DEFAULT_SEARCH_FRACTION
        k = np.arange(-100, 101) * step
        on_axis = float(np.sqrt(np.min(k**2 / distance_mm**2 + g**2 * (k - shift_mm) ** 2 / criterion_gy**2)))
        # away from the x edges (where positions towards the minimum would be outside the grid)
        interior = result.gamma[:, :, 6:-6]
        assert np.all(np.isfinite(interior))
        assert interior.min() >= analytic - GAMMA_ATOL
        assert interior.max() <= on_axis + GAMMA_ATOL
        # the bracket is tight: a quadratic sampled every s is within (s/2)² times its curvature of its minimum
        assert on_axis**2 - analytic**2 <= (step / 2) ** 2 * (1 / distance_mm**2 + g**2 / criterion_gy**2) + 1e-12

    def test_cap_at_max_gamma(self) -> None:
        reference = uniform_grid(10.0)
        evaluated = uniform_grid(12.0)  # 20% high: gamma 20/3 = 6.67 at 3%
        result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0, max_gamma=2.0)
        np.testing.assert_array_equal(result.gamma, np.float32(2.0))
        assert result.parameters.max_gamma == 2.0


class TestInvariance:
    def test_criteria_scaling(self) -> None:
        # gamma(k dD, k DTA) = gamma(dD, DTA) / k over the same search positions: keep the step fixed and the
        # search radius large, so only the float32 rounding differs (noise makes the minimum land anywhere).
        reference = sabr_like_grid()
        evaluated = sabr_like_grid(
            centre_zyx_mm=(0.3, 1.0, -0.6), scale=1.02, noise_fraction=0.01, rng=np.random.default_rng(7)
        )
        base = gamma_3d(
            reference, evaluated, dose_percent=2.0, distance_mm=1.0, search_step_mm=0.1, max_search_distance_mm=30.0
        )
        for k in (1.5, 3.0):
            scaled = gamma_3d(
                reference,
                evaluated,
                dose_percent=2.0 * k,
                distance_mm=1.0 * k,
                search_step_mm=0.1,
                max_search_distance_mm=30.0,
            )
            # k * gamma carries k times the float32 rounding of the scaled gamma: still < GAMMA_ATOL for k <= 3
            np.testing.assert_allclose(scaled.gamma * k, base.gamma, atol=GAMMA_ATOL, rtol=0)

    @pytest.mark.parametrize("evaluated_spacing_mm", [2.0, 2.5])
    def test_translation_of_both_grids(self, evaluated_spacing_mm: float) -> None:
        # moving both grids (and the doses with them) by the same vector changes nothing but rounding
        move = (13.7, -5.2, 100.1)
        rng = np.random.default_rng(3)
        reference = sabr_like_grid()
        evaluated = sabr_like_grid(
            (20, 25, 25), evaluated_spacing_mm, centre_zyx_mm=(0.5, 1.0, 0.0), noise_fraction=0.01, rng=rng
        )

        def moved(grid: DoseGrid) -> DoseGrid:
            return DoseGrid(grid.values_gy, grid.z_mm + move[0], grid.y_mm + move[1], grid.x_mm + move[2])

        before = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0)
        after = gamma_3d(moved(reference), moved(evaluated), dose_percent=3.0, distance_mm=2.0)
        np.testing.assert_allclose(after.gamma, before.gamma, atol=GAMMA_ATOL, rtol=0)
        assert after.n_evaluated == before.n_evaluated

    @pytest.mark.parametrize("axis", [1, 2])
    def test_mirror_symmetry(self, axis: int) -> None:
        # a dose symmetric about y = 0 (x = 0), compared with a scaled copy: the gamma map is symmetric too.
        # The search positions are symmetric under y -> -y and x -> -x (not under z -> -z: the ring azimuths
        # are not symmetric about pi/2), so only those mirrors are tested.
        reference = sabr_like_grid((15, 21, 21))
        evaluated = sabr_like_grid((15, 21, 21), scale=1.04, radius_mm=8.5)
        result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0)
        np.testing.assert_allclose(result.gamma, np.flip(result.gamma, axis=axis), atol=GAMMA_ATOL, rtol=0)
        assert result.pass_rate_percent < 100.0  # not a trivial map

    def test_decreasing_axes_give_the_same_map(self) -> None:
        rng = np.random.default_rng(5)
        reference = sabr_like_grid()
        evaluated = sabr_like_grid(centre_zyx_mm=(0.0, 1.0, 0.0), noise_fraction=0.01, rng=rng)
        expected = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0).gamma

        def reversed_yx(grid: DoseGrid) -> DoseGrid:  # as an HFP dose would be stored
            return DoseGrid(grid.values_gy[:, ::-1, ::-1], grid.z_mm, grid.y_mm[::-1], grid.x_mm[::-1])

        result = gamma_3d(reversed_yx(reference), evaluated, dose_percent=3.0, distance_mm=2.0)
        np.testing.assert_allclose(result.gamma, expected[:, ::-1, ::-1], atol=GAMMA_ATOL, rtol=0)
        result = gamma_3d(reference, reversed_yx(evaluated), dose_percent=3.0, distance_mm=2.0)
        np.testing.assert_allclose(result.gamma, expected, atol=GAMMA_ATOL, rtol=0)

    def test_aligned_and_general_interpolation_agree(self) -> None:
        # The same evaluated dose on evenly spaced axes (shared-weight path) and on axes with one coordinate
        # moved by 1e-6 mm (per-point path): the positions differ by at most 1e-6 mm, i.e. < 1e-5 Gy here.
        rng = np.random.default_rng(11)
        reference = sabr_like_grid()
        evaluated = sabr_like_grid(centre_zyx_mm=(0.2, 1.0, 0.0), scale=1.02, noise_fraction=0.01, rng=rng)
        x = evaluated.x_mm.copy()
        x[3] += 1e-6
        uneven = DoseGrid(evaluated.values_gy, evaluated.z_mm, evaluated.y_mm, x)
        for dose_percent, distance_mm in ((3.0, 2.0), (2.0, 1.0)):
            even_result = gamma_3d(reference, evaluated, dose_percent=dose_percent, distance_mm=distance_mm)
            uneven_result = gamma_3d(reference, uneven, dose_percent=dose_percent, distance_mm=distance_mm)
            np.testing.assert_allclose(uneven_result.gamma, even_result.gamma, atol=GAMMA_ATOL, rtol=0)


GRID_PAIRS = [(3.0, 2.0), (3.0, 2.5), (2.0, 3.0), (2.5, 3.0), (2.0, 2.5)]
"""(reference, evaluated) spacings in mm of the non-aligned grid pairs tested."""


class TestOtherGrids:
    """Evaluated grids not aligned with the reference (other spacing, origin off the reference lattice)."""

    @staticmethod
    def linear_grid(
        axes: tuple[FloatArray, FloatArray, FloatArray], gradient: FloatArray, shift: FloatArray
    ) -> DoseGrid:
        z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
        dose = 40.0 + gradient[0] * (z - shift[0]) + gradient[1] * (y - shift[1]) + gradient[2] * (x - shift[2])
        return DoseGrid(np.broadcast_to(dose, tuple(a.size for a in axes)).copy(), *axes)

    @pytest.mark.parametrize(("reference_mm", "evaluated_mm"), GRID_PAIRS)
    @pytest.mark.parametrize(("dose_percent", "distance_mm"), [(3.0, 2.0), (2.0, 1.0)])
    def test_linear_dose_gives_the_same_map_on_any_grid(
        self, reference_mm: float, evaluated_mm: float, dose_percent: float, distance_mm: float
    ) -> None:
        # Trilinear interpolation reproduces a dose linear in z, y and x exactly, so De(r'), and with it gamma,
        # cannot depend on the grid the evaluated dose is sampled on: the map on another grid must equal the map
        # on a grid with the reference's lattice. Both grids extend past every search position. The continuous
        # minimum of |o|²/DTA² + (g.(o - shift))²/ΔD² is gamma = |g.shift| / sqrt(ΔD² + |g|² DTA²), a lower bound.
        gradient = np.array([0.3, -0.4, 0.5])  # Gy/mm along (z, y, x)
        shift = np.array([0.4, 0.9, -0.7])  # mm
        reference = self.linear_grid(
            tuple(axis_mm(n, reference_mm, -(n - 1) / 2 * reference_mm) for n in (7, 8, 9)),  # type: ignore[arg-type]
            gradient,
            np.zeros(3),
        )
        margin = 2 * DEFAULT_MAX_SEARCH_FACTOR * distance_mm
        ref_axes = (reference.z_mm, reference.y_mm, reference.x_mm)
        aligned_axes = tuple(axis_mm(a.size + 2 * 4, reference_mm, float(a[0]) - 4 * reference_mm) for a in ref_axes)
        offset = (0.37, -0.61, 0.23)
        other_axes = tuple(
            axis_mm(int((a[-1] - a[0] + 2 * margin) / evaluated_mm) + 2, evaluated_mm, float(a[0]) - margin + o)
            for a, o in zip(ref_axes, offset, strict=True)
        )
        aligned = gamma_3d(
            reference,
            self.linear_grid(aligned_axes, gradient, shift),  # type: ignore[arg-type]
            dose_percent=dose_percent,
            distance_mm=distance_mm,
        )
        other = gamma_3d(
            reference,
            self.linear_grid(other_axes, gradient, shift),  # type: ignore[arg-type]
            dose_percent=dose_percent,
            distance_mm=distance_mm,
        )
        assert other.n_evaluated == aligned.n_evaluated == reference.values_gy.size
        np.testing.assert_allclose(other.gamma, aligned.gamma, atol=GAMMA_ATOL, rtol=0)
        criterion_gy = dose_percent / 100.0 * float(reference.values_gy.max())
        analytic = abs(float(gradient @ shift)) / math.sqrt(
            criterion_gy**2 + float(gradient @ gradient) * distance_mm**2
        )
        assert float(other.gamma.min()) >= analytic - GAMMA_ATOL
        assert float(other.gamma.max()) <= analytic + 0.05  # the discrete search is close to the continuous one
        assert other.parameters.evaluated_spacing_mm == pytest.approx((evaluated_mm,) * 3)


class TestThresholdAndReach:
    @pytest.mark.parametrize("cutoff_percent", [0.0, 10.0, 20.0, 50.0])
    def test_cutoff_respected(self, cutoff_percent: float) -> None:
        reference = sabr_like_grid()
        evaluated = sabr_like_grid(scale=1.02)
        result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0, lower_cutoff_percent=cutoff_percent)
        above = reference.values_gy >= cutoff_percent / 100.0 * reference.values_gy.max()
        assert np.all(np.isfinite(result.gamma[above]))
        assert np.all(np.isnan(result.gamma[~above]))
        assert result.n_evaluated == int(above.sum())
        assert result.parameters.lower_cutoff_gy == pytest.approx(cutoff_percent / 100.0 * reference.values_gy.max())

    def test_normalisation_override(self) -> None:
        reference = uniform_grid(10.0)
        evaluated = uniform_grid(10.3)
        # 0.3 Gy difference; 3% of 20 Gy = 0.6 Gy -> gamma 0.5; threshold 40% of 20 Gy = 8 Gy keeps every voxel
        result = gamma_3d(
            reference, evaluated, dose_percent=3.0, distance_mm=2.0, normalisation_gy=20.0, lower_cutoff_percent=40.0
        )
        np.testing.assert_allclose(result.gamma, 0.5, atol=GAMMA_ATOL, rtol=0)
        assert result.parameters.normalisation_gy == 20.0
        assert result.parameters.lower_cutoff_gy == pytest.approx(8.0)

    def test_points_out_of_reach_are_nan_and_not_counted(self, caplog: pytest.LogCaptureFixture) -> None:
        reference = uniform_grid(10.0, shape=(6, 6, 10), spacing_mm=2.0)  # x from 0 to 18 mm
        z, y = reference.z_mm, reference.y_mm
        x = axis_mm(5, 2.0)  # evaluated covers x in [0, 8] mm only
        evaluated = DoseGrid(np.full((6, 6, 5), 10.0), z, y, x)
        with caplog.at_level(logging.WARNING, logger="qa_checks.gamma"):
            result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0)
        # reach is 2 * DTA = 4 mm: reference x <= 8 mm is inside (gamma 0); x = 10 and 12 mm find the edge of the
        # evaluated grid (x = 8 mm) at 2 and 4 mm (gamma 1 and 2); x = 14, 16, 18 mm find nothing (NaN)
        expected = np.where(reference.x_mm <= 12.0, np.maximum(reference.x_mm - 8.0, 0.0) / 2.0, np.nan)
        np.testing.assert_allclose(result.gamma, np.broadcast_to(expected, (6, 6, 10)), atol=GAMMA_ATOL, rtol=0)
        assert result.n_unreachable == 6 * 6 * 3
        assert result.n_evaluated == 6 * 6 * 7
        assert result.pass_rate_percent == pytest.approx(100.0 * 6 / 7)
        assert "no evaluated dose within 4 mm" in caplog.text

    def test_out_of_reach_stays_nan_with_max_gamma(self) -> None:
        # the cap applies to gamma values; a point with no evaluated dose within reach still has none. The search
        # stops at max_gamma * DTA = 3 mm: x = 10 mm finds the edge (x = 8 mm) at gamma 1; x >= 12 mm find nothing
        reference = uniform_grid(10.0, shape=(6, 6, 10), spacing_mm=2.0)
        evaluated = DoseGrid(np.full((6, 6, 5), 10.0), reference.z_mm, reference.y_mm, axis_mm(5, 2.0))
        result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0, max_gamma=1.5)
        expected = np.where(reference.x_mm <= 10.0, np.maximum(reference.x_mm - 8.0, 0.0) / 2.0, np.nan)
        np.testing.assert_allclose(result.gamma, np.broadcast_to(expected, (6, 6, 10)), atol=GAMMA_ATOL, rtol=0)
        assert result.n_unreachable == 6 * 6 * 4
        assert result.n_evaluated == 6 * 6 * 6

    def test_disjoint_grids(self) -> None:
        reference = uniform_grid(10.0)
        evaluated = DoseGrid(np.full((8, 9, 10), 10.0), reference.z_mm + 500.0, reference.y_mm, reference.x_mm)
        result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0)
        assert result.n_evaluated == 0
        assert result.n_unreachable == reference.values_gy.size
        assert math.isnan(result.pass_rate_percent)
        assert np.all(np.isnan(result.gamma))


class TestParameters:
    def test_recorded_and_json_serialisable(self) -> None:
        reference = sabr_like_grid()
        evaluated = sabr_like_grid((20, 25, 25), (2.5, 2.0, 2.0), scale=1.01)
        result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0)
        parameters = result.parameters
        assert parameters.dose_percent == 3.0
        assert parameters.distance_mm == 2.0
        assert parameters.normalisation == "global"
        assert parameters.normalisation_gy == pytest.approx(float(reference.values_gy.max()))
        assert parameters.lower_cutoff_percent == 10.0
        assert parameters.search_step_mm == pytest.approx(2.0 / DEFAULT_SEARCH_FRACTION)
        assert parameters.max_search_distance_mm == pytest.approx(2.0 * DEFAULT_MAX_SEARCH_FACTOR)
        assert parameters.interpolation == "trilinear"
        assert parameters.dimensions == 3
        assert parameters.reference_spacing_mm == (2.0, 2.0, 2.0)
        assert parameters.evaluated_spacing_mm == (2.5, 2.0, 2.0)
        stored = json.loads(json.dumps(result.as_dict()))
        assert stored["parameters"]["evaluated_spacing_mm"] == [2.5, 2.0, 2.0]
        assert stored["n_evaluated"] == result.n_evaluated
        assert stored["pass_rate_percent"] == result.pass_rate_percent

    def test_local_recorded(self) -> None:
        grid = uniform_grid(10.0)
        result = gamma_3d(grid, grid, dose_percent=2.0, distance_mm=2.0, local=True, search_step_mm=0.5)
        assert result.parameters.normalisation == "local"
        assert result.parameters.search_step_mm == 0.5


class TestBadInput:
    def test_nan_in_reference(self) -> None:
        grid = uniform_grid(10.0)
        values = grid.values_gy.copy()
        values[1, 2, 3] = np.nan
        bad = DoseGrid(values, grid.z_mm, grid.y_mm, grid.x_mm, path="ref_dose.dcm")
        with pytest.raises(
            ValueError, match=r"reference dose grid \(ref_dose.dcm\).*first at \(z, y, x\) index \(1, 2, 3\): nan"
        ):
            gamma_3d(bad, grid, dose_percent=3.0, distance_mm=2.0)

    def test_negative_in_evaluated(self) -> None:
        grid = uniform_grid(10.0)
        values = grid.values_gy.copy()
        values[0, 0, 5] = -0.5
        values[4, 4, 4] = -1.0
        bad = DoseGrid(values, grid.z_mm, grid.y_mm, grid.x_mm)
        with pytest.raises(ValueError, match=r"evaluated dose grid has 2 voxel\(s\).*index \(0, 0, 5\): -0.5 Gy"):
            gamma_3d(grid, bad, dose_percent=3.0, distance_mm=2.0)

    def test_infinite_dose(self) -> None:
        grid = uniform_grid(10.0)
        values = grid.values_gy.copy()
        values[2, 2, 2] = np.inf
        bad = DoseGrid(values, grid.z_mm, grid.y_mm, grid.x_mm)
        with pytest.raises(ValueError, match=r"evaluated dose grid.*index \(2, 2, 2\): inf"):
            gamma_3d(grid, bad, dose_percent=3.0, distance_mm=2.0)

    @pytest.mark.parametrize("value", [0.0, -3.0, math.nan, math.inf])
    @pytest.mark.parametrize("name", ["dose_percent", "distance_mm", "search_step_mm", "normalisation_gy", "max_gamma"])
    def test_non_positive_option(self, name: str, value: float) -> None:
        grid = uniform_grid(10.0)
        options: dict[str, float] = {"dose_percent": 3.0, "distance_mm": 2.0, name: value}
        with pytest.raises(ValueError, match=name):
            gamma_3d(grid, grid, **options)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("lower_cutoff_percent", -1.0),
            ("lower_cutoff_percent", 101.0),
            ("max_search_distance_mm", -1.0),
            ("max_search_distance_mm", math.inf),
        ],
    )
    def test_out_of_range_option(self, name: str, value: float) -> None:
        grid = uniform_grid(10.0)
        with pytest.raises(ValueError, match=name):
            gamma_3d(grid, grid, dose_percent=3.0, distance_mm=2.0, **{name: value})  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", [-1e-300, -np.inf, np.nan, -np.nan, np.inf])
    def test_every_kind_of_bad_value_in_reference(self, value: float) -> None:
        # the one-pass check reads the doses' bit patterns: negative numbers, both infinities and NaN of either
        # sign must all be caught, in a flipped grid too
        grid = sabr_like_grid(noise_fraction=0.0, rng=np.random.default_rng(2))
        values = grid.values_gy.copy()
        values[3, 4, 5] = value
        bad = DoseGrid(values, grid.z_mm[::-1].copy(), grid.y_mm, grid.x_mm)
        with pytest.raises(ValueError, match=r"reference dose grid has 1 voxel\(s\).*index \(3, 4, 5\)"):
            gamma_3d(bad, grid, dose_percent=3.0, distance_mm=2.0)

    def test_negative_zero_is_zero(self) -> None:
        # -0 is not a negative dose: the result is that of +0 (the maximum of a plane holding -0 is exact)
        grid = sabr_like_grid(noise_fraction=0.01, rng=np.random.default_rng(3))
        signed = grid.values_gy.copy()
        signed[signed < 0.5 * signed.max()] = -0.0
        signed[:, 0, :] = -0.0  # planes whose bit-pattern maximum is that of -0
        unsigned = np.abs(signed)
        results = [
            gamma_3d(
                DoseGrid(v, grid.z_mm, grid.y_mm, grid.x_mm),
                DoseGrid(w, grid.z_mm, grid.y_mm, grid.x_mm),
                dose_percent=3.0,
                distance_mm=2.0,
            )
            for v, w in ((signed, unsigned * 1.01), (unsigned, unsigned * 1.01), (unsigned * 1.01, signed))
        ]
        assert results[0].parameters.normalisation_gy == results[1].parameters.normalisation_gy > 0
        np.testing.assert_array_equal(results[0].gamma, results[1].gamma)
        assert results[2].n_evaluated == results[1].n_evaluated

    def test_zero_reference(self) -> None:
        zero = uniform_grid(0.0)
        with pytest.raises(ValueError, match="reference dose is 0 Gy everywhere"):
            gamma_3d(zero, uniform_grid(1.0), dose_percent=3.0, distance_mm=2.0)

    def test_nothing_above_threshold(self) -> None:
        grid = uniform_grid(10.0)
        with pytest.raises(ValueError, match="no reference voxel reaches the low-dose threshold 50 Gy"):
            gamma_3d(grid, grid, dose_percent=3.0, distance_mm=2.0, normalisation_gy=500.0)

    def test_single_slice_grid(self) -> None:
        grid = uniform_grid(10.0)
        flat = DoseGrid(np.full((1, 9, 10), 10.0), np.array([0.0]), grid.y_mm, grid.x_mm)
        with pytest.raises(InvalidGridError, match=r"evaluated grid has a single coordinate along z"):
            gamma_3d(grid, flat, dose_percent=3.0, distance_mm=2.0)
