"""Input handling for :func:`qa_checks.gamma.gamma_3d`: option checks, axis order, dose checks, the reference box.

Each dose grid is read in whole once, by one reduction: the maximum of each z plane of its float64 values read as
unsigned 64-bit integers. A float64 is a finite number >= +0 exactly when its bit pattern, as an unsigned integer,
is below that of +infinity (``0x7FF0000000000000``): negative numbers (-0 included) have the sign bit set, and
NaN and infinities have every exponent bit set. On such numbers the integer order is the numeric order, so the
same reduction checks the grid and gives each plane's maximum dose (the normalisation dose and the planes above
the low-dose threshold). Only when the check fails (or a plane holds -0) are the values examined one by one.
After that only the box of the reference grid holding every voxel above the threshold is read. The passes over
whole grids are split into slabs of planes run by the caller's :class:`~qa_checks.gamma_search.TaskRunner`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import partial
from typing import Final

import numpy as np
import numpy.typing as npt

from qa_checks.errors import InvalidGridError
from qa_checks.gamma_search import TaskRunner
from qa_checks.geometry import DoseGrid

__all__ = [
    "Box",
    "above_threshold",
    "checked_plane_maxima",
    "increasing",
    "reference_box",
    "require_positive",
    "spacing_mm",
]

FloatArray = npt.NDArray[np.float64]
Axes = tuple[FloatArray, FloatArray, FloatArray]
Box = tuple[slice, slice, slice]

FINITE_BITS_LIMIT: Final = 0x7FF0000000000000
"""Bit pattern of +infinity as an unsigned 64-bit integer: a float64 is finite and >= +0 exactly when its bit
pattern is below this."""


def require_positive(name: str, value: float) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a positive number; got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")


def increasing(grid: DoseGrid, name: str) -> tuple[Axes, FloatArray, tuple[bool, bool, bool]]:
    """(z, y, x) axes in increasing order and the dose flipped to match (a view); which axes were flipped.

    Raises:
        InvalidGridError: an axis has a single coordinate.
    """
    flips = tuple(bool(axis.size > 1 and axis[-1] < axis[0]) for axis in (grid.z_mm, grid.y_mm, grid.x_mm))
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
    return (axes[0], axes[1], axes[2]), dose, (flips[0], flips[1], flips[2])


def checked_plane_maxima(grid: DoseGrid, dose: FloatArray, name: str, runner: TaskRunner) -> FloatArray:
    """Maximum dose of each z plane of ``dose`` (``grid``'s dose, axes possibly flipped), in slabs of planes (one
    slab per thread), after checking every voxel; raise ValueError naming the grid and the first NaN, infinite or
    negative voxel."""
    n_planes = dose.shape[0]
    bits = dose.view(np.uint64)
    high_bits = np.empty(n_planes, dtype=np.uint64)

    def slab(first: int, stop: int) -> None:
        np.max(bits[first:stop], axis=(1, 2), out=high_bits[first:stop])

    bounds = np.linspace(0, n_planes, min(runner.threads, n_planes) + 1).round().astype(int).tolist()
    runner.run([partial(slab, a, b) for a, b in itertools.pairwise(bounds) if b > a])
    if int(high_bits.max()) < FINITE_BITS_LIMIT:
        high: FloatArray = high_bits.view(np.float64)
        return high
    values = grid.values_gy
    bad = ~np.isfinite(values) | (values < 0.0)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" ({grid.path})" if grid.path else ""
        raise ValueError(
            f"{name} dose grid{where} has {int(bad.sum())} voxel(s) with NaN, infinite or negative dose; "
            f"first at (z, y, x) index {first}: {float(values[first])!r} Gy"
        )
    exact: FloatArray = np.max(dose, axis=(1, 2))  # some voxels are -0
    return exact


def above_threshold(cutoff_gy: float, *, local: bool) -> Callable[[FloatArray], npt.NDArray[np.bool_]]:
    """Which doses are evaluated: ``>= cutoff_gy``, and also ``> 0`` in local mode. The test only depends on the
    dose increasing past a threshold, so a plane (row, column) holds such a voxel exactly when its maximum passes."""
    if local and cutoff_gy <= 0.0:
        return lambda dose: np.greater(dose, 0.0)
    return lambda dose: np.greater_equal(dose, cutoff_gy)


def reference_box(
    dose: FloatArray, plane_high: FloatArray, evaluated: Callable[[FloatArray], npt.NDArray[np.bool_]]
) -> tuple[Box, npt.NDArray[np.bool_]] | None:
    """The smallest (z, y, x) box of ``dose`` holding every voxel to evaluate, and which voxels of the box are
    evaluated; None when no voxel is. ``plane_high``: the maximum dose of each z plane."""
    planes = np.flatnonzero(evaluated(plane_high))
    if planes.size == 0:
        return None
    z = slice(int(planes[0]), int(planes[-1]) + 1)
    column_high = np.max(dose[z], axis=0)  # (y, x): planes below the threshold cannot pass it
    rows = np.flatnonzero(evaluated(column_high.max(axis=1)))
    columns = np.flatnonzero(evaluated(column_high.max(axis=0)))
    box = (z, slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1))
    return box, evaluated(dose[box])


def spacing_mm(axes: Axes) -> tuple[float, float, float]:
    """(z, y, x) mean spacing in mm."""
    z, y, x = (float(abs(a[-1] - a[0]) / (a.size - 1)) for a in axes)
    return (z, y, x)
