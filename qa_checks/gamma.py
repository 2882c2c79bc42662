"""3D gamma index between a reference and an evaluated dose grid (AAPM TG-218, Miften et al. 2018).

Definitions (TG-218 terms)
    *Reference* dose ``Dr`` and *evaluated* dose ``De`` are :class:`~qa_checks.geometry.DoseGrid` objects in
    Gy, indexed (z, y, x), in the same patient coordinates (LPS, mm). The two grids may differ in spacing, origin
    and extent, and their axes may increase or decrease (they are put in increasing order on entry).

    *Normalisation dose*: ``normalisation_gy`` if given, otherwise the maximum reference dose (global
    normalisation).

    *Low-dose threshold*: gamma is computed at every reference voxel whose reference dose is ``>=``
    ``lower_cutoff_percent`` % of the normalisation dose; every other voxel is NaN in the gamma map. In local
    mode, voxels with zero reference dose are never evaluated (the dose criterion would be zero).

    *Dose criterion* ``ΔD``: ``dose_percent`` % of the normalisation dose (global) or of ``Dr(r)`` (local).
    *Distance to agreement* ``DTA``: ``distance_mm``.

    For each evaluated reference point ``r``::

        gamma(r) = min over r' of sqrt(|r' - r|² / DTA² + (De(r') - Dr(r))² / ΔD²)

    where ``r'`` runs over the *search positions* within ``max_search_distance_mm`` of ``r`` that lie inside the
    evaluated grid, and ``De(r')`` is the evaluated dose interpolated **trilinearly** at ``r'``. A point passes
    when ``gamma <= 1``; the pass rate is the percentage of evaluated points that pass.

Search positions
    The same scheme as ``pymedphys.gamma`` (version 0.41, ``interp_fraction = distance_mm / search_step_mm``),
    so that results agree with it: spherical shells centred on ``r`` at radii ``0, s, 2s, ...`` with
    ``s = search_step_mm`` (default ``distance_mm / 10``), the radius ``distance_mm`` itself always included.
    Each shell has ``ceil(π d / s) + 1`` rings of constant elevation and each ring ``ceil(2π ρ / s) + 1``
    equally spaced points (``ρ`` the ring radius), so no two neighbouring positions are more than ``s`` apart.
    Shells are searched in increasing radius and the search for a point stops once the shell radius ``d``
    satisfies ``d / DTA >= gamma`` found so far (no farther position can give a smaller gamma), or when ``d``
    exceeds ``max_search_distance_mm`` (default ``2 * distance_mm``). So ``gamma <= 1`` never depends on the
    maximum search distance (as long as it is at least ``distance_mm``); a gamma above
    ``max_search_distance_mm / distance_mm`` is the minimum over the positions searched and may exceed the
    unrestricted minimum. With ``max_gamma`` the search also stops at ``max_gamma * distance_mm`` and larger
    values are reported as ``max_gamma`` (as pymedphys does).

Outside the evaluated grid
    A search position outside the evaluated grid's voxel-centre box (``z_mm[0] <= z <= z_mm[-1]`` and the same
    for y and x) has no evaluated dose and is skipped, as in pymedphys (which fills such positions with
    infinity). A reference point with no search position inside the evaluated grid within reach has no gamma:
    it is NaN in the map, is not counted in ``n_evaluated`` and is counted in ``n_unreachable`` (pymedphys also
    returns NaN there, and its pass rate ignores NaN).

Speed
    Work is limited to the reference points above the threshold and to the part of the evaluated grid within
    reach of them, and doses are handled in float32 (relative rounding about 6e-8, far below any dose
    criterion). The dose grids are read in whole only to check them (one reduction per grid, which also gives the
    normalisation dose and the box of voxels above the threshold). Shells are processed for all points still
    searching at once (:mod:`qa_checks.gamma_search`). When the evaluated grid is evenly spaced, reference points
    are grouped by where they sit within an evaluated cell along each axis; the points of a group see the same
    trilinear weights for a given search position, so a shell is interpolated for all of them by matrix products
    (:mod:`qa_checks.gamma_shared`). This holds for any pair of even grids: the same grid with any origin (one
    group), a 2 mm reference against a 2.5 mm evaluated grid (125 groups), 3 mm against 2 mm (8). Points near the
    evaluated grid's edge, unevenly spaced evaluated grids, groups of a single point and the last few points still
    searching use per-point interpolation (:mod:`qa_checks.gamma_per_point`). Both give the same positions and the
    same result. The work of a shell is split into independent tasks run on ``threads`` threads; the result does
    not depend on the number of threads.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qa_checks.gamma_inputs import (
    above_threshold,
    checked_plane_maxima,
    increasing,
    reference_box,
    require_positive,
    spacing_mm,
)
from qa_checks.gamma_search import TaskRunner, default_threads, search_gamma2
from qa_checks.geometry import DoseGrid

__all__ = [
    "DEFAULT_MAX_SEARCH_FACTOR",
    "DEFAULT_SEARCH_FRACTION",
    "INTERPOLATION",
    "GammaParameters",
    "GammaResult",
    "gamma_3d",
]

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_FRACTION: Final = 10.0
"""Default ``search_step_mm`` is ``distance_mm / DEFAULT_SEARCH_FRACTION`` (pymedphys ``interp_fraction``)."""

DEFAULT_MAX_SEARCH_FACTOR: Final = 2.0
"""Default ``max_search_distance_mm`` is ``DEFAULT_MAX_SEARCH_FACTOR * distance_mm``."""

INTERPOLATION: Final = "trilinear"
"""How the evaluated dose is interpolated at search positions."""


FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GammaParameters:
    """Every parameter that changes a gamma result, as TG-218 asks to report.

    Attributes:
        dose_percent: dose criterion in % (of the normalisation dose, or of the local reference dose).
        distance_mm: distance-to-agreement criterion in mm.
        normalisation: ``"global"`` or ``"local"``.
        normalisation_gy: the normalisation dose actually used, in Gy.
        lower_cutoff_percent: low-dose threshold in % of ``normalisation_gy``.
        lower_cutoff_gy: the same threshold in Gy.
        search_step_mm: largest gap between neighbouring search positions, in mm.
        max_search_distance_mm: search radius limit, in mm (before ``max_gamma`` is applied).
        max_gamma: values above this are reported as ``max_gamma``; ``None`` for no cap.
        interpolation: how the evaluated dose is interpolated (``"trilinear"``).
        search_scheme: how search positions are laid out.
        dimensions: 3 (a 3D gamma).
        reference_spacing_mm: (z, y, x) mean voxel spacing of the reference grid, in mm.
        evaluated_spacing_mm: (z, y, x) mean voxel spacing of the evaluated grid, in mm.
    """

    dose_percent: float
    distance_mm: float
    normalisation: str
    normalisation_gy: float
    lower_cutoff_percent: float
    lower_cutoff_gy: float
    search_step_mm: float
    max_search_distance_mm: float
    max_gamma: float | None
    interpolation: str
    search_scheme: str
    dimensions: int
    reference_spacing_mm: tuple[float, float, float]
    evaluated_spacing_mm: tuple[float, float, float]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        out = asdict(self)
        out["reference_spacing_mm"] = list(self.reference_spacing_mm)
        out["evaluated_spacing_mm"] = list(self.evaluated_spacing_mm)
        return out


@dataclass(frozen=True, eq=False)
class GammaResult:
    """Outcome of :func:`gamma_3d`.

    Attributes:
        pass_rate_percent: percentage of evaluated points with ``gamma <= 1``.
        mean_gamma: mean gamma over evaluated points.
        n_evaluated: number of reference points with a gamma value.
        n_passed: number of those with ``gamma <= 1``.
        n_unreachable: reference points above the threshold with no evaluated dose within reach (NaN).
        gamma: gamma (float32) on the reference grid, shape (z, y, x) in the reference grid's own axis order;
            NaN where not evaluated (below the threshold, or unreachable).
        parameters: the parameters that produced the result.
    """

    pass_rate_percent: float
    mean_gamma: float
    n_evaluated: int
    n_passed: int
    n_unreachable: int
    gamma: npt.NDArray[np.float32]
    parameters: GammaParameters

    def as_dict(self) -> dict[str, Any]:
        """Summary for storage as JSON: every scalar and the parameters (not the gamma map)."""
        return {
            "pass_rate_percent": self.pass_rate_percent,
            "mean_gamma": self.mean_gamma,
            "n_evaluated": self.n_evaluated,
            "n_passed": self.n_passed,
            "n_unreachable": self.n_unreachable,
            "parameters": self.parameters.as_dict(),
        }


def gamma_3d(
    reference: DoseGrid,
    evaluated: DoseGrid,
    *,
    dose_percent: float,
    distance_mm: float,
    lower_cutoff_percent: float = 10.0,
    local: bool = False,
    normalisation_gy: float | None = None,
    search_step_mm: float | None = None,
    max_search_distance_mm: float | None = None,
    max_gamma: float | None = None,
    threads: int | None = None,
) -> GammaResult:
    """3D gamma index of ``evaluated`` against ``reference`` (definitions in the module docstring).

    Args:
        reference: reference dose (e.g. the trial's reference calculation); gamma is reported on its grid.
        evaluated: evaluated dose (e.g. the centre's recalculation); interpolated trilinearly.
        dose_percent: dose criterion in %, > 0 (e.g. 3 for 3%/2 mm).
        distance_mm: distance-to-agreement in mm, > 0.
        lower_cutoff_percent: low-dose threshold in % of the normalisation dose, in [0, 100].
        local: local (dose criterion relative to ``Dr(r)``) instead of global normalisation.
        normalisation_gy: global normalisation dose in Gy, > 0; default the maximum reference dose.
        search_step_mm: largest gap between search positions, > 0; default ``distance_mm / 10``.
        max_search_distance_mm: search radius limit in mm, >= 0; default ``2 * distance_mm``.
        max_gamma: cap on reported gamma (> 0); also limits the search to ``max_gamma * distance_mm``.
        threads: threads to compute with (default :func:`~qa_checks.gamma_search.default_threads`: the CPUs
            available, at most 4). The result does not depend on it.

    Raises:
        ValueError: a criterion or option is not a positive finite number (naming the argument); a dose grid
            contains NaN, infinite or negative dose (naming the grid and the first bad voxel); the maximum
            reference dose is 0; no reference voxel reaches the low-dose threshold.
        InvalidGridError: a grid has a single coordinate along an axis (a 3D gamma needs 3D grids).
    """
    require_positive("dose_percent", dose_percent)
    require_positive("distance_mm", distance_mm)
    if not (math.isfinite(lower_cutoff_percent) and 0.0 <= lower_cutoff_percent <= 100.0):
        raise ValueError(f"lower_cutoff_percent must be in [0, 100]; got {lower_cutoff_percent!r}")
    step_mm = distance_mm / DEFAULT_SEARCH_FRACTION if search_step_mm is None else search_step_mm
    require_positive("search_step_mm", step_mm)
    max_distance_mm = (
        DEFAULT_MAX_SEARCH_FACTOR * distance_mm if max_search_distance_mm is None else max_search_distance_mm
    )
    if not (math.isfinite(max_distance_mm) and max_distance_mm >= 0.0):
        raise ValueError(f"max_search_distance_mm must be a finite number >= 0; got {max_search_distance_mm!r}")
    if max_gamma is not None:
        require_positive("max_gamma", max_gamma)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1; got {threads!r}")

    ref_axes, ref_dose, ref_flips = increasing(reference, "reference")
    eval_axes, eval_dose, _ = increasing(evaluated, "evaluated")
    with TaskRunner(default_threads() if threads is None else int(threads)) as runner:
        ref_high = checked_plane_maxima(reference, ref_dose, "reference", runner)
        max_ref_gy = float(ref_high.max())
        checked_plane_maxima(evaluated, eval_dose, "evaluated", runner)

        if normalisation_gy is None:
            if max_ref_gy <= 0.0:
                raise ValueError(
                    "reference dose is 0 Gy everywhere; gamma needs a positive normalisation dose "
                    "(maximum reference dose) or an explicit normalisation_gy"
                )
            norm_gy = max_ref_gy
        else:
            require_positive("normalisation_gy", normalisation_gy)
            norm_gy = float(normalisation_gy)
        cutoff_gy = lower_cutoff_percent / 100.0 * norm_gy

        search_limit_mm = max_distance_mm if max_gamma is None else min(max_distance_mm, max_gamma * distance_mm)
        parameters = GammaParameters(
            dose_percent=float(dose_percent),
            distance_mm=float(distance_mm),
            normalisation="local" if local else "global",
            normalisation_gy=norm_gy,
            lower_cutoff_percent=float(lower_cutoff_percent),
            lower_cutoff_gy=cutoff_gy,
            search_step_mm=float(step_mm),
            max_search_distance_mm=float(max_distance_mm),
            max_gamma=None if max_gamma is None else float(max_gamma),
            interpolation=INTERPOLATION,
            search_scheme="spherical shells (pymedphys 0.41 compatible)",
            dimensions=3,
            reference_spacing_mm=spacing_mm(ref_axes),
            evaluated_spacing_mm=spacing_mm(eval_axes),
        )

        found = reference_box(ref_dose, ref_high, above_threshold(cutoff_gy, local=local))
        if found is None:
            raise ValueError(
                f"no reference voxel reaches the low-dose threshold {cutoff_gy:.6g} Gy "
                f"({lower_cutoff_percent}% of {norm_gy:.6g} Gy); nothing to evaluate"
            )
        box, box_mask = found
        # the map, filled with NaN by a worker while the search starts (the first touch of 4 bytes per voxel)
        new_map = runner.start(lambda: np.full(ref_dose.shape, np.nan, dtype=np.float32))
        gamma2 = search_gamma2(
            tuple(axis[part] for axis, part in zip(ref_axes, box, strict=True)),  # type: ignore[arg-type]
            ref_dose[box],
            box_mask,
            eval_axes,
            eval_dose,
            dose_criterion_fraction=dose_percent / 100.0,
            norm_gy=None if local else norm_gy,
            distance_mm=distance_mm,
            step_mm=step_mm,
            limit_mm=search_limit_mm,
            runner=runner,
        )
    gamma_points = np.sqrt(gamma2)
    reachable = np.isfinite(gamma_points)  # before the cap: an unreachable point has no gamma, not max_gamma
    if max_gamma is not None:
        gamma_points = np.minimum(gamma_points, max_gamma)
    n_unreachable = int(gamma_points.size - np.count_nonzero(reachable))
    gamma_points[~reachable] = np.nan
    if n_unreachable:
        logger.warning(
            "%d reference points above the threshold have no evaluated dose within %.3g mm; gamma is NaN there",
            n_unreachable,
            search_limit_mm,
        )
    gamma_map = new_map()
    gamma_map[box][box_mask] = gamma_points  # gamma_map[box] is a view
    # back to the reference grid's own axis directions
    for axis, flipped in enumerate(ref_flips):
        if flipped:
            gamma_map = np.flip(gamma_map, axis=axis)
    if any(ref_flips):
        gamma_map = np.ascontiguousarray(gamma_map)

    values = gamma_points[reachable]
    n_evaluated = int(values.size)
    n_passed = int(np.count_nonzero(values <= 1.0))
    return GammaResult(
        pass_rate_percent=100.0 * n_passed / n_evaluated if n_evaluated else math.nan,
        mean_gamma=float(values.mean()) if n_evaluated else math.nan,
        n_evaluated=n_evaluated,
        n_passed=n_passed,
        n_unreachable=n_unreachable,
        gamma=gamma_map,
        parameters=parameters,
    )
