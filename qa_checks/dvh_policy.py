"""Default supersampling of DVHs: which structures need it, and how much.

Voxel centres misrepresent structures that are small compared with the dose voxels, and targets, whose
coverage metrics (D95%, D98%) sit on the steep dose fall-off at their surface. The policy here decides the
factor when the caller of :func:`qa_checks.dvh.compute_dvh` gives none; the DVH records it and the reason.
"""

from __future__ import annotations

import math
from typing import Final

from qa_checks.structures import Structure

__all__ = [
    "MAX_DEFAULT_SUPERSAMPLE",
    "SUB_VOXEL_TARGET_MM",
    "SUPERSAMPLE_BELOW_CC",
    "TARGET_TYPES",
    "default_supersampling",
    "is_target_structure",
    "supersampling_policy",
]

SUPERSAMPLE_BELOW_CC: Final = 30.0
"""Structures smaller than this (cc) are supersampled by default: a 30 cc sphere is about 3.9 cm across, i.e.
only ~13 voxels of a 3 mm grid, so its surface voxels (a third of its volume and more for smaller ones) need
fractional occupancy."""

SUB_VOXEL_TARGET_MM: Final = 1.0
"""The default supersampling factor makes the sub-voxels at most this size (mm) along the coarsest grid axis,
the resolution at which contours are drawn on CT (1-3 mm slices, sub-mm pixels)."""

MAX_DEFAULT_SUPERSAMPLE: Final = 5
"""Upper bound of the default factor (5³ = 125 sub-voxels per voxel keeps a 100 cc target under a second)."""

TARGET_TYPES: Final[frozenset[str]] = frozenset({"PTV", "CTV", "GTV", "ITV"})
"""(3006,00A4) *RTROIInterpretedType* values, and TG-263 name prefixes, taken as targets."""


def default_supersampling(volume_cc: float, is_target: bool, *, grid_spacing_mm: float | None = None) -> int:
    """The supersampling factor :func:`qa_checks.dvh.compute_dvh` uses when the caller gives none.

    Targets and structures under :data:`SUPERSAMPLE_BELOW_CC` are supersampled so that sub-voxels are at most
    :data:`SUB_VOXEL_TARGET_MM` along the coarsest axis: ``ceil(grid_spacing_mm / SUB_VOXEL_TARGET_MM)``,
    clipped to [1, :data:`MAX_DEFAULT_SUPERSAMPLE`] (3 when the spacing is not given). Other structures use
    voxel centres (1).

    Args:
        volume_cc: the structure's volume, cc.
        is_target: the structure is a target (PTV, CTV, GTV, ITV).
        grid_spacing_mm: the coarsest dose-grid spacing, mm.
    """
    return supersampling_policy(volume_cc, is_target, grid_spacing_mm)[0]


def supersampling_policy(volume_cc: float, is_target: bool, grid_spacing_mm: float | None) -> tuple[int, str]:
    """(:func:`default_supersampling`, the reason in words, e.g. ``"default: target, sub-voxels <= 1 mm on a 3 mm
    grid"``)."""
    if not is_target and volume_cc >= SUPERSAMPLE_BELOW_CC:
        return 1, f"default: {volume_cc:.1f} cc non-target structure (>= {SUPERSAMPLE_BELOW_CC:g} cc): voxel centres"
    why = "target" if is_target else f"{volume_cc:.3g} cc structure (< {SUPERSAMPLE_BELOW_CC:g} cc)"
    if grid_spacing_mm is None:
        return 3, f"default: {why}"
    n = min(max(math.ceil(grid_spacing_mm / SUB_VOXEL_TARGET_MM - 1e-9), 1), MAX_DEFAULT_SUPERSAMPLE)
    return n, f"default: {why}, sub-voxels <= {SUB_VOXEL_TARGET_MM:g} mm on a {grid_spacing_mm:g} mm grid"


def is_target_structure(structure: Structure) -> bool:
    """True when (3006,00A4) *RTROIInterpretedType* or the name's TG-263 prefix is in :data:`TARGET_TYPES`."""
    kind = (structure.interpreted_type or "").strip().upper()
    name = structure.name.strip().upper()
    return kind in TARGET_TYPES or any(name.startswith(t) for t in TARGET_TYPES)
