"""The TPS-check oracle: bounds on the gamma pass rate from the deviations' closed forms, not from a gamma code.

Gamma (AAPM TG-218, as the protocol states it): a reference point ``r`` is evaluated when ``Dr(r)`` is at least the
low-dose threshold (% of the maximum reference dose); it passes when some position ``r'`` within the distance
criterion ``DTA`` has ``|r' - r|² / DTA² + (De(r') - Dr(r))² / ΔD² <= 1``, with ``De`` the submitted dose
interpolated trilinearly, ``ΔD`` the dose criterion (% of the maximum reference dose, global; % of ``Dr(r)``,
local). The pass rate is the % of evaluated points that pass. Here both doses are on the dose model's grid.

Lower bound (points that surely pass)
    * *On dose alone*: the position ``r`` itself is always searched, so ``|De(r) - Dr(r)| <= ΔD`` passes. For a
      uniform scale by ``s`` this is ``|s - 1| · Dr(r) <= ΔD``; for noise it is the realised noise within ``ΔD``
      (for Gaussian noise of standard deviation ``σ`` in the body, about a fraction ``erf(ΔD / (σ √2))`` of the
      points).
    * *After a rigid shift* by ``d`` (the sum of the ``dose_shift_mm`` deviations): the position ``q = r + d`` is
      within ``DTA`` when ``|d| < DTA``. Search positions lie on shells ``s_step`` apart with neighbours at most
      ``s_step`` apart (:data:`SEARCH_STEP_FRACTION` of ``DTA``), so some position ``p`` lies within ``s_step`` of
      ``q``, where the trilinear dose differs from ``De(q)`` by at most ``L · s_step`` (``L`` the largest gradient
      of the trilinear interpolant in the cells around ``q``). Hence ``r`` passes if
      ``((|d| + s_step) / DTA)² + ((|De(q) - Dr(r)| + L · s_step) / ΔD)² <= 1`` (``q`` inside the grid).

Upper bound (points that cannot pass)
    ``De(r')`` for ``|r' - r| <= DTA`` is a weighted mean of the doses at the corners of the cell holding ``r'``,
    so over the ball it lies between the minimum and maximum of the corners of the cells the ball touches (a
    minimum / maximum filter; positions off the grid are not searched, so nodes off the grid are ignored). The
    cells are those of the grid refined :data:`REFINEMENT` times per axis (the interpolant at the refined nodes,
    trilinear within each refined cell), which tightens the bound near steep gradients. Cells are taken ring by
    ring (:data:`GAP_RINGS`): a position at least ``f · DTA`` from ``r`` passes only with a dose difference of at
    most ``sqrt(1 - f²) · ΔD``. A point whose ``Dr(r)`` lies farther than that from the range of every ring fails
    whatever the search.

An outcome is given only when both bounds lead to the same outcome under the protocol's gamma criterion;
otherwise the expected outcome is ``None``, "not decided by the deviation's closed form".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from benchmarks.protocols import GammaSection
from benchmarks.simulation.plans import PlanDeviation, PlanDeviationKind
from qa_checks.protocol import Criterion, OutcomeLevel, evaluate_criterion

__all__ = [
    "NOT_DECIDED",
    "SEARCH_STEP_FRACTION",
    "GammaBounds",
    "expected_gamma_outcome",
    "gamma_outcome_from_bounds",
    "gamma_pass_rate_bounds",
]

SEARCH_STEP_FRACTION: Final = 0.1
"""Largest gap between neighbouring gamma search positions as a fraction of ``DTA`` (TG-218 asks for a search
step well below the DTA; the scorer uses ``DTA / 10``, pymedphys' ``interp_fraction`` 10). A finer search only
makes the lower bound safer."""

REFINEMENT: Final = 4
"""Refinement of the dose grid (per axis) for the upper bound: finer is tighter and slower."""

GAP_RINGS: Final = (0.0, 0.4, 0.6, 0.75, 0.85, 0.93)
"""Rings of the DTA ball for the upper bound, as the fraction of ``DTA`` where each begins: a cell at least
``f · DTA`` away leaves a dose difference of at most ``sqrt(1 - f²) · ΔD`` for gamma <= 1."""

NOT_DECIDED: Final = "not decided by the deviation's closed form"
"""Reason prefix when the bounds straddle a protocol level."""

Array = NDArray[np.float64]


@dataclass(frozen=True)
class GammaBounds:
    """Bounds on the gamma pass rate of a submitted dose against the reference dose (same grid).

    Attributes:
        lower_percent: % of evaluated points that surely pass.
        upper_percent: 100 minus the % of evaluated points that surely fail.
        n_evaluated: reference points at or above the low-dose threshold.
        basis: how the bounds were obtained (for reasons and reports).
    """

    lower_percent: float
    upper_percent: float
    n_evaluated: int
    basis: str


def _criterion_gy(gamma: GammaSection, reference: Array) -> tuple[NDArray[np.bool_], Array]:
    """(evaluated points, ΔD in Gy at every point) for the protocol's gamma section."""
    d_max = float(reference.max())
    evaluated = reference >= gamma.low_dose_threshold_percent / 100.0 * d_max
    if gamma.normalisation == "local":
        evaluated &= reference > 0
        return evaluated, gamma.dose_percent / 100.0 * reference
    return evaluated, np.full(reference.shape, gamma.dose_percent / 100.0 * d_max)


def _node_footprint(
    spacing_mm: Sequence[float], distance_mm: float, *, nearest_from_mm: float = 0.0
) -> NDArray[np.bool_]:
    """Grid-node offsets (a (z, y, x) boolean footprint) that are corners of a cell nearer than ``distance_mm`` to a
    node (and whose nearest point is at least ``nearest_from_mm`` away). Every point of the closed ball of radius
    ``distance_mm`` lies in such a cell (a point at exactly that distance is the limit of nearer points on the
    segment from the node, so a cell holding them holds it)."""
    reach = [math.ceil(distance_mm / h) + 1 for h in spacing_mm]
    footprint = np.zeros([2 * k + 1 for k in reach], dtype=bool)
    for lower in itertools.product(*[range(-k, k) for k in reach]):
        # nearest point of the cell [lower, lower + 1] (in voxels) to the origin, per axis, in mm
        gap = [0.0 if a <= 0 <= a + 1 else min(abs(a), abs(a + 1)) * h for a, h in zip(lower, spacing_mm, strict=True)]
        if nearest_from_mm <= math.hypot(*gap) < distance_mm:
            for corner in itertools.product((0, 1), repeat=3):
                footprint[tuple(a + c + k for a, c, k in zip(lower, corner, reach, strict=True))] = True
    return footprint


def _interpolate_along(values: Array, axis: int, offset: float) -> Array:
    """``values`` linearly interpolated at ``index + offset`` along ``axis`` (NaN off the grid; exact at nodes)."""
    n = values.shape[axis]
    position = np.arange(n) + offset
    below = np.clip(np.floor(position).astype(np.intp), 0, max(n - 2, 0))
    t = position - below
    upper = np.minimum(below + 1, n - 1)
    shape = [1, 1, 1]
    shape[axis] = n
    t = t.reshape(shape)
    out = np.take(values, below, axis=axis) * (1.0 - t) + np.take(values, upper, axis=axis) * t
    outside = ((position < -1e-9) | (position > n - 1 + 1e-9)).reshape(shape)
    return np.where(outside, np.nan, out)


def _extremes_within(
    values: Array, where: NDArray[np.bool_], *, spacing_mm: Sequence[float], distance_mm: float
) -> list[tuple[float, Array, Array]]:
    """Bounds on the trilinear interpolant of ``values`` over the ball of radius ``distance_mm`` around every node
    of ``where``, ring by ring: ``(f, upper, lower)`` for the cells whose nearest point lies between ``f`` and
    the next ring's fraction of ``distance_mm`` (:data:`GAP_RINGS`); ``-inf`` / ``+inf`` where no such cell is
    on the grid and outside ``where``.

    The grid is refined :data:`REFINEMENT` times along each axis: the interpolant restricted to a refined cell is
    trilinear with the interpolant's values at the refined nodes as corners, so its extremes there are at those
    corners; each ring's bounds are the extremes over the corners of its refined cells (:func:`_node_footprint`
    on the refined spacing).
    """
    rings = [*GAP_RINGS, 1.0]
    fine = [h / REFINEMENT for h in spacing_mm]
    footprints = [
        _node_footprint(fine, rings[j + 1] * distance_mm, nearest_from_mm=rings[j] * distance_mm)
        for j in range(len(GAP_RINGS))
    ]
    out = [(f, np.full(values.shape, -np.inf), np.full(values.shape, np.inf)) for f in GAP_RINGS]
    if not where.any():
        return out
    size = (
        max(fp.shape[0] for fp in footprints),
        max(fp.shape[1] for fp in footprints),
        max(fp.shape[2] for fp in footprints),
    )
    reach = [(n - 1) // 2 for n in size]
    padded = []
    for fp in footprints:
        pad = [((n - m) // 2, (n - m) // 2) for n, m in zip(size, fp.shape, strict=True)]
        padded.append(np.pad(fp, pad))
    union = np.logical_or.reduce(padded)
    # Work on the box of the points asked for, with the nodes their balls can reach.
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(where.any(axis=other))
        margin = math.ceil(reach[axis] / REFINEMENT) + 1
        box.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, values.shape[axis])))
    block = values[tuple(box)]
    tops = [np.full(block.shape, -np.inf) for _ in GAP_RINGS]
    bottoms = [np.full(block.shape, np.inf) for _ in GAP_RINGS]
    offsets = np.argwhere(union) - np.asarray(reach)
    for uz in np.unique(offsets[:, 0]):
        along_z = _interpolate_along(block, 0, uz / REFINEMENT)
        in_z = offsets[offsets[:, 0] == uz]
        for uy in np.unique(in_z[:, 1]):
            along_zy = _interpolate_along(along_z, 1, uy / REFINEMENT)
            for ux in in_z[in_z[:, 1] == uy, 2]:
                node = _interpolate_along(along_zy, 2, ux / REFINEMENT)
                index = (uz + reach[0], uy + reach[1], ux + reach[2])
                for j, fp in enumerate(padded):
                    if fp[index]:
                        np.fmax(tops[j], node, out=tops[j])
                        np.fmin(bottoms[j], node, out=bottoms[j])
    for (_, high, low), top, bottom in zip(out, tops, bottoms, strict=True):
        high[tuple(box)] = top
        low[tuple(box)] = bottom
    return out


def _cell_gradient_bound(values: Array, spacing_mm: Sequence[float]) -> Array:
    """At every node, a bound (Gy/mm) on the gradient of the trilinear interpolant in the cells within one cell of
    it: per axis the largest node difference along that axis nearby over the spacing, combined in quadrature."""
    squares = np.zeros(values.shape)
    for axis, h in enumerate(spacing_mm):
        if values.shape[axis] < 2:  # a single node along this axis: the interpolant is constant along it
            continue
        diff = np.abs(np.diff(values, axis=axis))
        pad = [(0, 0)] * 3
        pad[axis] = (0, 1)
        edge = np.pad(diff, pad, mode="edge")
        squares += (ndimage.maximum_filter(edge, size=5, mode="nearest") / h) ** 2
    return np.sqrt(squares)


def gamma_pass_rate_bounds(
    reference_gy: Array,
    submitted_gy: Array,
    *,
    spacing_mm: Sequence[float],
    gamma: GammaSection,
    shift_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> GammaBounds:
    """Bounds on the gamma pass rate of ``submitted_gy`` against ``reference_gy`` (Gy, same (z, y, x) grid of
    ``spacing_mm``) under the protocol's ``gamma`` section (see the module docstring); ``shift_mm`` is the rigid
    shift (dz, dy, dx) mm the submitted dose is known to have."""
    evaluated, delta_gy = _criterion_gy(gamma, reference_gy)
    n = int(np.count_nonzero(evaluated))
    if n == 0:
        return GammaBounds(100.0, 100.0, 0, "no point above the low-dose threshold")
    dta = gamma.distance_mm
    passes = np.abs(submitted_gy - reference_gy) <= delta_gy
    basis = "dose difference within the dose criterion at the point itself"
    shift = float(np.linalg.norm(shift_mm))
    step = SEARCH_STEP_FRACTION * dta
    if shift > 0.0 and shift + step < dta:
        vox = [d / h for d, h in zip(shift_mm, spacing_mm, strict=True)]
        at_q = ndimage.shift(submitted_gy, [-v for v in vox], order=1, mode="constant", cval=np.nan)
        slope = ndimage.shift(
            _cell_gradient_bound(submitted_gy, spacing_mm), [-v for v in vox], order=0, mode="nearest"
        )
        dose_room = np.sqrt(1.0 - ((shift + step) / dta) ** 2) * delta_gy
        with np.errstate(invalid="ignore"):
            passes |= np.abs(at_q - reference_gy) + slope * step <= dose_room
        basis += f", or at the shifted position {shift:.3g} mm away (within {step:.3g} mm search step)"
    fails = np.ones(reference_gy.shape, dtype=bool)
    for f, high, low in _extremes_within(submitted_gy, evaluated, spacing_mm=spacing_mm, distance_mm=dta):
        room = math.sqrt(1.0 - f**2) * delta_gy  # the dose difference a point of this ring may still have
        fails &= (reference_gy - room > high) | (reference_gy + room < low)
    lower = 100.0 * int(np.count_nonzero(passes & evaluated)) / n
    upper = 100.0 - 100.0 * int(np.count_nonzero(fails & evaluated)) / n
    basis += f"; fails when no dose within {dta:g} mm comes within the dose criterion"
    return GammaBounds(lower, upper, n, basis)


def gamma_outcome_from_bounds(bounds: GammaBounds, criterion: Criterion) -> tuple[OutcomeLevel | None, str]:
    """The outcome of the gamma ``criterion`` when both bounds lead to it, with a reason; ``(None, reason)``
    otherwise."""
    low = evaluate_criterion(criterion, bounds.lower_percent).outcome
    high = evaluate_criterion(criterion, bounds.upper_percent).outcome
    span = f"gamma pass rate between {bounds.lower_percent:.4g}% and {bounds.upper_percent:.4g}%"
    levels = f"levels {criterion.per_protocol:g}% / {criterion.acceptable:g}%"
    if low is not high:
        return None, f"{NOT_DECIDED}: {span} straddles the {levels} ({bounds.basis})"
    return low, f"{span}: {low.label} ({levels}; {bounds.basis})"


def expected_gamma_outcome(
    deviations: Sequence[PlanDeviation], gamma: GammaSection | dict[str, Any] | None
) -> tuple[OutcomeLevel | None, str]:
    """The gamma outcome (submitted dose evaluated against the reference) implied by the deviations' definitions
    alone, without any dose.

    Predicted only where it follows from the gamma definition with global normalisation to the reference
    maximum: no deviation (identical doses, gamma 0); a single ``dose_scale_percent`` of at most the dose
    criterion (every dose difference is at most that % of the maximum, so gamma <= 1 everywhere); a single
    ``dose_shift_mm`` of at most half the distance criterion (the reference dose is found within the shift,
    and the interpolation error of the shifted grid is a small fraction of the dose criterion). In these cases
    the pass rate is (close to) 100% and the outcome ``per_protocol``. Otherwise ``None``.
    """
    if gamma is None:
        return None, "the protocol has no gamma section"
    if isinstance(gamma, GammaSection):
        gamma = gamma.model_dump()
    dose_percent = float(gamma["dose_percent"])
    distance_mm = float(gamma["distance_mm"])
    criterion = f"{dose_percent:g}%/{distance_mm:g} mm"
    if gamma.get("normalisation", "global") != "global":
        return None, f"not predicted: {criterion} with {gamma.get('normalisation')} normalisation"
    if not deviations:
        return OutcomeLevel.PER_PROTOCOL, f"dose identical to the reference: every point passes {criterion}"
    if len(deviations) == 1:
        dev = deviations[0]
        if dev.kind is PlanDeviationKind.DOSE_SCALE_PERCENT and abs(dev.amount) <= dose_percent:
            return OutcomeLevel.PER_PROTOCOL, f"dose scaled {dev.amount:g}% <= {dose_percent:g}%: every point passes"
        if dev.kind is PlanDeviationKind.DOSE_SHIFT_MM and isinstance(dev.value, tuple):
            shift = float(np.linalg.norm(dev.value))
            if shift <= 0.5 * distance_mm:
                return OutcomeLevel.PER_PROTOCOL, f"dose shifted {shift:.3g} mm <= half of {distance_mm:g} mm"
    return None, f"not predicted from the deviations alone ({criterion}); measure the gamma pass rate"
