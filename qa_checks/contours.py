"""Overlap, surface-distance and volume metrics between two voxelised structures.

Both masks are boolean arrays indexed (z, y, x) on the same grid. When both masks are empty the overlap is
undefined and the metrics return ``nan`` (not 1.0 or 0.0): the caller must decide what "both missing" means for
its report, rather than have a perfect score invented for it.

Surface metrics (:func:`surface_metrics`) follow the surfel definition of DeepMind's ``surface-distance``
package (Nikolov et al. 2018, arXiv 1809.04430), reproduced value for value; the definitions are in the
docstring of :func:`surface_metrics`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import spatial

__all__ = [
    "HD_PERCENTILE",
    "OverlapMetrics",
    "SurfaceMetrics",
    "centroid_distance_mm",
    "contour_length_table",
    "dice",
    "jaccard",
    "overlap_metrics",
    "surface_metrics",
    "surfel_area_table",
    "volume_ratio",
]


def _counts(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> tuple[int, int, int]:
    """(|reference|, |evaluated|, |reference ∩ evaluated|) in voxels."""
    _check_masks(reference, evaluated)
    a = int(np.count_nonzero(reference))
    b = int(np.count_nonzero(evaluated))
    both = int(np.count_nonzero(reference & evaluated))
    return a, b, both


def _check_masks(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> None:
    """Both masks boolean numpy arrays of one shape (TypeError / ValueError naming the argument otherwise)."""
    for name, mask in (("reference", reference), ("evaluated", evaluated)):
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            kind = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
            raise TypeError(f"{name} must be a boolean numpy array (z, y, x); got {kind}")
    if reference.shape != evaluated.shape:
        raise ValueError(
            f"reference has shape {reference.shape} but evaluated has shape {evaluated.shape}; "
            f"rasterise both on the same grid"
        )


def dice(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> float:
    """Dice similarity coefficient 2|A∩B| / (|A| + |B|) of two boolean (z, y, x) masks.

    Returns ``nan`` when both masks are empty; 0.0 when exactly one is.

    Raises:
        ValueError: the shapes differ (both are named).
        TypeError: a mask is not a boolean array.
    """
    return _dice(*_counts(reference, evaluated))


def _dice(a: int, b: int, both: int) -> float:
    if a + b == 0:
        return float("nan")
    return 2.0 * both / (a + b)


def jaccard(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> float:
    """Jaccard index |A∩B| / |A∪B| of two boolean (z, y, x) masks; ``nan`` when both are empty.

    Raises:
        ValueError: the shapes differ (both are named).
        TypeError: a mask is not a boolean array.
    """
    return _jaccard(*_counts(reference, evaluated))


def _jaccard(a: int, b: int, both: int) -> float:
    union = a + b - both
    if union == 0:
        return float("nan")
    return both / union


# ----------------------------------------------------------------------------------------------------------
# Surface metrics

HD_PERCENTILE: Final = 95.0
"""Percentile (of surface area) used for :attr:`SurfaceMetrics.hd95_mm`."""

_FULL_3D: Final = 0b11111111
_FULL_2D: Final = 0b1111


@dataclass(frozen=True)
class SurfaceMetrics:
    """Surface-distance metrics between a reference and an evaluated mask (definitions in :func:`surface_metrics`).

    Attributes:
        hausdorff_mm: largest distance from a surfel of either surface to the other surface, in mm.
        hd95_mm: the larger of the two directional area-weighted 95th percentiles, in mm.
        mean_surface_distance_mm: area-weighted mean of the distances of both surfaces' surfels, pooled, in mm.
        mean_distance_reference_to_evaluated_mm: area-weighted mean over the reference surfels, in mm.
        mean_distance_evaluated_to_reference_mm: area-weighted mean over the evaluated surfels, in mm.
        surface_dice: fraction of the two surfaces' total area lying within ``tolerance_mm`` of the other, [0, 1].
        added_path_length_mm: length (mm) of the reference's axial contours farther than ``tolerance_mm``
            (in-plane) from the evaluated contour on the same slice, summed over slices.
        reference_area_mm2, evaluated_area_mm2: surface areas (sum of surfel areas) in mm².
        reference_contour_length_mm: total length of the reference's axial contours (the APL denominator), in mm.
        tolerance_mm: the tolerance used for ``surface_dice`` and ``added_path_length_mm``.
        spacing_mm: (z, y, x) voxel spacing used, in mm.
    """

    hausdorff_mm: float
    hd95_mm: float
    mean_surface_distance_mm: float
    mean_distance_reference_to_evaluated_mm: float
    mean_distance_evaluated_to_reference_mm: float
    surface_dice: float
    added_path_length_mm: float
    reference_area_mm2: float
    evaluated_area_mm2: float
    reference_contour_length_mm: float
    tolerance_mm: float
    spacing_mm: tuple[float, float, float]


def surface_metrics(
    reference: npt.NDArray[np.bool_],
    evaluated: npt.NDArray[np.bool_],
    *,
    spacing_mm: Sequence[float],
    tolerance_mm: float = 2.0,
) -> SurfaceMetrics:
    """Hausdorff, HD95, mean surface distance, surface Dice and added path length of two (z, y, x) masks.

    Definitions (the surfel model of DeepMind's ``surface-distance`` package, reproduced exactly):

    Surfels
        The surface of a mask is the marching-cubes surface at level 0.5 of the voxel lattice, the mask being
        surrounded by background. It is split into *surfels*, one per 2 × 2 × 2 cell of voxel centres whose
        eight voxels are neither all inside nor all outside. A surfel sits at its cell's centre (a voxel
        corner) and has the area, in mm², of the marching-cubes triangles in its cell (:func:`surfel_area_table`;
        of a configuration and its complement, the one with at most four inside voxels is triangulated by the
        classic Lorensen-Cline table, and both get that area, exactly as DeepMind's lookup table does).
    Distances
        The distance of a surfel to the other surface is the Euclidean distance, in mm with the anisotropic
        ``spacing_mm``, from its centre to the nearest surfel centre of the other surface (DeepMind obtains it
        from a distance transform of the other surface's surfel cells; a k-d tree gives the same numbers up to
        float rounding, ~1e-14 mm).
        Surfels present in both surfaces have distance 0.
    Hausdorff
        The maximum of all distances in both directions.
    HD95
        For each direction, the area-weighted 95th percentile: distances sorted ascending, the first whose
        cumulative surfel area reaches 95 % of the surface's area. ``hd95_mm`` is the *larger* of the two
        directional values (not a percentile of the pooled distances), as DeepMind's
        ``compute_robust_hausdorff(..., 95)``.
    Mean surface distance
        ``(Σ_ref d·a + Σ_eval d·a) / (A_ref + A_eval)``: pooled over both surfaces and area-weighted (the
        directional means are DeepMind's ``compute_average_surface_distance``).
    Surface Dice (Nikolov et al. 2018, arXiv 1809.04430)
        ``(area of reference surfels with d ≤ τ + area of evaluated surfels with d ≤ τ) / (A_ref + A_eval)``,
        DeepMind's ``compute_surface_dice_at_tolerance``.
    Added path length
        Each axial slice (fixed z index) of the reference is contoured in 2-D by marching squares: contour
        elements, one per 2 × 2 cell of in-plane voxel centres that is neither all inside nor all outside, with
        the length in mm of the marching-squares segments in the cell (a saddle cell has two). The APL is the
        total length of the reference elements whose in-plane distance to the nearest evaluated element *on the
        same slice* exceeds ``tolerance_mm``; a slice where the evaluated mask is empty contributes its whole
        reference contour. It is directional (the length the reviewer would have to draw to turn the evaluated
        contour into the reference; deletions are not counted) and in mm, not normalised — divide by
        ``reference_contour_length_mm`` for a fraction.

    Like any surface built on a binary (staircase) voxelisation, the surfel area and the contour length of a
    smooth shape are overestimated and do not converge with finer voxels: a sphere's area by about 8 % on
    1 mm voxels, a circle's perimeter by about 5 %. Surface Dice, a ratio of such areas, largely cancels it;
    APL and the contour length, in mm, carry it (compare APL with ``reference_contour_length_mm``).

    The Hausdorff distance uses the maximum directly; DeepMind's ``compute_robust_hausdorff(..., 100)`` takes
    the first distance whose float cumulative area fraction reaches 1.0, which is the same value unless
    rounding of the cumulative sum stops it a few surfels early.

    Empty masks (on purpose, not an error):
        - exactly one mask empty: every distance from the other surface is ``inf``, so ``hausdorff_mm``,
          ``hd95_mm`` and ``mean_surface_distance_mm`` are ``inf`` (the mean from the empty side is ``nan``),
          ``surface_dice`` is 0.0; the APL is the whole reference contour length when ``evaluated`` is empty,
          0.0 when ``reference`` is empty.
        - both empty: every distance and ``surface_dice`` are ``nan`` (nothing to compare); APL is 0.0.

    Args:
        reference: boolean (z, y, x) mask of the reference structure.
        evaluated: boolean (z, y, x) mask of the evaluated structure, same shape.
        spacing_mm: (z, y, x) voxel spacing in mm, in array-axis order; all positive.
        tolerance_mm: tolerance τ for surface Dice and APL, in mm, ≥ 0.

    Raises:
        TypeError: a mask is not a boolean numpy array.
        ValueError: the masks are not 3-D, their shapes differ, ``spacing_mm`` is not three positive finite
            numbers or ``tolerance_mm`` is negative or not finite (the bad value is named).
    """
    _check_masks(reference, evaluated)
    if reference.ndim != 3:
        raise ValueError(f"masks must be 3-D (z, y, x); got shape {reference.shape}")
    sz, sy, sx = _check_spacing(spacing_mm)
    spacing = (sz, sy, sx)
    tol = float(tolerance_mm)
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tolerance_mm must be a finite number >= 0; got {tolerance_mm!r}")

    crop = _union_box(reference, evaluated)
    nan = float("nan")
    if crop is None:
        return SurfaceMetrics(nan, nan, nan, nan, nan, nan, 0.0, 0.0, 0.0, 0.0, tol, spacing)
    ref = reference[crop]
    ev = evaluated[crop]

    ref_codes = _neighbour_codes_3d(ref)
    ev_codes = _neighbour_codes_3d(ev)
    ref_cells = _surface_cells(ref_codes, _FULL_3D)
    ev_cells = _surface_cells(ev_codes, _FULL_3D)
    table = surfel_area_table(spacing)
    ref_area = table[ref_codes.ravel()[ref_cells]]
    ev_area = table[ev_codes.ravel()[ev_cells]]
    d_ref, d_ev = _nearest_distances(ref_cells, ev_cells, ref_codes.shape, np.asarray(spacing, dtype=np.float64))
    a_ref, a_ev = float(ref_area.sum()), float(ev_area.sum())
    hausdorff = max(_max_or_inf(d_ref), _max_or_inf(d_ev))
    hd95 = max(_weighted_percentile(d_ref, ref_area, HD_PERCENTILE), _weighted_percentile(d_ev, ev_area, HD_PERCENTILE))
    mean_ref = float(np.dot(d_ref, ref_area) / a_ref) if a_ref > 0 else nan
    mean_ev = float(np.dot(d_ev, ev_area) / a_ev) if a_ev > 0 else nan
    if a_ref > 0 and a_ev > 0:
        msd = float((np.dot(d_ref, ref_area) + np.dot(d_ev, ev_area)) / (a_ref + a_ev))
    else:
        msd = math.inf
    within = float(ref_area[d_ref <= tol].sum() + ev_area[d_ev <= tol].sum())
    sdice = within / (a_ref + a_ev)
    apl, length = _added_path_length(ref, ev, spacing, tol)
    return SurfaceMetrics(
        hausdorff_mm=hausdorff,
        hd95_mm=hd95,
        mean_surface_distance_mm=msd,
        mean_distance_reference_to_evaluated_mm=mean_ref,
        mean_distance_evaluated_to_reference_mm=mean_ev,
        surface_dice=sdice,
        added_path_length_mm=apl,
        reference_area_mm2=a_ref,
        evaluated_area_mm2=a_ev,
        reference_contour_length_mm=length,
        tolerance_mm=tol,
        spacing_mm=spacing,
    )


def volume_ratio(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> float:
    """Volume of ``evaluated`` divided by the volume of ``reference`` (voxel counts on the same grid).

    Returns ``nan`` when ``reference`` is empty (the ratio is undefined), 0.0 when only ``evaluated`` is.

    Raises:
        ValueError: the shapes differ.
        TypeError: a mask is not a boolean array.
    """
    a, b, _ = _counts(reference, evaluated)
    return _volume_ratio(a, b)


def _volume_ratio(a: int, b: int) -> float:
    if a == 0:
        return float("nan")
    return b / a


def centroid_distance_mm(
    reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_], *, spacing_mm: Sequence[float]
) -> float:
    """Euclidean distance in mm between the centroids (means of voxel-centre positions) of two (z, y, x) masks.

    ``spacing_mm`` is the (z, y, x) voxel spacing in mm. Returns ``nan`` when either mask is empty.

    Raises:
        ValueError: the shapes differ, or ``spacing_mm`` is not as many positive finite numbers as mask axes.
        TypeError: a mask is not a boolean array.
    """
    _check_masks(reference, evaluated)
    spacing = np.asarray(_check_spacing(spacing_mm, ndim=reference.ndim), dtype=np.float64)
    return _centroid_distance(_MaskSummary.of(reference), _MaskSummary.of(evaluated), spacing)


def _centroid_distance(ref: _MaskSummary, ev: _MaskSummary, spacing: npt.NDArray[np.float64]) -> float:
    if ref.voxels == 0 or ev.voxels == 0:
        return float("nan")
    return float(np.linalg.norm(ref.centroid_index() * spacing - ev.centroid_index() * spacing))


@dataclass(frozen=True)
class OverlapMetrics:
    """Volume-overlap metrics of a reference and an evaluated mask, each counted once.

    Attributes:
        reference_voxels, evaluated_voxels: voxels in each mask.
        intersection_voxels: voxels in both.
        dice: as :func:`dice` (``nan`` when both masks are empty).
        jaccard: as :func:`jaccard` (``nan`` when both masks are empty).
        volume_ratio: as :func:`volume_ratio` (``nan`` when the reference is empty).
        centroid_distance_mm: as :func:`centroid_distance_mm`, in mm (``nan`` when either mask is empty).
    """

    reference_voxels: int
    evaluated_voxels: int
    intersection_voxels: int
    dice: float
    jaccard: float
    volume_ratio: float
    centroid_distance_mm: float


def overlap_metrics(
    reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_], *, spacing_mm: Sequence[float]
) -> OverlapMetrics:
    """:func:`dice`, :func:`jaccard`, :func:`volume_ratio` and :func:`centroid_distance_mm` of two masks at once.

    The same values, bit for bit, as the four functions; each mask is read about twice (per-axis voxel counts
    give its size, centroid and bounding box; the intersection is counted inside the overlap of the bounding
    boxes) instead of once per metric. ``spacing_mm`` is the voxel spacing in mm in array-axis order, e.g.
    (z, y, x).

    Raises:
        ValueError: the shapes differ, or ``spacing_mm`` is not as many positive finite numbers as mask axes.
        TypeError: a mask is not a boolean array.
    """
    _check_masks(reference, evaluated)
    spacing = np.asarray(_check_spacing(spacing_mm, ndim=reference.ndim), dtype=np.float64)
    ref = _MaskSummary.of(reference)
    ev = _MaskSummary.of(evaluated)
    both = 0
    if ref.box is not None and ev.box is not None:
        box = tuple(slice(max(r.start, e.start), min(r.stop, e.stop)) for r, e in zip(ref.box, ev.box, strict=True))
        if all(b.start < b.stop for b in box):
            both = int(np.count_nonzero(reference[box] & evaluated[box]))
    a, b = ref.voxels, ev.voxels
    return OverlapMetrics(
        reference_voxels=a,
        evaluated_voxels=b,
        intersection_voxels=both,
        dice=_dice(a, b, both),
        jaccard=_jaccard(a, b, both),
        volume_ratio=_volume_ratio(a, b),
        centroid_distance_mm=_centroid_distance(ref, ev, spacing),
    )


@dataclass(frozen=True)
class _MaskSummary:
    """Voxel count, per-axis sums of voxel indices and bounding box of a boolean mask.

    Attributes:
        voxels: number of voxels in the mask.
        index_sums: for each axis, the sum over the mask's voxels of their index along it (exact integers).
        box: slices of the bounding box, or None for an empty mask.
    """

    voxels: int
    index_sums: tuple[int, ...]
    box: tuple[slice, ...] | None

    @classmethod
    def of(cls, mask: npt.NDArray[np.bool_]) -> _MaskSummary:
        """From per-axis voxel counts (no list of voxel indices): counts per index of axis 0, then the counts of
        the occupied slab summed over axis 0, reduced to each other axis."""
        if mask.ndim == 0:
            raise ValueError("masks must have at least one axis")
        first = np.fromiter((np.count_nonzero(p) for p in mask), dtype=np.int64, count=mask.shape[0])
        occupied = np.flatnonzero(first)
        if occupied.size == 0:
            return cls(0, (0,) * mask.ndim, None)
        profiles = [first]
        if mask.ndim > 1:
            slab = mask[int(occupied[0]) : int(occupied[-1]) + 1].view(np.uint8)
            rest = np.add.reduce(slab, axis=0, dtype=np.int64)
            for axis in range(rest.ndim):
                other = tuple(i for i in range(rest.ndim) if i != axis)
                profiles.append(rest.sum(axis=other) if other else rest)
        sums, box = [], []
        for profile in profiles:
            hit = np.flatnonzero(profile)
            box.append(slice(int(hit[0]), int(hit[-1]) + 1))
            sums.append(int(np.dot(np.arange(profile.size, dtype=np.int64), profile)))
        return cls(int(first.sum()), tuple(sums), tuple(box))

    def centroid_index(self) -> npt.NDArray[np.float64]:
        """Mean voxel index along each axis (a correctly rounded quotient of exact integers, as numpy's mean of
        the voxels' indices is while their sum stays below 2**53)."""
        return np.array([s / self.voxels for s in self.index_sums], dtype=np.float64)


def surfel_area_table(spacing_mm: Sequence[float]) -> npt.NDArray[np.float64]:
    """Surfel area (mm²) of each of the 256 codes of a 2 × 2 × 2 cell, for (z, y, x) ``spacing_mm``.

    Bit ``7 - (4·dz + 2·dy + dx)`` of a code is set when the voxel at offset (dz, dy, dx) ∈ {0, 1}³ of the cell is
    inside (DeepMind's ``ENCODE_NEIGHBOURHOOD_3D_KERNEL`` order). The area is that of the marching-cubes
    triangles at level 0.5 (vertices at edge midpoints); a configuration with more than four inside voxels
    takes the area of its complement, so the table is symmetric under inside/outside exchange.
    """
    spacing = np.asarray(_check_spacing(spacing_mm), dtype=np.float64)
    table = np.zeros(256, dtype=np.float64)
    for code, triangles in enumerate(_unit_triangles()):
        if triangles.size:
            scaled = triangles * spacing  # (n, 3 vertices, 3 axes) in mm
            cross = np.cross(scaled[:, 1] - scaled[:, 0], scaled[:, 2] - scaled[:, 0])
            table[code] = 0.5 * float(np.linalg.norm(cross, axis=1).sum())
    return table


def contour_length_table(spacing_mm: Sequence[float]) -> npt.NDArray[np.float64]:
    """Marching-squares contour length (mm) of each of the 16 codes of a 2 × 2 in-plane cell.

    ``spacing_mm`` is (row, column) = (y, x) spacing. Bits: 8 top-left, 4 top-right, 2 bottom-left, 1 bottom-right
    (DeepMind's ``ENCODE_NEIGHBOURHOOD_2D_KERNEL``). Segments join edge midpoints; a saddle (two diagonal voxels)
    has two diagonal segments.
    """
    dy, dx = _check_spacing(spacing_mm, ndim=2)
    diag = 0.5 * math.hypot(dy, dx)
    table = np.zeros(16, dtype=np.float64)
    for code in (0b0001, 0b0010, 0b0100, 0b1000, 0b0111, 0b1011, 0b1101, 0b1110):
        table[code] = diag  # one corner in or one corner out: a diagonal segment
    table[0b0011] = table[0b1100] = dx  # one row in: a horizontal segment one column spacing long
    table[0b0101] = table[0b1010] = dy  # one column in: a vertical segment one row spacing long
    table[0b0110] = table[0b1001] = 2 * diag  # saddle
    return table


@functools.cache
def _unit_triangles() -> tuple[npt.NDArray[np.float64], ...]:
    """Marching-cubes triangles of every cell code in voxel-index units: (n, 3, 3) arrays (triangle, vertex, axis)."""
    from skimage import measure  # imported here: only needed once, to build the tables

    out: list[npt.NDArray[np.float64]] = []
    for code in range(256):
        inside = bin(code).count("1")
        if inside in (0, 8):
            out.append(np.zeros((0, 3, 3), dtype=np.float64))
            continue
        use = code if inside <= 4 else _FULL_3D ^ code
        cube = np.zeros((2, 2, 2), dtype=np.float64)
        for dz, dy, dx in itertools.product((0, 1), repeat=3):
            cube[dz, dy, dx] = (use >> (7 - (4 * dz + 2 * dy + dx))) & 1
        verts, faces, _, _ = measure.marching_cubes(  # type: ignore[no-untyped-call]
            cube, 0.5, method="lorensen", allow_degenerate=False
        )
        # Vertices are edge midpoints (multiples of 0.5), exact in float32.
        out.append(np.asarray(verts, dtype=np.float64)[faces])
    return tuple(out)


def _check_spacing(spacing_mm: Sequence[float], *, ndim: int = 3) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"spacing_mm must be {ndim} numbers in mm, in array-axis order; got {spacing_mm!r}") from None
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(
            f"spacing_mm must be {ndim} positive finite numbers in mm, in array-axis order; got {spacing_mm!r}"
        )
    return values


def _union_box(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``a | b``, or None when both are empty."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        hit = np.flatnonzero(union.any(axis=other))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _neighbour_codes_3d(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """Codes of the 2 × 2 × 2 cells of ``mask`` padded with background: shape ``mask.shape + 1`` per axis.

    Cell (i, j, k) holds voxels (i-1..i, j-1..j, k-1..k); its centre is the voxel corner at (i-½, j-½, k-½).
    """
    padded = np.pad(mask, 1).view(np.uint8)
    # Separable: pair along x (bit 1 for dx = 0), then along y (bits 3-2 for dy = 0), then along z (bits 7-4).
    codes = (padded[:, :, :-1] << np.uint8(1)) | padded[:, :, 1:]
    codes = (codes[:, :-1, :] << np.uint8(2)) | codes[:, 1:, :]
    result: npt.NDArray[np.uint8] = (codes[:-1] << np.uint8(4)) | codes[1:]
    return result


def _neighbour_codes_2d(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """In-plane codes of every axial slice of a (z, y, x) mask: shape (z, y + 1, x + 1)."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1))).view(np.uint8)
    codes = (padded[:, :, :-1] << np.uint8(1)) | padded[:, :, 1:]
    result: npt.NDArray[np.uint8] = (codes[:, :-1, :] << np.uint8(2)) | codes[:, 1:, :]
    return result


def _surface_cells(codes: npt.NDArray[np.uint8], full: int) -> npt.NDArray[np.intp]:
    """Sorted flat indices of the cells that are neither all outside (code 0) nor all inside (``full``)."""
    flat = codes.ravel()
    cells: npt.NDArray[np.intp] = np.flatnonzero((flat != 0) & (flat != full))
    return cells


def _nearest_distances(
    a_cells: npt.NDArray[np.intp],
    b_cells: npt.NDArray[np.intp],
    shape: tuple[int, ...],
    scale: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Distances (in the units of ``scale`` per index step) from each ``a`` cell to the nearest ``b`` cell and back.

    Cells are sorted flat indices into ``shape``; a cell in both sets is at distance 0; an empty other set gives
    ``inf``.
    """
    d_a = np.full(a_cells.size, math.inf) if b_cells.size == 0 else np.zeros(a_cells.size)
    d_b = np.full(b_cells.size, math.inf) if a_cells.size == 0 else np.zeros(b_cells.size)
    if a_cells.size == 0 or b_cells.size == 0:
        return d_a, d_b
    a_shared = _members(a_cells, b_cells)
    b_shared = _members(b_cells, a_cells)
    a_points = np.stack(np.unravel_index(a_cells, shape), axis=1) * scale
    b_points = np.stack(np.unravel_index(b_cells, shape), axis=1) * scale
    if not a_shared.all():
        d_a[~a_shared] = spatial.cKDTree(b_points).query(a_points[~a_shared], workers=-1)[0]
    if not b_shared.all():
        d_b[~b_shared] = spatial.cKDTree(a_points).query(b_points[~b_shared], workers=-1)[0]
    return d_a, d_b


def _members(values: npt.NDArray[np.intp], sorted_set: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """Whether each of ``values`` is in the sorted array ``sorted_set``."""
    pos = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return np.asarray(sorted_set[pos] == values)


def _added_path_length(
    reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_], spacing: tuple[float, ...], tol: float
) -> tuple[float, float]:
    """(APL, reference contour length) in mm, slice by slice along axis 0 (see :func:`surface_metrics`)."""
    ref_codes = _neighbour_codes_2d(reference)
    ref_cells = _surface_cells(ref_codes, _FULL_2D)
    lengths = contour_length_table(spacing[1:])[ref_codes.ravel()[ref_cells]]
    total = float(lengths.sum())
    if lengths.size == 0:
        return 0.0, 0.0
    ev_cells = _surface_cells(_neighbour_codes_2d(evaluated), _FULL_2D)
    if ev_cells.size == 0:
        return total, total
    # Slices are kept apart by a z step larger than any in-plane distance and than the tolerance, so that the
    # nearest evaluated element of a reference element is on its own slice whenever that slice has one.
    extent = math.hypot(ref_codes.shape[1] * spacing[1], ref_codes.shape[2] * spacing[2])
    scale = np.array([2.0 * (extent + tol) + 1.0, spacing[1], spacing[2]])
    shared = _members(ref_cells, ev_cells)
    far = np.zeros(lengths.size, dtype=np.bool_)
    if not shared.all():
        ev_points = np.stack(np.unravel_index(ev_cells, ref_codes.shape), axis=1) * scale
        query = np.stack(np.unravel_index(ref_cells[~shared], ref_codes.shape), axis=1) * scale
        far[~shared] = spatial.cKDTree(ev_points).query(query, workers=-1)[0] > tol
    return float(lengths[far].sum()), total


def _max_or_inf(distances: npt.NDArray[np.float64]) -> float:
    return float(distances.max()) if distances.size else math.inf


def _weighted_percentile(distances: npt.NDArray[np.float64], areas: npt.NDArray[np.float64], percent: float) -> float:
    """DeepMind's area-weighted percentile: the first sorted distance whose cumulative area fraction ≥ percent."""
    if distances.size == 0:
        return math.inf
    order = np.argsort(distances, kind="stable")
    cumulative = np.cumsum(areas[order]) / areas.sum()
    idx = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[order[min(idx, distances.size - 1)]])
