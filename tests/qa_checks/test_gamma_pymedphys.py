"""3D gamma against the peer implementation ``pymedphys.gamma`` (0.41), at identical parameters.

pymedphys is an optional extra: the module is skipped when it is not installed. Both are run with the same dose
and distance criteria, low-dose threshold, global or local normalisation, search step (pymedphys
``interp_fraction`` = 20, i.e. ``search_step_mm = distance_mm / 20``) and ``max_gamma = 2`` (pymedphys then
searches to 2 x DTA, as ``gamma_3d`` does by default, and caps gamma at 2). Requirement: pass rates within 0.1
percentage point. Because ``gamma_3d`` samples the same positions, the gamma maps themselves also agree, to the
float32 rounding of ``gamma_3d`` (``GAMMA_ATOL`` in ``test_gamma``), and NaN exactly where pymedphys has NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from qa_checks.gamma import gamma_3d
from qa_checks.geometry import DoseGrid
from tests.qa_checks.test_gamma import GAMMA_ATOL, recalculated_grid, sabr_like_grid

pymedphys = pytest.importorskip("pymedphys")

PASS_RATE_TOLERANCE_PP = 0.1
"""Required agreement of pass rates, in percentage points."""

INTERP_FRACTION = 20
MAX_GAMMA = 2.0


def _reference() -> DoseGrid:
    return sabr_like_grid()


CASES: dict[str, Callable[[], DoseGrid]] = {
    "identical": lambda: sabr_like_grid(),
    "shift_1mm": lambda: sabr_like_grid(centre_zyx_mm=(0.0, 1.0, 0.0)),
    "shift_3mm": lambda: sabr_like_grid(centre_zyx_mm=(3.0, 0.0, 0.0)),
    "scaled_2pc": lambda: sabr_like_grid(scale=1.02),
    "noise_1pc": lambda: sabr_like_grid(noise_fraction=0.01, rng=np.random.default_rng(20261123)),
    "scaled_2pc_noise_1pc": lambda: sabr_like_grid(scale=1.02, noise_fraction=0.01, rng=np.random.default_rng(7)),
    # a different grid: 2.5 mm spacing, origin off the reference lattice, and a shifted, scaled dose
    "other_grid": lambda: sabr_like_grid(
        (20, 24, 24), 2.5, origin_zyx_mm=(-23.3, -28.1, -29.4), centre_zyx_mm=(0.5, 1.0, 0.0), scale=1.01
    ),
}

CRITERIA = [(3.0, 3.0), (3.0, 2.0), (2.0, 2.0), (2.0, 1.0)]


def _compare(
    evaluated: DoseGrid,
    dose_percent: float,
    distance_mm: float,
    cutoff_percent: float,
    local: bool,
    reference: DoseGrid | None = None,
) -> None:
    reference = _reference() if reference is None else reference
    ours = gamma_3d(
        reference,
        evaluated,
        dose_percent=dose_percent,
        distance_mm=distance_mm,
        lower_cutoff_percent=cutoff_percent,
        local=local,
        search_step_mm=distance_mm / INTERP_FRACTION,
        max_gamma=MAX_GAMMA,
    )
    peer = pymedphys.gamma(
        (reference.z_mm, reference.y_mm, reference.x_mm),
        reference.values_gy,
        (evaluated.z_mm, evaluated.y_mm, evaluated.x_mm),
        evaluated.values_gy,
        dose_percent,
        distance_mm,
        lower_percent_dose_cutoff=cutoff_percent,
        interp_fraction=INTERP_FRACTION,
        max_gamma=MAX_GAMMA,
        local_gamma=local,
        random_subset=None,
    )
    valid = ~np.isnan(peer)
    peer_pass_rate = 100.0 * float(np.mean(peer[valid] <= 1.0))
    assert abs(ours.pass_rate_percent - peer_pass_rate) <= PASS_RATE_TOLERANCE_PP
    assert ours.n_evaluated == int(valid.sum())
    np.testing.assert_array_equal(np.isnan(ours.gamma), ~valid)
    np.testing.assert_allclose(ours.gamma[valid], peer[valid], atol=GAMMA_ATOL, rtol=0)


# about 80 s in all, mostly pymedphys
@pytest.mark.slow
@pytest.mark.parametrize("cutoff_percent", [10.0, 20.0])
@pytest.mark.parametrize(("dose_percent", "distance_mm"), CRITERIA)
@pytest.mark.parametrize("case", list(CASES))
def test_global_matches_pymedphys(case: str, dose_percent: float, distance_mm: float, cutoff_percent: float) -> None:
    _compare(CASES[case](), dose_percent, distance_mm, cutoff_percent, local=False)


@pytest.mark.slow
@pytest.mark.parametrize(("dose_percent", "distance_mm"), [(3.0, 3.0), (2.0, 2.0)])
@pytest.mark.parametrize("case", ["shift_1mm", "scaled_2pc_noise_1pc", "other_grid"])
def test_local_matches_pymedphys(case: str, dose_percent: float, distance_mm: float) -> None:
    _compare(CASES[case](), dose_percent, distance_mm, 10.0, local=True)


@pytest.mark.slow
def test_cases_are_not_trivial() -> None:
    """The comparison is only informative if the cases differ: check a spread of pass rates and mean gamma."""
    reference = _reference()
    results = {case: gamma_3d(reference, make(), dose_percent=2.0, distance_mm=1.0) for case, make in CASES.items()}
    assert results["identical"].pass_rate_percent == 100.0
    assert results["shift_3mm"].pass_rate_percent < 80.0
    assert results["other_grid"].pass_rate_percent < 99.0
    assert results["scaled_2pc_noise_1pc"].mean_gamma > 0.1


# --- non-aligned grids: the evaluated dose recalculated on the centre's own grid (TPS check) ---------------------

OFFSET_ZYX_MM = (0.37, -0.61, 0.23)
"""How far the evaluated grid's origin is moved off the reference lattice, in mm."""


def _recalculation(reference: DoseGrid, spacing_mm: float, *, margin_mm: float = 5.0) -> DoseGrid:
    """A shifted (0.5 mm in z, 1 mm in y), 1.5% high and 1% noisy recalculation on another grid."""
    return recalculated_grid(
        reference,
        spacing_mm,
        OFFSET_ZYX_MM,
        margin_mm=margin_mm,
        centre_zyx_mm=(0.5, 1.0, 0.0),
        scale=1.015,
        noise_fraction=0.01,
        rng=np.random.default_rng(19),
    )


GRID_CASES: dict[str, Callable[[], tuple[DoseGrid, DoseGrid]]] = {
    "ref_3mm_eval_2mm": lambda: (ref := sabr_like_grid((9, 11, 11), 3.0), _recalculation(ref, 2.0)),
    "ref_3mm_eval_2p5mm": lambda: (ref := sabr_like_grid((9, 11, 11), 3.0), _recalculation(ref, 2.5)),
    "ref_2mm_eval_3mm": lambda: (ref := sabr_like_grid((14, 16, 16), 2.0), _recalculation(ref, 3.0)),
    "ref_2p5mm_eval_3mm": lambda: (ref := sabr_like_grid((11, 13, 13), 2.5), _recalculation(ref, 3.0)),
    "ref_2mm_eval_2p5mm": lambda: (ref := sabr_like_grid((14, 16, 16), 2.0), _recalculation(ref, 2.5)),
    "ref_2p5mm_eval_2mm": lambda: (ref := sabr_like_grid((11, 13, 13), 2.5), _recalculation(ref, 2.0)),
    # fractions that do not repeat within the grid: every point is interpolated on its own
    "ref_2mm_eval_2p34mm": lambda: (ref := sabr_like_grid((14, 16, 16), 2.0), _recalculation(ref, 2.34)),
    # the evaluated grid stops at z = 4 mm, short of the reference's last planes: points beyond it search only
    # part of their sphere, and those more than the search radius past its last plane have no gamma
    "partial_overlap": lambda: (ref := sabr_like_grid((9, 11, 11), 3.0), _cut_z(_recalculation(ref, 2.5), stop_mm=4.0)),
    # the evaluated grid (2.5 mm) starts at y = -6 mm and stops at x = 8 mm, inside the 2 mm reference's box
    "partial_overlap_yx": lambda: (
        ref := sabr_like_grid((14, 16, 16), 2.0),
        _cut_yx(_recalculation(ref, 2.5), y_start_mm=-6.0, x_stop_mm=8.0),
    ),
}


def _cut_z(grid: DoseGrid, *, stop_mm: float) -> DoseGrid:
    keep = grid.z_mm <= stop_mm
    return DoseGrid(grid.values_gy[keep], grid.z_mm[keep], grid.y_mm, grid.x_mm)


def _cut_yx(grid: DoseGrid, *, y_start_mm: float, x_stop_mm: float) -> DoseGrid:
    rows, columns = grid.y_mm >= y_start_mm, grid.x_mm <= x_stop_mm
    return DoseGrid(grid.values_gy[:, rows][:, :, columns], grid.z_mm, grid.y_mm[rows], grid.x_mm[columns])


def _grid_case_params(cases: list[str]) -> list[object]:
    """The partial-overlap comparisons take pymedphys several seconds (its unreachable points search every
    shell): marked slow."""
    return [
        pytest.param(case, marks=pytest.mark.slow) if case.startswith("partial_overlap") else case for case in cases
    ]


@pytest.mark.parametrize(("dose_percent", "distance_mm"), [(3.0, 2.0), (2.0, 1.0)])
@pytest.mark.parametrize("case", _grid_case_params(list(GRID_CASES)))
def test_other_grids_match_pymedphys(case: str, dose_percent: float, distance_mm: float) -> None:
    reference, evaluated = GRID_CASES[case]()
    _compare(evaluated, dose_percent, distance_mm, 10.0, local=False, reference=reference)


@pytest.mark.parametrize("case", _grid_case_params(["ref_3mm_eval_2p5mm", "partial_overlap", "partial_overlap_yx"]))
def test_other_grids_local_match_pymedphys(case: str) -> None:
    reference, evaluated = GRID_CASES[case]()
    _compare(evaluated, 2.0, 2.0, 10.0, local=True, reference=reference)


def test_other_grid_cases_are_not_trivial() -> None:
    results = {
        case: gamma_3d(*make(), dose_percent=2.0, distance_mm=1.0, max_gamma=MAX_GAMMA)
        for case, make in GRID_CASES.items()
    }
    for case, result in results.items():
        assert result.pass_rate_percent < 99.0, case
        assert result.mean_gamma > 0.2, case
    assert results["partial_overlap"].n_unreachable > 0
    assert results["partial_overlap_yx"].n_unreachable > 0
    assert results["ref_2mm_eval_3mm"].n_unreachable == 0
