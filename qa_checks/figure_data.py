"""Figure data for reports: where to cut a volume, what to draw there. Pure geometry, no plotting.

Conventions: volumes are indexed (z, y, x) with voxel-centre coordinates in patient LPS mm; an *axial slice* is
one z index; 2-D points are (x, y) in mm, the way a slice is drawn (x across, y down, as radiotherapy viewers show
a supine patient: anterior at the top).

Definitions
    - *centroid*: the mean (z, y, x) position, in mm, of the voxels of a mask, each voxel weighted equally (the
      grids here have uniform spacing along each axis).
    - *slice through a structure*: the axial slice whose z is nearest the centroid's z (ties go to the lower
      index).
    - *contours on a plane*: the structure's closed planar contours whose plane lies within ``tolerance_mm`` of
      the slice's z, as drawn (no rasterisation: the reviewer sees the polygons that were submitted).
    - *image extent*: the rectangle covered by a slice's pixels, from the outer edges of the first and last
      voxels (half a voxel beyond the centres), as ``(left, right, bottom, top)`` in mm for ``imshow``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa_checks.errors import InvalidGridError
from qa_checks.geometry import Grid, check_axis
from qa_checks.structures import Structure

__all__ = [
    "Window",
    "centroid_mm",
    "contours_on_plane",
    "image_extent_mm",
    "nearest_index",
    "slice_through",
    "window_around",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Window:
    """A rectangle of a slice to show, in mm: x from ``x_min_mm`` to ``x_max_mm``, y likewise."""

    x_min_mm: float
    x_max_mm: float
    y_min_mm: float
    y_max_mm: float


def nearest_index(axis_mm: npt.ArrayLike, value_mm: float) -> int:
    """Index of the coordinate of ``axis_mm`` (1-D, strictly monotonic) nearest ``value_mm`` (the lower on a tie).

    Raises:
        ValueError: ``value_mm`` is not finite.
        InvalidGridError: ``axis_mm`` is not 1-D and strictly monotonic.
    """
    axis = check_axis(axis_mm, name="axis_mm")
    if not np.isfinite(value_mm):
        raise ValueError(f"value_mm must be a finite number of mm; got {value_mm!r}")
    distance = np.abs(axis - float(value_mm))
    return int(np.flatnonzero(distance == distance.min())[0])


def centroid_mm(mask: npt.NDArray[np.bool_], grid: Grid) -> tuple[float, float, float] | None:
    """The (z, y, x) centroid in mm of the voxels of ``mask`` on ``grid``; None for an empty mask.

    Raises:
        ValueError: the mask's shape is not the grid's.
    """
    z, y, x = np.asarray(grid.z_mm), np.asarray(grid.y_mm), np.asarray(grid.x_mm)
    if mask.shape != (z.size, y.size, x.size):
        raise ValueError(f"mask shape {mask.shape} is not the grid's {(z.size, y.size, x.size)}")
    count = int(np.count_nonzero(mask))
    if count == 0:
        return None
    # Per-axis voxel counts: the centroid without listing every voxel's indices.
    per_z = np.count_nonzero(mask, axis=(1, 2))
    per_y = np.count_nonzero(mask, axis=(0, 2))
    per_x = np.count_nonzero(mask, axis=(0, 1))
    return (
        float(np.dot(per_z, z) / count),
        float(np.dot(per_y, y) / count),
        float(np.dot(per_x, x) / count),
    )


def slice_through(mask: npt.NDArray[np.bool_], grid: Grid) -> int | None:
    """The axial slice (z index) nearest the centroid of ``mask``; None for an empty mask."""
    centre = centroid_mm(mask, grid)
    return None if centre is None else nearest_index(np.asarray(grid.z_mm), centre[0])


def contours_on_plane(structure: Structure, z_mm: float, *, tolerance_mm: float) -> tuple[FloatArray, ...]:
    """The closed planar contours of ``structure`` lying within ``tolerance_mm`` of the plane ``z = z_mm``, each
    as an (N, 2) array of (x, y) in mm, in the order the RTSTRUCT lists them.

    Raises:
        ValueError: ``tolerance_mm`` negative or not finite.
    """
    if not (np.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ValueError(f"tolerance_mm must be a finite number >= 0; got {tolerance_mm!r}")
    return tuple(
        np.ascontiguousarray(c.points_mm[:, :2])
        for c in structure.closed_planar_contours
        if abs(c.z_mm - z_mm) <= tolerance_mm
    )


def image_extent_mm(x_mm: npt.ArrayLike, y_mm: npt.ArrayLike) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` in mm of a slice whose pixel centres are ``x_mm`` (columns) and ``y_mm``
    (rows): the outer edges, half a pixel beyond the first and last centres, with row 0 at the top (``imshow``'s
    default origin).

    Raises:
        InvalidGridError: an axis is not 1-D and strictly monotonic, or has a single coordinate (no pixel size).
    """
    x = check_axis(x_mm, name="x_mm")
    y = check_axis(y_mm, name="y_mm")
    if x.size < 2 or y.size < 2:
        raise InvalidGridError(f"a slice needs two or more pixels along x and y; got {x.size} x {y.size}")
    hx = (x[-1] - x[0]) / (x.size - 1) / 2
    hy = (y[-1] - y[0]) / (y.size - 1) / 2
    return (float(x[0] - hx), float(x[-1] + hx), float(y[-1] + hy), float(y[0] - hy))


def window_around(paths: Sequence[FloatArray], *, margin_mm: float, min_size_mm: float) -> Window | None:
    """The bounding rectangle of every point of ``paths`` ((N, 2) arrays of (x, y) mm), widened by ``margin_mm``
    on each side and then, about its centre, to at least ``min_size_mm`` along each axis; None without points.
    """
    points = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in paths if len(p)]
    if not points:
        return None
    allp = np.concatenate(points)
    lo = allp.min(axis=0) - margin_mm
    hi = allp.max(axis=0) + margin_mm
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2, min_size_mm / 2)
    return Window(
        float(centre[0] - half[0]), float(centre[0] + half[0]), float(centre[1] - half[1]), float(centre[1] + half[1])
    )
