"""Rasterise a structure's planar contours onto a (z, y, x) grid.

Rules (chosen to match what treatment planning systems do with contours drawn on CT slices):

In-plane
    All ``CLOSED_PLANAR`` polygons of one plane are combined with the **even-odd rule**: a point inside an odd
    number of polygons is inside, so a polygon inside another is a hole and disjoint polygons are islands.
    A voxel is inside when its **centre** is inside. A centre exactly on the boundary follows a half-open
    convention in patient coordinates: it counts as inside on the low-x and low-y sides of the region and as
    outside on the high-x and high-y sides, so two polygons sharing an edge never both claim a voxel.

Through-plane
    Each contour plane *represents a slab* one contour-plane spacing thick, centred on the plane (the spacing is
    the median distance between the structure's planes; for a single-plane structure, ``plane_spacing_mm`` when
    given (the CT slice thickness: pass it whenever the grid is not the CT, e.g. a dose grid or its sub-voxels),
    else the grid's slice spacing). A grid slice takes the contour plane nearest to it, provided the slice
    centre lies in that plane's slab ``[plane - spacing/2, plane + spacing/2)``; otherwise the slice is empty.
    So slices beyond the first/last plane by half a spacing or more are empty, a gap in the contours wider than
    one spacing is left empty in its middle, and a slice exactly half-way between two planes takes the upper one.
    Contours are never interpolated between planes. Volume is conserved: when contours sit on CT slices,
    the rasterised volume onto any finer or shifted grid equals area × plane spacing per plane, up to
    voxelisation of the boundary.

Fractional occupancy (``fractional=True``)
    Each voxel is divided into ``supersample`` sub-voxels along each of z, y and x; every sub-voxel centre is
    classified with the rules above and the voxel's value is the fraction inside, in [0, 1]. This is what
    small-volume DVHs need; ``supersample=1`` gives the boolean mask as 0.0/1.0.

Speed: work is limited to the structure's in-plane bounding box; each plane is filled by a vectorised
scan-line even-odd fill, computed once per plane however many grid slices use it.
"""

from __future__ import annotations

import logging
from typing import Final, Literal, overload

import numpy as np
import numpy.typing as npt

from qa_checks.errors import UnsupportedGeometryError
from qa_checks.geometry import Grid, check_axis
from qa_checks.structures import PLANE_TOLERANCE_MM, Contour, Structure

__all__ = ["rasterise"]

logger = logging.getLogger(__name__)

COORDINATE_EPSILON_MM: Final = 1e-6
"""Coordinates closer than this (mm) are treated as equal when applying the half-open slab rule, so that float
rounding of grid and contour coordinates (~1e-12 mm) cannot move a slice that lies exactly on a slab boundary."""

IN_PLANE_UNIFORMITY_TOLERANCE: Final = 1e-3
"""Largest deviation, as a fraction of the spacing, of an in-plane axis from uniform spacing. Rasterisation
maps contour points to voxel indices linearly, so a deviation this small moves no boundary by more than
0.001 voxel; anything larger is refused rather than resampled."""


@overload
def rasterise(
    structure: Structure,
    grid: Grid,
    *,
    fractional: Literal[False] = False,
    supersample: int = 1,
    plane_spacing_mm: float | None = None,
) -> npt.NDArray[np.bool_]: ...


@overload
def rasterise(
    structure: Structure,
    grid: Grid,
    *,
    fractional: Literal[True],
    supersample: int = 1,
    plane_spacing_mm: float | None = None,
) -> npt.NDArray[np.float64]: ...


@overload
def rasterise(
    structure: Structure,
    grid: Grid,
    *,
    fractional: bool,
    supersample: int = 1,
    plane_spacing_mm: float | None = None,
) -> npt.NDArray[np.bool_] | npt.NDArray[np.float64]: ...


def rasterise(
    structure: Structure,
    grid: Grid,
    *,
    fractional: bool = False,
    supersample: int = 1,
    plane_spacing_mm: float | None = None,
) -> npt.NDArray[np.bool_] | npt.NDArray[np.float64]:
    """Voxelise ``structure`` on ``grid`` (see the module docstring for the rules).

    Args:
        structure: its ``CLOSED_PLANAR`` contours are used; ``POINT`` and other contours are ignored.
        grid: anything with 1-D voxel-centre coordinate vectors ``z_mm``, ``y_mm``, ``x_mm`` in patient mm
            (an :class:`~qa_checks.geometry.ImageVolume` or :class:`~qa_checks.geometry.DoseGrid`). Axes may
            increase or decrease; y and x must be uniformly spaced.
        fractional: return occupancy fractions instead of a boolean mask.
        supersample: sub-voxels per voxel along each axis when ``fractional`` (1 to 20).
        plane_spacing_mm: the thickness (mm) of a structure drawn on a single plane: the CT slice thickness.
            Default: the grid's slice spacing (right only when the grid is the CT). Ignored for structures on
            several planes (their plane spacing is used).

    Returns:
        Boolean mask, or float64 occupancy in [0, 1] when ``fractional``, shape (len(z_mm), len(y_mm), len(x_mm)).

    Raises:
        UnsupportedGeometryError: a contour is not axial (its points differ in z), or y/x not uniformly spaced.
        InvalidGridError: a grid axis is not 1-D or not strictly monotonic.
        ValueError: ``supersample`` out of range, ``supersample > 1`` without ``fractional``, or
            ``plane_spacing_mm`` not a positive number.
    """
    if plane_spacing_mm is not None and not (np.isfinite(plane_spacing_mm) and plane_spacing_mm > 0):
        raise ValueError(f"plane_spacing_mm must be a positive number of mm; got {plane_spacing_mm!r}")
    if not isinstance(supersample, int | np.integer) or not 1 <= supersample <= 20:
        raise ValueError(f"supersample must be an integer from 1 to 20; got {supersample!r}")
    if supersample > 1 and not fractional:
        raise ValueError("supersample > 1 needs fractional=True (a boolean mask is sampled at voxel centres)")
    n = int(supersample)

    z = check_axis(grid.z_mm, name="z_mm")
    y = check_axis(grid.y_mm, name="y_mm")
    x = check_axis(grid.x_mm, name="x_mm")
    flip = (z.size > 1 and z[1] < z[0], y.size > 1 and y[1] < y[0], x.size > 1 and x[1] < x[0])
    z_asc, y_asc, x_asc = (a[::-1] if f else a for a, f in zip((z, y, x), flip, strict=True))
    shape = (z.size, y.size, x.size)

    planes = _group_planes(structure)
    if not planes:
        logger.debug("structure %r has no closed planar contours: empty mask", structure.name)
        if fractional:
            return np.zeros(shape, dtype=np.float64)
        return np.zeros(shape, dtype=np.bool_)

    plane_z = np.array([p for p, _ in planes], dtype=np.float64)
    if plane_z.size > 1:
        plane_spacing = float(np.median(np.diff(plane_z)))
    elif plane_spacing_mm is not None:
        plane_spacing = float(plane_spacing_mm)
    elif z_asc.size > 1:
        plane_spacing = float(np.median(np.diff(z_asc)))
    else:
        plane_spacing = 0.0

    y0, dy = _uniform(y_asc, "y_mm")
    x0, dx = _uniform(x_asc, "x_mm")
    all_points = np.concatenate([c.points_mm for _, cs in planes for c in cs])
    r_lo, r_hi = _index_range(all_points[:, 1], y_asc)
    c_lo, c_hi = _index_range(all_points[:, 0], x_asc)
    if n > 1:  # voxels whose centre is just outside the extent can still be partly inside
        r_lo, r_hi = max(r_lo - 1, 0), min(r_hi + 1, y_asc.size)
        c_lo, c_hi = max(c_lo - 1, 0), min(c_hi + 1, x_asc.size)

    # Sub-sample z positions of every grid slice, from the slice boundaries (midway between centres).
    if z_asc.size > 1:
        mids = 0.5 * (z_asc[1:] + z_asc[:-1])
        lower = np.concatenate([[z_asc[0] - (mids[0] - z_asc[0])], mids])
        upper = np.concatenate([mids, [z_asc[-1] + (z_asc[-1] - mids[-1])]])
    else:
        lower = upper = z_asc.copy()
        if n > 1:
            lower, upper = z_asc - plane_spacing / 2, z_asc + plane_spacing / 2
    fractions = (np.arange(n) + 0.5) / n
    z_sub = lower[:, None] + fractions[None, :] * (upper - lower)[:, None]  # (nz, n)
    plane_of = _plane_index(z_sub.ravel(), plane_z, plane_spacing).reshape(z_sub.shape)

    out: npt.NDArray[np.float64] | npt.NDArray[np.bool_]
    out = np.zeros(shape, dtype=np.float64 if fractional else np.bool_)
    if r_lo >= r_hi or c_lo >= c_hi:
        return out

    masks: dict[int, npt.NDArray[np.bool_] | npt.NDArray[np.float64]] = {}
    nrows, ncols = r_hi - r_lo, c_hi - c_lo
    for k in range(z_asc.size):
        for s in range(n):
            p = int(plane_of[k, s])
            if p < 0:
                continue
            mask = masks.get(p)
            if mask is None:
                polygons = []
                for contour in planes[p][1]:
                    rows = (contour.points_mm[:, 1] - y0) / dy - r_lo
                    cols = (contour.points_mm[:, 0] - x0) / dx - c_lo
                    polygons.append(np.stack([(rows + 0.5) * n - 0.5, (cols + 0.5) * n - 0.5], axis=1))
                fine = _fill_even_odd(polygons, nrows * n, ncols * n)
                if n == 1:
                    mask = fine if not fractional else fine.astype(np.float64)
                else:
                    mask = fine.reshape(nrows, n, ncols, n).mean(axis=(1, 3))
                masks[p] = mask
            kk = z.size - 1 - k if flip[0] else k
            if fractional:
                out[kk, r_lo:r_hi, c_lo:c_hi] += mask if n == 1 else mask / n
            else:
                out[kk, r_lo:r_hi, c_lo:c_hi] = mask

    # The bounding box was computed on ascending y/x; flip back to the grid's own order.
    if flip[1]:
        out = out[:, ::-1, :]
    if flip[2]:
        out = out[:, :, ::-1]
    if fractional:
        np.clip(out, 0.0, 1.0, out=out)  # sums of n fractions of 1/n can exceed 1 by rounding only
    return np.ascontiguousarray(out)


def _group_planes(structure: Structure) -> list[tuple[float, list[Contour]]]:
    """Closed planar contours grouped by plane, sorted by z; refuses non-axial contours."""
    contours = structure.closed_planar_contours
    for c in contours:
        if not c.is_axial:
            zs = c.points_mm[:, 2]
            raise UnsupportedGeometryError(
                f"structure {structure.name!r} (ROINumber {structure.number}): a contour's (3006,0050) ContourData "
                f"z ranges from {zs.min()} to {zs.max()} mm; only axial contours (one z per contour, within "
                f"{PLANE_TOLERANCE_MM} mm) can be rasterised"
            )
    ordered = sorted(contours, key=lambda c: c.z_mm)
    planes: list[tuple[float, list[Contour]]] = []
    for c in ordered:
        if planes and c.z_mm - planes[-1][1][0].z_mm <= PLANE_TOLERANCE_MM:
            planes[-1][1].append(c)
        else:
            planes.append((c.z_mm, [c]))
    return [(float(np.mean([c.z_mm for c in cs])), cs) for _, cs in planes]


def _plane_index(zq: npt.NDArray[np.float64], plane_z: npt.NDArray[np.float64], spacing: float) -> npt.NDArray[np.intp]:
    """Index of the contour plane whose slab holds each query z, or -1."""
    if plane_z.size == 1:
        nearest = np.zeros(zq.shape, dtype=np.intp)
    else:
        mids = 0.5 * (plane_z[1:] + plane_z[:-1])
        nearest = np.searchsorted(mids, zq + COORDINATE_EPSILON_MM, side="right").astype(np.intp)
    d = zq - plane_z[nearest]
    if spacing <= 0:
        inside = np.abs(d) <= PLANE_TOLERANCE_MM
    else:
        inside = (d >= -spacing / 2 - COORDINATE_EPSILON_MM) & (d < spacing / 2 - COORDINATE_EPSILON_MM)
    return np.where(inside, nearest, -1)


def _uniform(axis: npt.NDArray[np.float64], name: str) -> tuple[float, float]:
    """(first coordinate, spacing) of an increasing axis that must be uniform."""
    if axis.size == 1:
        return float(axis[0]), 1.0  # any positive scale gives the same inside/outside answer for one centre
    step = float((axis[-1] - axis[0]) / (axis.size - 1))
    deviation = np.max(np.abs(axis - (axis[0] + step * np.arange(axis.size))))
    if deviation > IN_PLANE_UNIFORMITY_TOLERANCE * step:
        raise UnsupportedGeometryError(
            f"{name} is not uniformly spaced (deviation {deviation:.3g} mm from a {step:.4g} mm step); "
            f"in-plane rasterisation needs a uniform grid"
        )
    return float(axis[0]), step


def _index_range(coords_mm: npt.NDArray[np.float64], axis: npt.NDArray[np.float64]) -> tuple[int, int]:
    """Half-open index range of the (increasing) axis' centres within [min, max] of the coordinates."""
    lo = int(np.searchsorted(axis, coords_mm.min() - COORDINATE_EPSILON_MM, side="left"))
    hi = int(np.searchsorted(axis, coords_mm.max() + COORDINATE_EPSILON_MM, side="right"))
    return lo, hi


def _fill_even_odd(polygons: list[npt.NDArray[np.float64]], nrows: int, ncols: int) -> npt.NDArray[np.bool_]:
    """Even-odd scan-line fill of polygons given as (N, 2) (row, col) index coordinates.

    Pixel (r, c) has its centre at (r, c). A row r crosses an edge when ``min(r1, r2) <= r < max(r1, r2)``, and a
    crossing at column position ``xc`` toggles every pixel with ``c >= xc``: the half-open convention of the
    module docstring.
    """
    r1 = np.concatenate([p[:, 0] for p in polygons])
    c1 = np.concatenate([p[:, 1] for p in polygons])
    r2 = np.concatenate([np.roll(p[:, 0], -1) for p in polygons])
    c2 = np.concatenate([np.roll(p[:, 1], -1) for p in polygons])
    lo_r = np.minimum(r1, r2)
    hi_r = np.maximum(r1, r2)
    keep = hi_r > lo_r
    r1, c1, r2, c2, lo_r, hi_r = r1[keep], c1[keep], r2[keep], c2[keep], lo_r[keep], hi_r[keep]
    first = np.clip(np.ceil(lo_r), 0, nrows).astype(np.int64)
    stop = np.clip(np.ceil(hi_r), 0, nrows).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((nrows, ncols), dtype=np.bool_)
    edge = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    rows = first[edge] + (np.arange(total) - starts[edge])
    slope = (c2 - c1) / (r2 - r1)
    crossing = c1[edge] + (rows - r1[edge]) * slope[edge]
    toggle_col = np.clip(np.ceil(crossing), 0, ncols).astype(np.int64)
    toggles = np.bincount(rows * (ncols + 1) + toggle_col, minlength=nrows * (ncols + 1))
    parity = (toggles.reshape(nrows, ncols + 1)[:, :ncols] & 1).astype(np.uint8)
    return np.bitwise_xor.accumulate(parity, axis=1).astype(np.bool_)
