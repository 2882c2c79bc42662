"""Input handling for :func:`qa_checks.gamma.gamma_3d`: option checks, axis order, dose checks, the reference box.

The dose grids are read in whole twice (minimum and maximum of each z plane, which both checks the dose and gives
the normalisation dose and the planes above the low-dose threshold); after that only the box of the reference
grid holding every voxel above the threshold is read. The passes over whole grids are split into slabs of planes
run by the caller's :class:`~qa_checks.gamma_search.TaskRunner`.
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
    "check_dose",
    "increasing",
    "plane_extremes",
    "reference_box",
    "require_positive",
    "spacing_mm",
]

FloatArray = npt.NDArray[np.float64]
Axes = tuple[FloatArray, FloatArray, FloatArray]
Box = tuple[slice, slice, slice]

CHUNK_BYTES: Final = 1 << 19
"""Planes read at once when taking their minimum and then their maximum (the second pass reads from cache)."""


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


def plane_extremes(dose: FloatArray, runner: TaskRunner) -> tuple[FloatArray, FloatArray]:
    """Minimum and maximum dose of each z plane (NaN where a plane holds NaN), in slabs of planes (one slab per
    thread); each slab in chunks of planes small enough to stay in cache between the two reductions."""
    n_planes = dose.shape[0]
    low = np.empty(n_planes, dtype=np.float64)
    high = np.empty(n_planes, dtype=np.float64)
    chunk = max(1, CHUNK_BYTES // max(1, dose[0].nbytes))

    def slab(first: int, stop: int) -> None:
        for start in range(first, stop, chunk):
            part = slice(start, min(start + chunk, stop))
            np.min(dose[part], axis=(1, 2), out=low[part])
            np.max(dose[part], axis=(1, 2), out=high[part])

    bounds = np.linspace(0, n_planes, min(runner.threads, n_planes) + 1).round().astype(int).tolist()
    runner.run([partial(slab, a, b) for a, b in itertools.pairwise(bounds) if b > a])
    return low, high


def check_dose(grid: DoseGrid, name: str, low: FloatArray, high: FloatArray) -> float:
    """Maximum dose in Gy, from the planes' extremes ``low`` and ``high`` of ``grid``'s dose; raise ValueError
    naming the grid and the first NaN, infinite or negative voxel."""
    smallest, largest = float(low.min()), float(high.max())  # NaN propagates
    if smallest >= 0.0 and math.isfinite(largest):
        return largest
    dose = grid.values_gy
    bad = ~np.isfinite(dose) | (dose < 0.0)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f" ({grid.path})" if grid.path else ""
    raise ValueError(
        f"{name} dose grid{where} has {int(bad.sum())} voxel(s) with NaN, infinite or negative dose; "
        f"first at (z, y, x) index {first}: {float(dose[first])!r} Gy"
    )


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
