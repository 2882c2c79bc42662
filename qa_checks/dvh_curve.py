"""The continuous cumulative DVH of dose samples that each spread their volume over a dose interval.

Model
    Sample i has dose d_i (Gy), volume v_i (cc) and a *dose spread* δ_i ≥ 0 (Gy): the range of dose inside the
    volume it stands for, estimated from the local dose gradient (:func:`dose_spread_gy`). Its volume is taken
    as uniformly distributed over ``[d_i − δ_i/2, d_i + δ_i/2]``. The cumulative DVH is then

        V(D) = Σ_i v_i · clip((d_i + δ_i/2 − D) / δ_i, 0, 1)      (a step ``v_i · [d_i ≥ D]`` when δ_i = 0,
                                                                    i.e. below :data:`SPREAD_FLOOR_GY`),

    continuous and piecewise linear in D, with jumps only at the doses of samples with δ_i = 0 (a plateau:
    uniform dose). In a linear dose gradient along a grid axis the dose inside a voxel *is* uniformly
    distributed over g·h, so V(D) is exact for a voxelised structure there; in a plateau δ = 0 and nothing is
    smeared. ``D_x`` is the inverse: the dose at which V reaches x (the lowest such dose within a plateau's jump,
    i.e. the plateau's dose), kept within [min, max] of the sample doses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["SPREAD_FLOOR_GY", "cumulative_volume_cc", "curve_points", "dose_spread_gy"]

SPREAD_FLOOR_GY: Final = 1e-6
"""Dose spreads below this (Gy) are taken as 0 (a plateau). Interpolating a uniform dose leaves spreads of
~1e-14 Gy from rounding; dividing volumes by them would make the sums cancel catastrophically. 1 µGy is far
below the 1e-4 Gy quantum of a typical (3004,000E) DoseGridScaling."""

FloatArray = npt.NDArray[np.float64]


def dose_spread_gy(values_gy: FloatArray, axes_mm: Sequence[FloatArray], widths_mm: Sequence[FloatArray]) -> FloatArray:
    """Dose spread δ (Gy) of every voxel of a (z, y, x) block: Σ over axes of |∂D/∂a| × voxel width along a.

    ∂D/∂a by :func:`numpy.gradient` on the voxel-centre coordinates ``axes_mm`` (central differences inside,
    one-sided at the block's faces; an axis with one voxel contributes 0). ``widths_mm[a]`` are the voxel widths
    along axis a (mm). For a dose linear along one axis, δ is exactly the dose range inside each voxel.
    """
    spread = np.zeros(values_gy.shape, dtype=np.float64)
    for dim in range(3):
        if values_gy.shape[dim] < 2:
            continue
        gradient = np.gradient(values_gy, axes_mm[dim], axis=dim)
        shape = [1, 1, 1]
        shape[dim] = values_gy.shape[dim]
        spread += np.abs(gradient) * np.asarray(widths_mm[dim], dtype=np.float64).reshape(shape)
    spread[spread < SPREAD_FLOOR_GY] = 0.0
    return spread


def _sum_above(keys: FloatArray, weights: FloatArray, at: FloatArray, *, strict: bool) -> FloatArray:
    """For each value of ``at``: the sum of ``weights`` whose key is > it (``strict``) or ≥ it."""
    order = np.argsort(keys, kind="stable")
    cumulative = np.concatenate([[0.0], np.cumsum(weights[order])])
    index = np.searchsorted(keys[order], at, side="right" if strict else "left")
    return np.asarray(cumulative[-1] - cumulative[index], dtype=np.float64)


def cumulative_volume_cc(
    dose_gy: FloatArray, volume_cc: FloatArray, spread_gy: FloatArray, at_gy: FloatArray
) -> FloatArray:
    """V(D) of the module docstring (cc) at each dose of ``at_gy``: volume receiving at least that dose."""
    at = np.asarray(at_gy, dtype=np.float64)
    lo = dose_gy - spread_gy / 2
    hi = dose_gy + spread_gy / 2
    flat = spread_gy <= 0
    full = _sum_above(lo, volume_cc, at, strict=False)  # samples entirely at or above D
    spreading = ~flat
    if np.any(spreading):
        a = volume_cc[spreading] / spread_gy[spreading]
        c = a * hi[spreading]
        # Partly above D: hi > D > lo  =  {hi > D} minus {lo >= D}; each contributes a·(hi − D) = c − a·D.
        c_sum = _sum_above(hi[spreading], c, at, strict=True) - _sum_above(lo[spreading], c, at, strict=False)
        a_sum = _sum_above(hi[spreading], a, at, strict=True) - _sum_above(lo[spreading], a, at, strict=False)
        full = full + (c_sum - a_sum * at)
    return np.asarray(np.clip(full, 0.0, float(np.sum(volume_cc))), dtype=np.float64)


def curve_points(dose_gy: FloatArray, volume_cc: FloatArray, spread_gy: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(volumes, doses) of V(D)'s corners, volumes non-decreasing and doses non-increasing, for
    ``numpy.interp(x, volumes, doses)`` to give D_x. Each breakpoint b appears twice: with the volume just above
    it and the volume at it (they differ at a plateau's jump)."""
    lo = dose_gy - spread_gy / 2
    hi = dose_gy + spread_gy / 2
    breaks = np.unique(np.concatenate([lo, hi]))[::-1]  # descending doses
    at = cumulative_volume_cc(dose_gy, volume_cc, spread_gy, breaks)
    flat = spread_gy <= 0
    jump = _sum_above(dose_gy[flat], volume_cc[flat], breaks, strict=False) - _sum_above(
        dose_gy[flat], volume_cc[flat], breaks, strict=True
    )
    above = np.clip(at - jump, 0.0, None)
    volumes = np.empty(2 * breaks.size)
    volumes[0::2], volumes[1::2] = above, at
    doses = np.repeat(breaks, 2)
    volumes = np.maximum.accumulate(volumes)  # float rounding of the sums must not break monotonicity
    return volumes, np.asarray(doses, dtype=np.float64)
