"""Structures and isodoses cut by the edge of the dose grid.

A dose grid that stops short of a structure gives that structure a DVH of only the part inside it, without
any error: a rectum cut at the grid's inferior edge looks better spared than it is. And a 50% isodose that
reaches the grid's edge has an unknown volume (R50%) and an unknown maximum 2 cm from the target (D2cm).

Definitions
    - *Dose grid extent*: along each axis, from the outer boundary of the first voxel to that of the last
      (voxel centres ± half the spacing to the neighbour), the region in which :func:`qa_checks.dvh.compute_dvh`
      finds dose voxels.
    - *Volume on the CT grid*: the structure rasterised on the CT (:func:`qa_checks.rasterise.rasterise`,
      voxel centres), each voxel its own volume.
    - *Volume inside the dose grid*: the CT voxels of that mask whose centre lies inside the extent
      (half-open: ``lower <= centre < upper``).
    - *Fraction outside*: 1 − inside / volume on the CT grid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from qa_checks.geometry import DoseGrid, Grid, check_axis
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure

__all__ = [
    "NOT_EVALUABLE_FRACTION_OUTSIDE",
    "WARNING_FRACTION_OUTSIDE",
    "GridCoverage",
    "grid_coverage",
    "isodose_edge_faces",
    "isodose_edge_message",
    "isodose_touches_edge",
    "structure_grid_coverage",
]

MM3_PER_CC: Final = 1000.0

_ROUNDING: Final = 1e-9
"""Fractions within this of a threshold count as at the threshold (sums of voxel volumes round at ~1e-15)."""

WARNING_FRACTION_OUTSIDE: Final = 0.01
"""A structure with more than this fraction (1%) of its CT volume outside the dose grid gets a warning: its DVH
misses that part, which is about the size of the volume differences between planning systems."""

NOT_EVALUABLE_FRACTION_OUTSIDE: Final = 0.05
"""A structure with more than this fraction (5%) of its CT volume outside the dose grid is not evaluable: a
dose-volume criterion on it (V_x as a percentage, D_x of the hottest part, the mean) could be wrong by more than
protocols' minor-deviation margins, and the part outside is unknown dose, not zero dose."""


@dataclass(frozen=True)
class GridCoverage:
    """How much of a structure the dose grid covers.

    Attributes:
        structure: (3006,0026) *ROIName*.
        volume_cc: the structure's volume on the CT grid, cc.
        inside_cc: the part inside the dose grid's extent, cc.
        fraction_outside: ``1 − inside_cc / volume_cc`` in [0, 1] (0 for an empty structure).
        evaluable: False when more than :data:`NOT_EVALUABLE_FRACTION_OUTSIDE` lies outside, or the structure
            has no volume on the CT grid.
        warning: words for the reviewer when more than :data:`WARNING_FRACTION_OUTSIDE` lies outside, else None.
        reason: why the structure is not evaluable, in words, else None.
    """

    structure: str
    volume_cc: float
    inside_cc: float
    fraction_outside: float
    evaluable: bool
    warning: str | None = None
    reason: str | None = None


def _extent(axis: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(lower, upper) outer voxel boundaries of an axis, mm (one voxel: its centre only)."""
    a = np.sort(axis)
    if a.size == 1:
        return float(a[0]), float(a[0])
    return float(a[0] - (a[1] - a[0]) / 2), float(a[-1] + (a[-1] - a[-2]) / 2)


def _cell_widths(axis: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if axis.size == 1:
        return np.ones(1)
    mids = 0.5 * (axis[1:] + axis[:-1])
    lower = np.concatenate([[axis[0] - (mids[0] - axis[0])], mids])
    upper = np.concatenate([mids, [axis[-1] + (axis[-1] - mids[-1])]])
    return np.asarray(np.abs(upper - lower), dtype=np.float64)


def _no_volume(label: str) -> GridCoverage:
    reason = f"{label} has no volume on the CT grid; criteria on it are not evaluated"
    return GridCoverage(label, 0.0, 0.0, 0.0, False, reason=reason)


def _bounding_box(mask: npt.NDArray[np.bool_]) -> tuple[slice, slice, slice] | None:
    """Slices of the bounding box of a (z, y, x) mask, or None when it is empty."""
    box = []
    for axis in range(3):
        other = tuple(i for i in range(3) if i != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return box[0], box[1], box[2]


def structure_grid_coverage(structure: Structure, ct: Grid, dose: DoseGrid, *, name: str | None = None) -> GridCoverage:
    """The part of ``structure`` (rasterised on the CT grid ``ct``) that lies inside the extent of ``dose``.

    Args:
        structure: the structure as submitted.
        ct: the CT grid (an :class:`~qa_checks.geometry.ImageVolume`, or anything with z_mm, y_mm, x_mm).
        dose: the dose grid.
        name: the name to use in messages (e.g. the TG-263 name it was mapped to); default its ROIName.
    """
    label = name or structure.name
    axes = [check_axis(a, name=n) for a, n in ((ct.z_mm, "z_mm"), (ct.y_mm, "y_mm"), (ct.x_mm, "x_mm"))]
    mask = rasterise(structure, ct)
    # Every voxel of the structure lies in its bounding box: the sums are taken there, not over the whole CT grid.
    box = _bounding_box(mask)
    if box is None:
        return _no_volume(label)
    widths = [_cell_widths(a)[b] for a, b in zip(axes, box, strict=True)]
    axes = [a[b] for a, b in zip(axes, box, strict=True)]
    mask = mask[box]
    voxel_cc = widths[0][:, None, None] * widths[1][None, :, None] * widths[2][None, None, :] / MM3_PER_CC
    volume = float(np.sum(voxel_cc * mask))
    if volume <= 0:
        return _no_volume(label)
    inside_axes = []
    for a, d in zip(axes, (dose.z_mm, dose.y_mm, dose.x_mm), strict=True):
        lo, hi = _extent(d)
        inside_axes.append((a >= lo) & (a < hi) if hi > lo else np.abs(a - lo) < 1e-6)
    inside_mask = inside_axes[0][:, None, None] & inside_axes[1][None, :, None] & inside_axes[2][None, None, :]
    inside = float(np.sum(voxel_cc * (mask & inside_mask)))
    fraction = max(0.0, 1.0 - inside / volume)
    words = f"{label}: {100 * fraction:.1f}% of its {volume:.1f} cc lies outside the dose grid"
    if fraction > NOT_EVALUABLE_FRACTION_OUTSIDE + _ROUNDING:
        reason = f"{words}; criteria on it are not evaluated"
        return GridCoverage(label, volume, inside, fraction, False, warning=reason, reason=reason)
    if fraction > WARNING_FRACTION_OUTSIDE + _ROUNDING:
        return GridCoverage(label, volume, inside, fraction, True, warning=f"{words}; its DVH misses that part")
    return GridCoverage(label, volume, inside, fraction, True)


def grid_coverage(structures: Iterable[Structure], ct: Grid, dose: DoseGrid) -> dict[str, GridCoverage]:
    """:func:`structure_grid_coverage` of every structure, by ROIName."""
    return {s.name: structure_grid_coverage(s, ct, dose) for s in structures}


def isodose_edge_faces(dose: DoseGrid, level_gy: float) -> tuple[str, ...]:
    """The faces of the dose grid where some voxel receives at least ``level_gy`` Gy, named by axis and
    coordinate of the voxel centres there, e.g. ``("z = -60 mm", "x = 98.5 mm")``; empty when none.

    Raises:
        ValueError: ``level_gy`` not a positive finite number.
    """
    level = float(level_gy)
    if not np.isfinite(level) or level <= 0:
        raise ValueError(f"level_gy must be a positive number of Gy; got {level_gy!r}")
    values = dose.values_gy
    faces = []
    for dim, (axis_name, axis) in enumerate((("z", dose.z_mm), ("y", dose.y_mm), ("x", dose.x_mm))):
        for index in sorted({0, axis.size - 1}):
            face = np.take(values, index, axis=dim)
            if np.any(face >= level):
                faces.append(f"{axis_name} = {axis[index]:g} mm")
    return tuple(faces)


def isodose_touches_edge(dose: DoseGrid, level_gy: float) -> bool:
    """True when the ``level_gy`` isodose surface reaches the edge of the dose grid: some voxel on one of its six
    outer faces receives at least ``level_gy`` Gy, so the isodose volume continues beyond the grid."""
    return bool(isodose_edge_faces(dose, level_gy))


def isodose_edge_message(dose: DoseGrid, prescription_gy: float, *, percent: float = 50.0) -> str | None:
    """Words for the reviewer when the ``percent`` % isodose of ``prescription_gy`` touches the grid's edge
    (R50% and D2cm are then unknown), else None, e.g. ``"the 50% isodose (27 Gy) reaches the dose grid's edge
    at x = 98.5 mm: its volume, hence R50% and D2cm, is unknown; export a dose grid that covers it"``."""
    level = float(prescription_gy) * float(percent) / 100.0
    faces = isodose_edge_faces(dose, level)
    if not faces:
        return None
    return (
        f"the {percent:g}% isodose ({level:g} Gy) reaches the dose grid's edge at {', '.join(faces)}: its volume, "
        f"hence R50% and D2cm, is unknown; export a dose grid that covers it"
    )
