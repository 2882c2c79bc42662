"""Geometry of planning targets on a dose grid: surface distances, nearest-target neighbourhoods, grid edges.

Used by :mod:`qa_checks.plan_indices`. Arrays are indexed (z, y, x); coordinates are patient LPS mm.

Surface distance of a contoured structure
    The structure is rasterised (:func:`qa_checks.rasterise.rasterise`, voxel-centre rule) on a *fine grid*
    over its bounding box plus one fine voxel: the dose grid's coarsest spacing divided by ``supersample``,
    each other axis divided by the smallest odd number giving a spacing no larger. Its surface is sampled at
    the centre of every face between an inside and an outside fine voxel, and the distance of a point from the
    surface is the distance to the nearest such face centre (a k-d tree query). The face centres lie on the
    staircase surface of the fine rasterisation, within half a fine voxel of the contour surface, so distances
    are within about half a fine voxel of the true ones, whichever way. No distance transform of the whole
    dose grid is computed.

Nearest-target neighbourhoods
    With several targets, every dose voxel belongs to the target whose surface is nearest: the nearest target
    voxel centre by a Euclidean distance transform of the union of the targets' masks on the dose grid
    (anisotropic spacing). A voxel inside a target belongs to it (to the first listed target where targets
    overlap). One transform serves all targets; with a single target the neighbourhood is the whole grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import cKDTree

from qa_checks.geometry import DoseGrid, check_axis
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure

__all__ = [
    "D2CM_SURFACE",
    "D2CM_VOXEL_CENTRES",
    "FINE_SPACING_MM",
    "MAX_FINE_VOXELS",
    "GridFace",
    "SurfaceSamples",
    "crop_dose",
    "default_supersample",
    "faces_touched",
    "max_dose_beyond",
    "nearest_target_labels",
    "structure_surface",
]

FINE_SPACING_MM: Final = 0.5
"""Largest fine-grid spacing (mm) :func:`default_supersample` aims for."""

MAX_FINE_VOXELS: Final = 30_000_000
"""Upper bound on the fine grid of :func:`structure_surface`: ``supersample`` is lowered (to an odd number, at
least 1) until the structure's fine bounding box holds no more voxels than this."""

D2CM_SURFACE: Final = "supersampled_surface"
"""Distances measured from a Structure's supersampled contour surface."""

D2CM_VOXEL_CENTRES: Final = "voxel_centres"
"""Distances measured to the nearest target voxel centre of a mask (conservative: they err long)."""

AXIS_NAMES: Final = ("z", "y", "x")
LOW_SIDE: Final = ("inferior", "anterior", "right")
HIGH_SIDE: Final = ("superior", "posterior", "left")


def default_supersample(spacing_mm: Sequence[float]) -> int:
    """The smallest odd ``n`` with every ``spacing / n`` at most :data:`FINE_SPACING_MM` (at least 3)."""
    n = int(np.ceil(max(float(s) for s in spacing_mm) / FINE_SPACING_MM))
    n = max(n, 3)
    return n if n % 2 == 1 else n + 1


@dataclass(frozen=True)
class SurfaceSamples:
    """Points on a structure's surface and what they came from.

    Attributes:
        points_zyx_mm: (N, 3) face centres on the fine rasterisation's surface, (z, y, x) mm.
        fine_spacing_mm: (z, y, x) spacing of the fine grid, mm.
        supersample: fine voxels per dose voxel along the coarsest axis.
        low_zyx_mm, high_zyx_mm: the extent of the surface (minimum and maximum of the points) per axis, mm.
    """

    points_zyx_mm: npt.NDArray[np.float64]
    fine_spacing_mm: tuple[float, float, float]
    supersample: int
    low_zyx_mm: tuple[float, float, float]
    high_zyx_mm: tuple[float, float, float]

    def distance_mm(self, query_zyx_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Distance (mm, unsigned) of each (z, y, x) query point, shape (M, 3), from the surface."""
        tree = cKDTree(self.points_zyx_mm)
        distance, _ = tree.query(np.asarray(query_zyx_mm, dtype=np.float64), k=1)
        return np.asarray(distance, dtype=np.float64)


@dataclass(frozen=True)
class _FineGrid:
    z_mm: npt.NDArray[np.float64]
    y_mm: npt.NDArray[np.float64]
    x_mm: npt.NDArray[np.float64]


def structure_surface(structure: Structure, dose: DoseGrid, *, supersample: int) -> SurfaceSamples:
    """Sample the surface of ``structure`` on a fine grid of ``dose`` (see the module docstring).

    Raises:
        ValueError: the structure has no closed planar contour, or no fine voxel inside it.
    """
    contours = structure.closed_planar_contours
    if not contours:
        raise ValueError(f"structure {structure.name!r} has no closed planar contour: it has no surface")
    points = np.concatenate([c.points_mm for c in contours])
    planes = structure.z_planes_mm
    slab = float(np.median(np.diff(planes))) if planes.size > 1 else dose.spacing_mm[0]
    spacing = dose.spacing_mm
    low = (planes[0] - slab / 2, float(points[:, 1].min()), float(points[:, 0].min()))
    high = (planes[-1] + slab / 2, float(points[:, 1].max()), float(points[:, 0].max()))
    n = int(supersample)
    while True:
        fine = _fine_spacing(spacing, n)
        counts = [int(np.ceil((hi - lo) / f)) + 3 for lo, hi, f in zip(low, high, fine, strict=True)]
        if n <= 1 or counts[0] * counts[1] * counts[2] <= MAX_FINE_VOXELS:
            break
        n = max(n - 2, 1)
    axes = [
        check_axis(lo - f + f * np.arange(c, dtype=np.float64), name=name)
        for lo, f, c, name in zip(low, fine, counts, ("z_mm", "y_mm", "x_mm"), strict=True)
    ]
    inside = rasterise(structure, _FineGrid(axes[0], axes[1], axes[2]))
    if not inside.any():
        raise ValueError(
            f"structure {structure.name!r} covers no voxel centre of a {'x'.join(f'{f:.3g}' for f in fine)} mm grid"
        )
    padded = np.pad(inside, 1)
    found: list[npt.NDArray[np.float64]] = []
    for dim in range(3):
        a = padded.take(np.arange(padded.shape[dim] - 1), axis=dim)
        b = padded.take(np.arange(1, padded.shape[dim]), axis=dim)
        idx = np.argwhere(a != b).astype(np.float64)  # index in padded coordinates of the lower voxel
        coords = np.empty_like(idx)
        for k in range(3):
            offset = idx[:, k] - 1.0 + (0.5 if k == dim else 0.0)
            coords[:, k] = axes[k][0] + offset * fine[k]
        found.append(coords)
    surface = np.concatenate(found)
    return SurfaceSamples(
        points_zyx_mm=surface,
        fine_spacing_mm=(fine[0], fine[1], fine[2]),
        supersample=n,
        low_zyx_mm=(float(surface[:, 0].min()), float(surface[:, 1].min()), float(surface[:, 2].min())),
        high_zyx_mm=(float(surface[:, 0].max()), float(surface[:, 1].max()), float(surface[:, 2].max())),
    )


def _fine_spacing(spacing_mm: Sequence[float], n: int) -> tuple[float, float, float]:
    """Fine spacing per axis: the coarsest axis divided by ``n``; every other axis divided by the smallest odd
    number that makes its fine spacing no larger."""
    target = max(spacing_mm) / n
    out = []
    for s in spacing_mm:
        k = max(1, int(np.ceil(s / target - 1e-9)))
        k = k if k % 2 == 1 else k + 1
        out.append(float(s) / k)
    return (out[0], out[1], out[2])


def nearest_target_labels(masks: Sequence[npt.NDArray[np.bool_]], spacing_mm: Sequence[float]) -> npt.NDArray[np.intp]:
    """Index (into ``masks``) of the target nearest to every voxel centre, shape of the masks (see the module
    docstring); all zeros for a single target."""
    shape = masks[0].shape
    if len(masks) == 1:
        return np.zeros(shape, dtype=np.intp)
    label = np.full(shape, -1, dtype=np.intp)
    for i, mask in enumerate(masks):
        label[mask & (label < 0)] = i
    indices = ndimage.distance_transform_edt(
        label < 0, sampling=tuple(float(s) for s in spacing_mm), return_distances=False, return_indices=True
    )
    return np.asarray(label[tuple(indices)], dtype=np.intp)


@dataclass(frozen=True)
class GridFace:
    """One of the six faces of a dose grid: array ``axis`` (0 z, 1 y, 2 x) at its low or high end."""

    axis: int
    high: bool

    def describe(self, dose: DoseGrid) -> str:
        """E.g. ``"superior (z = 84 mm)"``: the anatomical side and the outermost voxel-centre coordinate."""
        axis = (dose.z_mm, dose.y_mm, dose.x_mm)[self.axis]
        coord = float(axis.max() if self.high else axis.min())
        side = (HIGH_SIDE if self.high else LOW_SIDE)[self.axis]
        return f"{side} ({AXIS_NAMES[self.axis]} = {coord:g} mm)"


def faces_touched(dose: DoseGrid, mask: npt.NDArray[np.bool_]) -> tuple[GridFace, ...]:
    """The faces of the grid on which ``mask`` has a voxel (faces named by patient side, low/high coordinate)."""
    touched: list[GridFace] = []
    axes = (dose.z_mm, dose.y_mm, dose.x_mm)
    for dim in range(3):
        ascending = axes[dim].size < 2 or axes[dim][-1] > axes[dim][0]
        first = bool(mask.take(0, axis=dim).any())
        last = bool(mask.take(mask.shape[dim] - 1, axis=dim).any())
        if first:
            touched.append(GridFace(dim, high=not ascending))
        if last:
            touched.append(GridFace(dim, high=ascending))
    return tuple(touched)


def crop_dose(
    dose: DoseGrid, target: Structure | npt.NDArray[np.bool_], *, margin_voxels: int = 2
) -> tuple[DoseGrid, tuple[slice, slice, slice]]:
    """The part of ``dose`` around ``target`` (its contours' extent, or a mask's voxels) plus ``margin_voxels``
    on each side, clipped to the grid, and the (z, y, x) slices that cut it out. A DVH of the target on the
    cropped grid equals one on the whole grid (the margin holds the neighbours trilinear interpolation of
    sub-voxel doses uses) and costs only the box. A target with no extent gives the whole grid."""
    axes = (dose.z_mm, dose.y_mm, dose.x_mm)
    whole = (slice(0, dose.shape[0]), slice(0, dose.shape[1]), slice(0, dose.shape[2]))
    if isinstance(target, Structure):
        contours = target.closed_planar_contours
        if not contours:
            return dose, whole
        points = np.concatenate([c.points_mm for c in contours])
        planes = target.z_planes_mm
        slab = float(np.median(np.diff(planes))) if planes.size > 1 else 0.0
        low = (float(planes[0]) - slab / 2, float(points[:, 1].min()), float(points[:, 0].min()))
        high = (float(planes[-1]) + slab / 2, float(points[:, 1].max()), float(points[:, 0].max()))
        boxes = []
        for k in range(3):
            inside = np.flatnonzero((axes[k] >= low[k]) & (axes[k] <= high[k]))
            if inside.size == 0:  # thinner than a voxel, or off the grid: the nearest voxels
                nearest = int(np.argmin(np.abs(axes[k] - 0.5 * (low[k] + high[k]))))
                inside = np.array([nearest])
            boxes.append((int(inside.min()), int(inside.max())))
    else:
        if not target.any():
            return dose, whole
        boxes = []
        for k in range(3):
            hit = np.flatnonzero(target.any(axis=tuple(d for d in range(3) if d != k)))
            boxes.append((int(hit[0]), int(hit[-1])))
    cut = tuple(
        slice(max(lo - margin_voxels, 0), min(hi + margin_voxels + 1, dose.shape[k]))
        for k, (lo, hi) in enumerate(boxes)
    )
    box = (cut[0], cut[1], cut[2])
    cropped = DoseGrid(
        dose.values_gy[box],
        dose.z_mm[box[0]],
        dose.y_mm[box[1]],
        dose.x_mm[box[2]],
        frame_of_reference_uid=dose.frame_of_reference_uid,
        dose_units=dose.dose_units,
        dose_type=dose.dose_type,
        dose_summation_type=dose.dose_summation_type,
        referenced_plan_uid=dose.referenced_plan_uid,
        sop_instance_uid=dose.sop_instance_uid,
        path=dose.path,
    )
    return cropped, box


def max_dose_beyond(
    dose: DoseGrid,
    target: Structure | npt.NDArray[np.bool_],
    mask: npt.NDArray[np.bool_],
    allowed: npt.NDArray[np.bool_],
    distance_mm: float,
    *,
    supersample: int,
    who: str,
) -> tuple[float | None, str, int, str | None]:
    """The maximum dose (Gy) over the ``allowed`` voxels outside ``mask`` whose centres are at least
    ``distance_mm`` from the target (None when there is none), as used for D2cm.

    Distances are from a Structure's supersampled surface (:func:`structure_surface`), or to the nearest voxel
    centre of ``mask`` (the target on the dose grid) for a mask. Work is limited to the target's bounding box
    grown by ``distance_mm``: beyond it every voxel is farther. Returns (dose or None, :data:`D2CM_SURFACE` or
    :data:`D2CM_VOXEL_CENTRES`, the supersampling used, a warning naming ``who`` when the shell at
    ``distance_mm`` leaves the grid, else None)."""
    spacing = dose.spacing_mm
    axes = (dose.z_mm, dose.y_mm, dose.x_mm)
    surface = structure_surface(target, dose, supersample=supersample) if isinstance(target, Structure) else None
    if surface is not None:
        low, high = surface.low_zyx_mm, surface.high_zyx_mm
    else:
        idx = np.argwhere(mask)
        low = tuple(float(axes[k][idx[:, k]].min()) - spacing[k] / 2 for k in range(3))  # type: ignore[assignment]
        high = tuple(float(axes[k][idx[:, k]].max()) + spacing[k] / 2 for k in range(3))  # type: ignore[assignment]
    # Voxels outside the box [low - d - spacing, high + d + spacing] are farther than d from the target.
    region = []
    leaving = []
    for k in range(3):
        a = axes[k]
        lo = low[k] - distance_mm - spacing[k]
        hi = high[k] + distance_mm + spacing[k]
        inside = np.flatnonzero((a >= lo) & (a <= hi))
        region.append(slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0))
        edge_lo, edge_hi = float(a.min()) - spacing[k] / 2, float(a.max()) + spacing[k] / 2
        if low[k] - distance_mm < edge_lo:
            leaving.append(f"{LOW_SIDE[k]} ({AXIS_NAMES[k]}, {low[k] - edge_lo:.3g} mm from the edge)")
        if high[k] + distance_mm > edge_hi:
            leaving.append(f"{HIGH_SIDE[k]} ({AXIS_NAMES[k]}, {edge_hi - high[k]:.3g} mm from the edge)")
    warning = None
    if leaving:
        warning = (
            f"the {distance_mm:g} mm shell around {who} leaves the dose grid on the {', '.join(leaving)} side: D2cm "
            "is the maximum over the part of the shell inside the grid"
        )
    values = dose.values_gy
    box = tuple(region)
    beyond = allowed.copy()
    beyond[box] = False
    best = float(values[beyond].max()) if beyond.any() else -math.inf
    sub_values = values[box]
    candidates = allowed[box] & ~mask[box] & (sub_values > best)
    if candidates.any():
        # Distance to the nearest target voxel centre, an upper bound on the distance to the contour surface (a
        # centre is inside): voxels nearer than distance_mm by it are near. For a contoured target, voxels within
        # a voxel diagonal beyond are measured from the surface; those farther are far.
        voxel_distance = ndimage.distance_transform_edt(~mask[box], sampling=spacing)
        far = candidates & (voxel_distance >= distance_mm)
        if surface is not None:
            diagonal = math.sqrt(sum(s * s for s in spacing))
            band = far & (voxel_distance < distance_mm + diagonal)
            sure = far & ~band
            floor = float(sub_values[sure].max()) if sure.any() else -math.inf
            band_idx = np.argwhere(band & (sub_values > floor))  # only band voxels that could raise the maximum
            if band_idx.size:
                origin = [region[k].start for k in range(3)]
                points = np.stack([axes[k][band_idx[:, k] + origin[k]] for k in range(3)], axis=1)
                near = surface.distance_mm(points) < distance_mm
                far[tuple(band_idx[near].T)] = False
        if far.any():
            best = max(best, float(sub_values[far].max()))
    method = D2CM_SURFACE if surface is not None else D2CM_VOXEL_CENTRES
    n_used = surface.supersample if surface is not None else 1
    return (best if math.isfinite(best) else None), method, n_used, warning
