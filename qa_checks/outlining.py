"""Outlining benchmark scoring: compare a centre's structure set with the reference, structure by structure.

Submitted names are mapped to TG-263 names first (:func:`qa_checks.names.map_structure_names`); each matched
structure and its reference are rasterised on the same grid (the reference CT, so nothing is resampled) and
compared. The mapping, with the reason for every match, is returned so a reviewer can see it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from qa_checks.contours import SurfaceMetrics, overlap_metrics, surface_metrics
from qa_checks.geometry import Grid, axis_spacing_mm
from qa_checks.names import map_structure_names
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure, StructureSet

__all__ = ["OutliningScore", "StructureScore", "score_outlining"]


@dataclass(frozen=True)
class StructureScore:
    """Metrics for one structure.

    Attributes:
        structure: TG-263 name (as in the reference).
        submitted_name: the centre's (3006,0026) *ROIName* that was mapped to it.
        match_reason: why the submitted name was taken as this structure.
        dice: Dice similarity coefficient on the grid, or None when both masks are empty.
        jaccard: Jaccard index on the grid, or None when both masks are empty.
        reference_volume_cc, submitted_volume_cc: voxel-count volumes on the grid, in cm³.
        volume_ratio: submitted / reference volume, or None when the reference is empty.
        centroid_distance_mm: distance between the masks' centroids, or None if either is empty.
        surface: surface distances and surface Dice (:func:`qa_checks.contours.surface_metrics`).
    """

    structure: str
    submitted_name: str
    match_reason: str
    dice: float | None
    jaccard: float | None
    reference_volume_cc: float
    submitted_volume_cc: float
    volume_ratio: float | None
    centroid_distance_mm: float | None
    surface: SurfaceMetrics

    def measurements(self) -> dict[str, tuple[float | None, str]]:
        """Metric name (as protocols name them) -> (value, unit); None where the value is undefined or infinite."""
        s = self.surface
        values: dict[str, tuple[float | None, str]] = {
            "dice": (self.dice, "1"),
            "jaccard": (self.jaccard, "1"),
            "volume_cc": (self.submitted_volume_cc, "cc"),
            "volume_ratio": (self.volume_ratio, "1"),
            "centroid_distance_mm": (self.centroid_distance_mm, "mm"),
            "hausdorff_mm": (s.hausdorff_mm, "mm"),
            "hd95_mm": (s.hd95_mm, "mm"),
            "msd_mm": (s.mean_surface_distance_mm, "mm"),
            "surface_dice": (s.surface_dice, "1"),
            "added_path_length_mm": (s.added_path_length_mm, "mm"),
        }
        return {k: (_finite_or_none(v), unit) for k, (v, unit) in values.items()}


@dataclass(frozen=True)
class OutliningScore:
    """Per-structure scores plus what could not be scored.

    Attributes:
        scores: one entry per structure found in both sets.
        missing: wanted structures the submission does not contain (after name mapping).
        unmatched_submitted: submitted names that map to no wanted structure, including names only proposed for
            one (they are not scored until the reviewer confirms them).
        ambiguous: submitted names with several candidate structures (never resolved silently).
        spacing_mm: (z, y, x) spacing of the comparison grid, in mm.
        proposed: ``(submitted name, proposed structure, reason)`` for the proposals awaiting the reviewer (see
            :func:`qa_checks.names.map_structure_names`, rule 5).
    """

    scores: tuple[StructureScore, ...]
    missing: tuple[str, ...]
    unmatched_submitted: tuple[str, ...]
    ambiguous: tuple[tuple[str, tuple[str, ...]], ...]
    spacing_mm: tuple[float, float, float]
    proposed: tuple[tuple[str, str, str], ...] = ()


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def score_outlining(
    reference: StructureSet,
    submitted: StructureSet,
    grid: Grid,
    *,
    structures: Iterable[str],
    tolerance_mm: float = 2.0,
    confirmed_names: Mapping[str, str] | None = None,
    run_each: Callable[[str, Callable[[], StructureScore]], StructureScore] | None = None,
) -> OutliningScore:
    """Score ``submitted`` against ``reference`` for each of ``structures`` (TG-263 names) on ``grid``.

    Rasterisation follows :func:`qa_checks.rasterise.rasterise` (voxel centres, even-odd rule) for both sets on
    the same grid, so Dice is exact by voxel count on that grid. Surface Dice and added path length use
    ``tolerance_mm``. A submitted name that is only *proposed* for a structure (e.g. ``"PTV_5400"`` for
    ``PTV``) is not scored unless ``confirmed_names`` (``{submitted name: structure}``, the reviewer's
    confirmations) confirms it.

    ``run_each(structure, compute)`` runs each structure's comparison (default: ``compute()``); a caller may run it
    as a named step of its own, e.g. a workflow task per structure. It must return what ``compute`` returns.
    """
    wanted = tuple(dict.fromkeys(structures))
    mapping = map_structure_names(submitted.names, targets=wanted, confirmed=confirmed_names)
    spacing = (
        axis_spacing_mm(np.asarray(grid.z_mm), name="z_mm"),
        axis_spacing_mm(np.asarray(grid.y_mm), name="y_mm"),
        axis_spacing_mm(np.asarray(grid.x_mm), name="x_mm"),
    )
    voxel_cc = spacing[0] * spacing[1] * spacing[2] / 1000.0
    by_target = {m.tg263: m for m in mapping.matches}
    proposed_names = {m.submitted for m in mapping.proposed}
    scores: list[StructureScore] = []
    missing: list[str] = []
    for name in wanted:
        match = by_target.get(name)
        ref_structure = reference.get(name)
        if match is None or ref_structure is None:
            missing.append(name)
            continue

        def compute(
            name: str = name,
            ref_structure: Structure = ref_structure,
            submitted_name: str = match.submitted,
            reason: str = match.reason,
        ) -> StructureScore:
            ref_mask = rasterise(ref_structure, grid)
            sub_mask = rasterise(submitted[submitted_name], grid)
            overlap = overlap_metrics(ref_mask, sub_mask, spacing_mm=spacing)
            return StructureScore(
                structure=name,
                submitted_name=submitted_name,
                match_reason=reason,
                dice=_finite_or_none(overlap.dice),
                jaccard=_finite_or_none(overlap.jaccard),
                reference_volume_cc=float(overlap.reference_voxels) * voxel_cc,
                submitted_volume_cc=float(overlap.evaluated_voxels) * voxel_cc,
                volume_ratio=_finite_or_none(overlap.volume_ratio),
                centroid_distance_mm=_finite_or_none(overlap.centroid_distance_mm),
                surface=surface_metrics(ref_mask, sub_mask, spacing_mm=spacing, tolerance_mm=tolerance_mm),
            )

        scores.append(run_each(name, compute) if run_each is not None else compute())
    return OutliningScore(
        scores=tuple(scores),
        missing=tuple(missing),
        unmatched_submitted=tuple(n for n in submitted.names if n in {*mapping.unmatched, *proposed_names}),
        ambiguous=tuple((k, tuple(v)) for k, v in mapping.ambiguous.items()),
        spacing_mm=spacing,
        proposed=tuple((m.submitted, m.tg263, m.reason) for m in mapping.proposed),
    )
