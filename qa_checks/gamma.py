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
    criterion). Shells are processed for all points still searching at once. When the reference spacing is an
    integer multiple of the evenly spaced evaluated spacing along every axis (the usual case: same grid, any
    origin), every point sees the same trilinear weights for a given search position, so a shell is
    interpolated by one matrix product per batch of points (weights x gathered node doses); matrix products are
    kept small enough that OpenBLAS runs them single-threaded. Points near the evaluated grid's edge and other
    grid pairs use per-point interpolation with per-axis index and weight tables. Both give the same positions
    and the same result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from qa_checks.errors import InvalidGridError
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

_CHUNK_ELEMENTS: Final = 1 << 18
"""Points x shell positions handled at once per worker (bounds the temporary arrays to a few MB each)."""

_RADIUS_TOLERANCE_MM: Final = 1e-9
"""Rounding allowance when comparing a shell radius with the maximum search distance."""

_BLAS_SINGLE_THREAD_WORK: Final = 1 << 18
"""Largest matrix product (rows x inner x columns) issued at once; OpenBLAS stays single-threaded up to 2**18."""

_CORNERS: Final = tuple((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1))
"""The 8 corners of a cell, as (z, y, x) steps from its lower corner."""

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

    Raises:
        ValueError: a criterion or option is not a positive finite number (naming the argument); a dose grid
            contains NaN, infinite or negative dose (naming the grid and the first bad voxel); the maximum
            reference dose is 0; no reference voxel reaches the low-dose threshold.
        InvalidGridError: a grid has a single coordinate along an axis (a 3D gamma needs 3D grids).
    """
    _require_positive("dose_percent", dose_percent)
    _require_positive("distance_mm", distance_mm)
    if not (math.isfinite(lower_cutoff_percent) and 0.0 <= lower_cutoff_percent <= 100.0):
        raise ValueError(f"lower_cutoff_percent must be in [0, 100]; got {lower_cutoff_percent!r}")
    step_mm = distance_mm / DEFAULT_SEARCH_FRACTION if search_step_mm is None else search_step_mm
    _require_positive("search_step_mm", step_mm)
    max_distance_mm = (
        DEFAULT_MAX_SEARCH_FACTOR * distance_mm if max_search_distance_mm is None else max_search_distance_mm
    )
    if not (math.isfinite(max_distance_mm) and max_distance_mm >= 0.0):
        raise ValueError(f"max_search_distance_mm must be a finite number >= 0; got {max_search_distance_mm!r}")
    if max_gamma is not None:
        _require_positive("max_gamma", max_gamma)

    ref_axes, ref_dose, ref_flips = _increasing(reference, "reference")
    eval_axes, eval_dose, _ = _increasing(evaluated, "evaluated")
    max_ref_gy = _check_dose(reference, "reference")
    _check_dose(evaluated, "evaluated")

    if normalisation_gy is None:
        if max_ref_gy <= 0.0:
            raise ValueError(
                "reference dose is 0 Gy everywhere; gamma needs a positive normalisation dose "
                "(maximum reference dose) or an explicit normalisation_gy"
            )
        norm_gy = max_ref_gy
    else:
        _require_positive("normalisation_gy", normalisation_gy)
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
        reference_spacing_mm=_spacing(ref_axes),
        evaluated_spacing_mm=_spacing(eval_axes),
    )

    mask = ref_dose >= cutoff_gy
    if local:
        mask &= ref_dose > 0.0
    box = _bounding_box(mask)
    if box is None:
        raise ValueError(
            f"no reference voxel reaches the low-dose threshold {cutoff_gy:.6g} Gy "
            f"({lower_cutoff_percent}% of {norm_gy:.6g} Gy); nothing to evaluate"
        )
    box_mask = mask[box]

    gamma2 = _search(
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
    )
    gamma_points = np.sqrt(gamma2)
    if max_gamma is not None:
        gamma_points = np.minimum(gamma_points, max_gamma)
    reachable = np.isfinite(gamma_points)
    n_unreachable = int(gamma_points.size - np.count_nonzero(reachable))
    gamma_points[~reachable] = np.nan
    if n_unreachable:
        logger.warning(
            "%d reference points above the threshold have no evaluated dose within %.3g mm; gamma is NaN there",
            n_unreachable,
            search_limit_mm,
        )
    gamma_map = np.full(ref_dose.shape, np.nan, dtype=np.float32)
    box_map = np.full(box_mask.shape, np.nan, dtype=np.float32)
    box_map[box_mask] = gamma_points
    gamma_map[box] = box_map
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


# --- input handling ----------------------------------------------------------------------------------------------


def _require_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a positive number; got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")


def _flips_of(grid: DoseGrid) -> tuple[bool, bool, bool]:
    z, y, x = (bool(axis.size > 1 and axis[-1] < axis[0]) for axis in (grid.z_mm, grid.y_mm, grid.x_mm))
    return z, y, x


def _increasing(
    grid: DoseGrid, name: str
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], FloatArray, tuple[bool, bool, bool]]:
    """(z, y, x) axes in increasing order and the dose flipped to match; which axes were flipped."""
    flips = _flips_of(grid)
    axes = []
    dose = grid.values_gy
    for axis_index, (axis, axis_name) in enumerate(zip((grid.z_mm, grid.y_mm, grid.x_mm), "zyx", strict=True)):
        if axis.size < 2:
            raise InvalidGridError(
                f"{name} grid has a single coordinate along {axis_name} ({axis_name}_mm = {axis.tolist()}); "
                f"a 3D gamma needs at least 2 voxels along each axis"
            )
        if flips[axis_index]:
            axis = axis[::-1]
            dose = np.flip(dose, axis=axis_index)
        axes.append(np.ascontiguousarray(axis))
    return (axes[0], axes[1], axes[2]), dose, flips


def _check_dose(grid: DoseGrid, name: str) -> float:
    """Maximum dose in Gy; raise ValueError naming the grid and the first NaN, infinite or negative voxel."""
    dose = grid.values_gy
    low = float(dose.min())  # NaN propagates through min and max
    high = float(dose.max())
    if low >= 0.0 and math.isfinite(high):
        return high
    bad = ~np.isfinite(dose) | (dose < 0.0)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f" ({grid.path})" if grid.path else ""
    raise ValueError(
        f"{name} dose grid{where} has {int(bad.sum())} voxel(s) with NaN, infinite or negative dose; "
        f"first at (z, y, x) index {first}: {float(dose[first])!r} Gy"
    )


def _bounding_box(mask: npt.NDArray[np.bool_]) -> tuple[slice, slice, slice] | None:
    """(z, y, x) slices of the smallest box holding every True voxel; None when there is none."""
    ranges = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        ranges.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return ranges[0], ranges[1], ranges[2]


def _spacing(axes: tuple[FloatArray, FloatArray, FloatArray]) -> tuple[float, float, float]:
    """(z, y, x) mean spacing in mm."""
    z, y, x = (float(abs(a[-1] - a[0]) / (a.size - 1)) for a in axes)
    return (z, y, x)


# --- search positions --------------------------------------------------------------------------------------------


def _shell_distances_mm(distance_mm: float, step_mm: float, limit_mm: float) -> Iterator[float]:
    """Shell radii 0, s, 2s, ... up to ``limit_mm``, with ``distance_mm`` forced in (pymedphys ``gamma_loop``)."""
    distance = 0.0
    forced = [distance_mm]
    # the limit is inclusive; the tolerance keeps a radius reached by summing steps (4.000000000000001) in
    while distance <= limit_mm + _RADIUS_TOLERANCE_MM:
        yield distance
        distance += step_mm
        if forced and distance >= forced[0]:
            distance = forced.pop(0)


def _shell_offsets_mm(distance: float, step_mm: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(z, y, x) offsets in mm of the search positions on the shell of radius ``distance``.

    Same construction as pymedphys ``calculate_coordinates_shell_3d``, whose first, second and third coordinates
    are applied to array axes 0, 1, 2, i.e. (z, y, x); the rings are at constant x.
    """
    n_rings = int(np.ceil(np.pi * distance / step_mm)) + 1
    elevation = np.linspace(0.0, np.pi, n_rings)
    ring_radius = distance * np.sin(elevation)
    n_in_ring = np.ceil(2 * np.pi * ring_radius / step_mm).astype(np.int64) + 1
    ring = np.repeat(np.arange(n_rings), n_in_ring)
    # position of each point within its ring, and the ring's azimuth step (np.linspace(0, 2π, n + 1)[:-1])
    within = np.arange(ring.size) - np.repeat(np.cumsum(n_in_ring) - n_in_ring, n_in_ring)
    azimuth = within * (2 * np.pi / n_in_ring[ring])
    phi = elevation[ring]
    return distance * np.sin(phi) * np.cos(azimuth), distance * np.sin(phi) * np.sin(azimuth), distance * np.cos(phi)


# --- the search --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Points:
    """The reference points to evaluate: indices into the cropped reference axes, dose, and 1 / ΔD."""

    index: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]
    axes_mm: tuple[FloatArray, FloatArray, FloatArray]
    dose_gy: npt.NDArray[np.float32]
    inv_criterion: npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Block:
    """The part of the evaluated grid within reach of the points: values (float32, flattened (z, y, x)), its
    (z, y, x) shape and flat strides, its index ranges in the full grid, and the full evaluated axes."""

    values: npt.NDArray[np.float32]
    shape: tuple[int, int, int]
    strides: tuple[int, int, int]
    crops: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    eval_axes: tuple[FloatArray, FloatArray, FloatArray]


def _search(
    ref_axes: tuple[FloatArray, FloatArray, FloatArray],
    ref_dose: FloatArray,
    mask: npt.NDArray[np.bool_],
    eval_axes: tuple[FloatArray, FloatArray, FloatArray],
    eval_dose: FloatArray,
    *,
    dose_criterion_fraction: float,
    norm_gy: float | None,
    distance_mm: float,
    step_mm: float,
    limit_mm: float,
) -> FloatArray:
    """gamma² at every masked reference point, in ``mask`` order (inf where no evaluated dose is within reach)."""
    iz, iy, ix = np.nonzero(mask)
    starts = (int(iz.min()), int(iy.min()), int(ix.min()))
    stops = (int(iz.max()) + 1, int(iy.max()) + 1, int(ix.max()) + 1)
    ref_crop = (ref_axes[0][starts[0] : stops[0]], ref_axes[1][starts[1] : stops[1]], ref_axes[2][starts[2] : stops[2]])
    dose_gy = ref_dose[mask]
    criterion_gy = dose_criterion_fraction * (dose_gy if norm_gy is None else np.full(dose_gy.size, norm_gy))
    points = _Points(
        index=((iz - starts[0]).astype(np.intp), (iy - starts[1]).astype(np.intp), (ix - starts[2]).astype(np.intp)),
        axes_mm=ref_crop,
        dose_gy=dose_gy.astype(np.float32),
        inv_criterion=(1.0 / criterion_gy).astype(np.float32),
    )
    crop_z, crop_y, crop_x = (
        _crop_range(ref_axis, eval_axis, limit_mm) for ref_axis, eval_axis in zip(ref_crop, eval_axes, strict=True)
    )
    values = np.ascontiguousarray(
        eval_dose[crop_z[0] : crop_z[1], crop_y[0] : crop_y[1], crop_x[0] : crop_x[1]], dtype=np.float32
    )
    nz, ny, nx = values.shape
    block = _Block(
        values=values.ravel(),
        shape=(nz, ny, nx),
        strides=(ny * nx, nx, 1),
        crops=(crop_z, crop_y, crop_x),
        eval_axes=eval_axes,
    )
    distances = list(_shell_distances_mm(distance_mm, step_mm, limit_mm))

    gamma2 = np.full(dose_gy.size, np.inf, dtype=np.float64)
    remaining = np.arange(dose_gy.size)
    aligned = _aligned_geometry(ref_crop, block)
    if aligned is not None:
        remaining = _search_aligned(
            gamma2, points, block, aligned, distances, step_mm=step_mm, distance_mm=distance_mm, limit_mm=limit_mm
        )
    if remaining.size:
        _search_shells(gamma2, remaining, points, block, distances, step_mm=step_mm, distance_mm=distance_mm)
    return gamma2


# --- general grids: shell by shell, per-point trilinear interpolation ---------------------------------------------


@dataclass(frozen=True)
class _AxisTables:
    """Per-axis lookup for one shell: for each reference coordinate (row) and shell offset (column), the flat
    index contribution of the lower evaluated neighbour and the weight of the upper one (NaN when outside)."""

    base: npt.NDArray[np.int64]
    weight: npt.NDArray[np.float32]


def _axis_tables(
    ref_axis: FloatArray, offsets: FloatArray, eval_axis: FloatArray, crop: tuple[int, int], stride: int
) -> _AxisTables:
    positions = ref_axis[:, None] + offsets[None, :]
    inside = (positions >= eval_axis[0]) & (positions <= eval_axis[-1])
    # fractional index on the evaluated axis (exact for uneven spacing too), relative to the block
    u = np.interp(positions, eval_axis, np.arange(eval_axis.size, dtype=np.float64)) - crop[0]
    lower = np.clip(np.floor(u), 0, crop[1] - crop[0] - 2)
    weight = (u - lower).astype(np.float32)
    weight[~inside] = np.nan
    return _AxisTables(base=(lower.astype(np.int64) * stride), weight=weight)


def _crop_range(points_mm: FloatArray, eval_axis: FloatArray, reach_mm: float) -> tuple[int, int]:
    """Index range [start, stop) of the evaluated axis that search positions can reach (plus one neighbour)."""
    lo = float(points_mm.min()) - reach_mm
    hi = float(points_mm.max()) + reach_mm
    start = max(int(np.searchsorted(eval_axis, lo, side="right")) - 2, 0)
    stop = min(int(np.searchsorted(eval_axis, hi, side="left")) + 2, eval_axis.size)
    if stop - start < 2:
        start, stop = (0, 2) if stop <= 2 else (eval_axis.size - 2, eval_axis.size)
    return start, stop


def _search_shells(
    gamma2: FloatArray,
    subset: npt.NDArray[np.intp],
    points: _Points,
    block: _Block,
    distances: list[float],
    *,
    step_mm: float,
    distance_mm: float,
) -> None:
    """Update ``gamma2[subset]`` shell by shell, each point leaving once ``d / DTA >= gamma``."""
    padded = np.concatenate([block.values, np.zeros(block.strides[0] + block.strides[1] + 2, dtype=np.float32)])
    corners = {
        (a, b, c): padded[offset : offset + block.values.size]
        for a, b, c in _CORNERS
        for offset in (a * block.strides[0] + b * block.strides[1] + c,)
    }
    for distance in distances:
        term = (distance / distance_mm) ** 2
        active = subset[gamma2[subset] > term]
        if active.size == 0:
            break
        offsets = _shell_offsets_mm(distance, step_mm)
        tables = [
            _axis_tables(ref_axis, off, eval_axis, crop, stride)
            for ref_axis, off, eval_axis, crop, stride in zip(
                points.axes_mm, offsets, block.eval_axes, block.crops, block.strides, strict=True
            )
        ]
        chunk = max(1, _CHUNK_ELEMENTS // offsets[0].size)
        for i in range(0, active.size, chunk):
            piece = active[i : i + chunk]
            gamma2[piece] = np.fmin(gamma2[piece], term + _min_dose_term(piece, points, tables, corners))


def _min_dose_term(
    piece: npt.NDArray[np.intp],
    points: _Points,
    tables: list[_AxisTables],
    corners: dict[tuple[int, int, int], npt.NDArray[np.float32]],
) -> FloatArray:
    """min over the shell of (De(r') - Dr(r))² / ΔD² for each point (NaN where the whole shell is outside)."""
    pz, py, px = (index[piece] for index in points.index)
    tz, ty, tx = tables
    flat = tz.base[pz] + ty.base[py] + tx.base[px]
    wz, wy, wx = tz.weight[pz], ty.weight[py], tx.weight[px]

    def lerp_x(a: int, b: int) -> npt.NDArray[np.float32]:
        low: npt.NDArray[np.float32] = corners[(a, b, 0)][flat]
        high: npt.NDArray[np.float32] = corners[(a, b, 1)][flat]
        high -= low
        high *= wx
        high += low
        return high

    c00, c01, c10, c11 = lerp_x(0, 0), lerp_x(0, 1), lerp_x(1, 0), lerp_x(1, 1)
    c01 -= c00
    c01 *= wy
    c01 += c00
    c11 -= c10
    c11 *= wy
    c11 += c10
    c11 -= c01
    c11 *= wz
    c11 += c01
    c11 -= points.dose_gy[piece][:, None]
    c11 *= points.inv_criterion[piece][:, None]
    np.square(c11, out=c11)
    smallest: FloatArray = np.fmin.reduce(c11, axis=1).astype(np.float64)
    return smallest


# --- aligned grids: one set of trilinear weights per shell, shared by all points ---------------------------------


@dataclass(frozen=True)
class _Aligned:
    """Reference coordinates all sit at the same fraction of an evaluated cell along each axis.

    Attributes:
        fraction: (z, y, x) common fractional position in [0, 1) of the reference points within their cell.
        node: per axis, the block index of the lower corner of the cell holding each cropped reference coordinate.
        spacing_mm: (z, y, x) evaluated spacing in mm (even within the block).
    """

    fraction: tuple[float, float, float]
    node: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]
    spacing_mm: tuple[float, float, float]


def _aligned_geometry(ref_crop: tuple[FloatArray, FloatArray, FloatArray], block: _Block) -> _Aligned | None:
    """:class:`_Aligned` when the evaluated block is evenly spaced and the reference spacing is an integer multiple
    of it along every axis (same grid, shifted origin, or a finer evaluated grid); otherwise None."""
    fractions = []
    nodes = []
    spacings = []
    for ref_axis, eval_axis, (start, stop) in zip(ref_crop, block.eval_axes, block.crops, strict=True):
        block_axis = eval_axis[start:stop]
        steps = np.diff(block_axis)
        spacing = float(steps.mean())
        if not np.allclose(steps, spacing, rtol=1e-9, atol=0.0):
            return None
        u = (ref_axis - block_axis[0]) / spacing
        node = np.floor(u + 1e-9)
        fraction = np.clip(u - node, 0.0, None)
        if float(np.ptp(fraction)) > 1e-9:
            return None
        fractions.append(float(fraction.mean()))
        nodes.append(node.astype(np.intp))
        spacings.append(spacing)
    return _Aligned(
        fraction=(fractions[0], fractions[1], fractions[2]),
        node=(nodes[0], nodes[1], nodes[2]),
        spacing_mm=(spacings[0], spacings[1], spacings[2]),
    )


@dataclass(frozen=True)
class _Stencil:
    """For aligned grids and one shell: every block node a position of the shell can draw on, relative to the
    lower corner node of the reference point's cell, and the trilinear weight of each node for each position.

    Attributes:
        node_offsets: flat block offsets of the stencil's nodes from the point's node.
        weights: (positions, nodes + 1) matrix; the last column is -1, to subtract the reference dose appended
            below the node doses.
    """

    node_offsets: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]

    @classmethod
    def build(cls, offsets_mm: tuple[FloatArray, FloatArray, FloatArray], aligned: _Aligned, block: _Block) -> _Stencil:
        cells = []
        uppers = []
        for off, fraction, spacing in zip(offsets_mm, aligned.fraction, aligned.spacing_mm, strict=True):
            u = fraction + off / spacing
            cell = np.floor(u)
            cells.append(cell.astype(np.int64))
            uppers.append(u - cell)
        low = (int(cells[0].min()), int(cells[1].min()), int(cells[2].min()))
        high = (int(cells[0].max()) + 1, int(cells[1].max()) + 1, int(cells[2].max()) + 1)
        sizes = (high[0] - low[0] + 1, high[1] - low[1] + 1, high[2] - low[2] + 1)
        n_positions = offsets_mm[0].size
        n_nodes = sizes[0] * sizes[1] * sizes[2]
        weights = np.zeros((n_positions, n_nodes + 1), dtype=np.float64)
        rows = np.arange(n_positions)
        for a, b, c in _CORNERS:
            column = (
                (cells[0] - low[0] + a) * sizes[1] * sizes[2]
                + (cells[1] - low[1] + b) * sizes[2]
                + (cells[2] - low[2] + c)
            )
            weights[rows, column] += (
                (uppers[0] if a else 1.0 - uppers[0])
                * (uppers[1] if b else 1.0 - uppers[1])
                * (uppers[2] if c else 1.0 - uppers[2])
            )
        weights[:, -1] = -1.0
        kz, ky, kx = np.meshgrid(*(np.arange(lo, hi + 1) for lo, hi in zip(low, high, strict=True)), indexing="ij")
        node_offsets = (kz * block.strides[0] + ky * block.strides[1] + kx * block.strides[2]).ravel()
        return cls(node_offsets=node_offsets.astype(np.int64), weights=weights.astype(np.float32))


def _search_aligned(
    gamma2: FloatArray,
    points: _Points,
    block: _Block,
    aligned: _Aligned,
    distances: list[float],
    *,
    step_mm: float,
    distance_mm: float,
    limit_mm: float,
) -> npt.NDArray[np.intp]:
    """Same search positions and result as :func:`_search_shells`, for points whose whole search region lies
    inside the evaluated block; returns the other points (near the evaluated grid's edge).

    On aligned grids every point sees the same trilinear weights for a given search position, so a shell is
    interpolated for many points at once by one matrix product: (positions x stencil nodes) weights times
    (stencil nodes x points) evaluated doses gathered once per point.
    """
    node_z, node_y, node_x = (node[index] for node, index in zip(aligned.node, points.index, strict=True))
    inside = np.ones(node_z.size, dtype=bool)
    for node, fraction, spacing, size in zip(
        (node_z, node_y, node_x), aligned.fraction, aligned.spacing_mm, block.shape, strict=True
    ):
        # nodes reachable within limit_mm: cells floor(fraction - reach) .. floor(fraction + reach), + upper node
        low = int(np.floor(fraction - limit_mm / spacing)) - 1
        high = int(np.floor(fraction + limit_mm / spacing)) + 2
        inside &= (node + low >= 0) & (node + high <= size - 1)
    interior = np.flatnonzero(inside)
    base = (
        node_z[interior] * block.strides[0] + node_y[interior] * block.strides[1] + node_x[interior] * block.strides[2]
    )
    dose = points.dose_gy[interior]
    inv_criterion2 = points.inv_criterion[interior].astype(np.float64) ** 2
    best = np.full(interior.size, np.inf, dtype=np.float64)
    active = np.arange(interior.size)
    for distance in distances:
        term = (distance / distance_mm) ** 2
        active = active[best[active] > term]
        if active.size == 0:
            break
        stencil = _Stencil.build(_shell_offsets_mm(distance, step_mm), aligned, block)
        n_positions, n_columns = stencil.weights.shape
        n_nodes = n_columns - 1
        # keep every product at most _BLAS_SINGLE_THREAD_WORK multiply-adds: single-threaded in OpenBLAS, whose
        # threading costs more than it saves at these sizes (and stalls badly on a loaded machine)
        chunk = int(np.clip(_BLAS_SINGLE_THREAD_WORK // (n_positions * n_columns), 64, 4096))
        rows = max(1, _BLAS_SINGLE_THREAD_WORK // (n_columns * chunk))
        for i in range(0, active.size, chunk):
            piece = active[i : i + chunk]
            stacked = np.empty((n_columns, piece.size), dtype=np.float32)
            np.take(block.values, stencil.node_offsets[:, None] + base[piece][None, :], out=stacked[:n_nodes])
            stacked[n_nodes] = dose[piece]
            smallest = np.full(piece.size, np.inf, dtype=np.float32)
            for row in range(0, n_positions, rows):
                difference = stencil.weights[row : row + rows] @ stacked  # (positions, points): De(r') - Dr(r)
                np.square(difference, out=difference)
                np.minimum(smallest, difference.min(axis=0), out=smallest)
            best[piece] = np.minimum(best[piece], term + smallest * inv_criterion2[piece])
    gamma2[interior] = best
    return np.flatnonzero(~inside)
