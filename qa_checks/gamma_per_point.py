"""Per-point trilinear interpolation for the gamma search (:mod:`qa_checks.gamma_search`).

Used where weights cannot be shared between points (see :mod:`qa_checks.gamma_shared`): unevenly spaced evaluated
grids, phase classes of a single point, and points whose search region reaches the edge of the evaluated grid.
For each shell, per-axis tables give, for every reference coordinate and shell offset, the flat index
contribution of the lower evaluated neighbour and the weight of the upper one (NaN outside the evaluated grid's
voxel-centre box, so that positions outside are skipped); then eight gathers and seven linear interpolations per
point and position. Arrays are indexed (z, y, x); coordinates in mm; doses in Gy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from qa_checks.gamma_search import Axes, EvaluatedBlock, IndexArray, SearchPoints

__all__ = ["PerPointSearch"]

FloatArray = npt.NDArray[np.float64]

_CHUNK_ELEMENTS: Final = 1 << 18
"""Points x shell positions handled at once (bounds temporaries to a few MB each)."""

_CORNERS: Final = tuple((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1))
"""The 8 corners of a cell, as (z, y, x) steps from its lower corner."""


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


class PerPointSearch:
    """Per-point trilinear interpolation over the block (the 8 cell corners as shifted views of it)."""

    def __init__(self, points: SearchPoints, block: EvaluatedBlock) -> None:
        self._points = points
        self._block = block
        self._corners: dict[tuple[int, int, int], npt.NDArray[np.float32]] = {}

    def _corner_views(self) -> dict[tuple[int, int, int], npt.NDArray[np.float32]]:
        """The block from each corner's offset on (views; a lower node is at most the last but one along each
        axis, so every corner of its cell is inside the block)."""
        if not self._corners:
            block = self._block
            for a, b, c in _CORNERS:
                self._corners[(a, b, c)] = block.values[a * block.strides[0] + b * block.strides[1] + c :]
        return self._corners

    def shell_tasks(
        self, gamma2: FloatArray, subset: IndexArray, offsets: Axes, term: float
    ) -> list[Callable[[], None]]:
        """Independent tasks that update ``gamma2[subset]`` with the shell of the given offsets at
        ``term = (d / DTA)²``."""
        points, block = self._points, self._block
        tables, rows = [], []
        for ref_axis, off, eval_axis, crop, stride, row in zip(
            points.axes_mm, offsets, block.eval_axes, block.crops, block.strides, points.index(subset), strict=True
        ):
            # tables only for the reference coordinates of the points searched (few in the last shells)
            used = np.zeros(ref_axis.size, dtype=np.bool_)
            used[row] = True
            if np.count_nonzero(used) < ref_axis.size:
                row = (np.cumsum(used) - 1)[row]
                ref_axis = ref_axis[used]
            tables.append(_axis_tables(ref_axis, off, eval_axis, crop, stride))
            rows.append(row)
        corners = self._corner_views()
        chunk = max(1, _CHUNK_ELEMENTS // offsets[0].size)

        def update(part: slice) -> None:
            piece = subset[part]
            index = (rows[0][part], rows[1][part], rows[2][part])
            gamma2[piece] = np.fmin(gamma2[piece], term + _min_dose_term(piece, points, index, tables, corners))

        return [partial(update, slice(i, i + chunk)) for i in range(0, subset.size, chunk)]


def _min_dose_term(
    piece: IndexArray,
    points: SearchPoints,
    index: tuple[IndexArray, IndexArray, IndexArray],
    tables: list[_AxisTables],
    corners: dict[tuple[int, int, int], npt.NDArray[np.float32]],
) -> FloatArray:
    """min over the shell of (De(r') - Dr(r))² / ΔD² for each point of ``piece`` (NaN where the whole shell is
    outside); ``index``: each point's row in each axis's table."""
    pz, py, px = index
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
