"""Targets of a submitted plan and their prescriptions, from the RTPLAN's dose references or the protocol's rule.

Targets
    The protocol names its targets (e.g. ``"PTV"``); the RTPLAN may tie further targets to ROIs through
    (300A,0010) *DoseReferenceSequence* items of (300A,0020) *DoseReferenceType* ``TARGET`` (e.g. ``"PTV_2"`` of
    a two-metastasis SRS plan). Submitted (3006,0026) *ROIName* values are mapped to the protocol's names with
    :func:`qa_checks.names.map_structure_names`; a further target keeps its TG-263 name when it has one, else its
    submitted name. The first target named by the protocol is the *primary* target.

Prescriptions (:func:`target_prescriptions`)
    Each target's prescription is, in order of preference: the (300A,0026) *TargetPrescriptionDose* of the
    *DoseReferenceSequence* item(s) of type ``TARGET`` whose (3006,0084) *ReferencedROINumber* is the target's
    ROI (the highest, if several); for a plan with a single target, the highest *TargetPrescriptionDose* of
    ``TARGET`` items tied to no ROI (e.g. ``SITE`` references); the protocol's rule ``dose_by_size(maximum
    diameter in mm)`` (maximum distance between two contour points). A reference of type ``ORGAN_AT_RISK`` is
    never a prescription. No prescription is an error naming the target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from qa_checks.errors import PlanScoringError
from qa_checks.names import map_structure_names
from qa_checks.plan import Plan
from qa_checks.structures import Structure, StructureSet

__all__ = ["TargetPrescription", "dicom_tag", "max_diameter_mm", "resolve_targets", "target_prescriptions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetPrescription:
    """A target of the plan and its prescription.

    Attributes:
        structure: the protocol's name of the target (e.g. ``"PTV"``, ``"PTV_2"``).
        dose_gy: total prescription dose, Gy.
        source: where the dose came from, in words (the RTPLAN item and tags, or the protocol rule).
        submitted_name: the centre's (3006,0026) *ROIName*.
        roi_number: its (3006,0022) *ROINumber*.
        max_diameter_mm: maximum distance between two of its contour points, mm.
    """

    structure: str
    dose_gy: float
    source: str
    submitted_name: str = ""
    roi_number: int | None = None
    max_diameter_mm: float | None = None


def max_diameter_mm(structure: Structure) -> float:
    """Maximum distance (mm) between two points of the structure's closed planar contours.

    Raises:
        PlanScoringError: the structure has no closed planar contour.
    """
    contours = structure.closed_planar_contours
    if not contours:
        raise PlanScoringError(f"structure {structure.name!r} has no closed planar contour: no diameter")
    points = np.unique(np.concatenate([c.points_mm for c in contours]), axis=0)
    if len(points) > 3:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # all points in one plane or on one line
            points = points[:: max(1, len(points) // 4000)]
    return float(pdist(points).max()) if len(points) > 1 else 0.0


def dicom_tag(keyword: str) -> str:
    """``"(gggg,eeee) Keyword"`` for the RT Plan keywords these modules name in messages."""
    tags = {
        "DoseReferenceSequence": "(300A,0010)",
        "DoseReferenceType": "(300A,0020)",
        "TargetPrescriptionDose": "(300A,0026)",
        "ReferencedROINumber": "(3006,0084)",
        "NumberOfFractionsPlanned": "(300A,0078)",
    }
    return f"{tags[keyword]} {keyword}"


def target_prescriptions(
    plan: Plan,
    structure_set: StructureSet,
    *,
    targets: Sequence[str],
    dose_by_size: Callable[[float], float | None] | None = None,
) -> tuple[TargetPrescription, ...]:
    """Every target of the plan with its prescription (rules in the module docstring), ``targets`` first.

    Args:
        plan: the read RTPLAN.
        structure_set: the read RTSTRUCT.
        targets: the protocol's target names (e.g. ``["PTV"]``).
        dose_by_size: the protocol's prescription rule, maximum diameter (mm) -> total dose (Gy) or None.

    Raises:
        PlanScoringError: a target has no structure, or no prescription (the message names the target, the
            RTPLAN file and the tags to fill in).
    """
    found, _ = resolve_targets(plan, structure_set, targets=targets, dose_by_size=dose_by_size)
    return found


def resolve_targets(
    plan: Plan,
    structure_set: StructureSet,
    *,
    targets: Sequence[str],
    dose_by_size: Callable[[float], float | None] | None,
) -> tuple[tuple[TargetPrescription, ...], list[str]]:
    """:func:`target_prescriptions` and the warnings for the reviewer (dose references to ROIs that do not exist)."""
    warnings: list[str] = []
    wanted = list(dict.fromkeys(targets))
    if not wanted:
        raise PlanScoringError("targets is empty: name at least the protocol's prescription target (e.g. 'PTV')")
    mapping = map_structure_names(structure_set.names, targets=wanted)
    where = structure_set.path or "the structure set"
    chosen: list[tuple[str, Structure, str]] = []  # (protocol name, structure, how the name was matched)
    by_target = {m.tg263: m for m in mapping.matches}
    for name in wanted:
        match = by_target.get(name)
        if match is None:
            detail = ""
            if name in mapping.conflicts:
                detail = f": several structures map to it ({', '.join(mapping.conflicts[name])})"
            raise PlanScoringError(
                f"{where} has no structure for the target {name!r}{detail}; (3006,0026) ROIName values: "
                f"{', '.join(map(repr, structure_set.names))}; name the target {name!r}"
            )
        chosen.append((name, structure_set[match.submitted], match.reason))
    used = {s.number for _, s, _ in chosen}
    numbers = {s.number for s in structure_set}
    for ref in plan.dose_references:
        if not ref.is_target or ref.roi_number is None or ref.roi_number in used:
            continue
        if ref.roi_number not in numbers:
            warnings.append(
                f"{plan.path}: {dicom_tag('DoseReferenceSequence')} item {ref.number} has "
                f"{dicom_tag('ReferencedROINumber')} {ref.roi_number}, which is not an ROI of {where}: ignored"
            )
            continue
        structure = structure_set.by_number(ref.roi_number)
        own = map_structure_names([structure.name])
        name = own.matches[0].tg263 if own.matches else structure.name
        if name in {n for n, _, _ in chosen}:
            name = structure.name
        chosen.append((name, structure, "a TARGET dose reference of the RTPLAN"))
        used.add(ref.roi_number)

    out: list[TargetPrescription] = []
    for name, structure, how in chosen:
        diameter = max_diameter_mm(structure) if structure.closed_planar_contours else None
        dose, source = _prescription_of(plan, structure, single=len(chosen) == 1)
        if dose is None and dose_by_size is not None and diameter is not None:
            ruled = dose_by_size(diameter)
            if ruled is not None:
                dose = float(ruled)
                source = (f"{source}; " if source else "") + (
                    f"protocol rule for a target of maximum diameter {diameter:.1f} mm: {dose:g} Gy"
                )
        if dose is None:
            rule = (
                f"; the protocol has no prescription for a target of maximum diameter {diameter:.1f} mm"
                if dose_by_size is not None and diameter is not None
                else ""
            )
            raise PlanScoringError(
                f"no prescription for the target {name!r} ((3006,0026) ROIName {structure.name!r}, (3006,0022) "
                f"ROINumber {structure.number}): {plan.path or 'the RTPLAN'} has no "
                f"{dicom_tag('DoseReferenceSequence')} item of {dicom_tag('DoseReferenceType')} TARGET with "
                f"{dicom_tag('ReferencedROINumber')} {structure.number} and a {dicom_tag('TargetPrescriptionDose')}"
                f"{(' (' + source + ')') if source else ''}{rule}; add one to the RTPLAN"
            )
        out.append(
            TargetPrescription(
                structure=name,
                dose_gy=dose,
                source=f"{source} (structure {structure.name!r} taken as {name!r}: {how})",
                submitted_name=structure.name,
                roi_number=structure.number,
                max_diameter_mm=diameter,
            )
        )
    return tuple(out), warnings


def _prescription_of(plan: Plan, structure: Structure, *, single: bool) -> tuple[float | None, str]:
    """(dose Gy or None, source or the reason there is none) from the RTPLAN's dose references."""
    tied = [r for r in plan.dose_references if r.roi_number == structure.number]
    doses = [r for r in tied if r.is_target and r.target_prescription_dose_gy is not None]
    file = plan.path or "the RTPLAN"
    if doses:
        best = max(doses, key=lambda r: r.target_prescription_dose_gy or 0.0)
        dose = float(best.target_prescription_dose_gy or 0.0)
        text = (
            f"{file} {dicom_tag('DoseReferenceSequence')} item {best.number} ({dicom_tag('ReferencedROINumber')} "
            f"{structure.number}): {dicom_tag('TargetPrescriptionDose')} {dose:g} Gy"
        )
        if len({r.target_prescription_dose_gy for r in doses}) > 1:
            text += f" (the highest of {len(doses)} TARGET dose references of this ROI)"
        return dose, text
    if single:
        site = [
            r
            for r in plan.dose_references
            if r.is_target and r.roi_number is None and r.target_prescription_dose_gy is not None
        ]
        if site:
            best = max(site, key=lambda r: r.target_prescription_dose_gy or 0.0)
            dose = float(best.target_prescription_dose_gy or 0.0)
            return dose, (
                f"{file} {dicom_tag('DoseReferenceSequence')} item {best.number} (type TARGET, "
                f"{best.structure_type or 'no structure type'}, tied to no ROI; the plan has a single target): "
                f"{dicom_tag('TargetPrescriptionDose')} {dose:g} Gy"
            )
    oar = [r for r in tied if r.dose_reference_type == "ORGAN_AT_RISK"]
    if oar:
        items = ", ".join(str(r.number) for r in oar)
        return (
            None,
            f"its dose reference item {items} is of {dicom_tag('DoseReferenceType')} ORGAN_AT_RISK, not a prescription",
        )
    return None, ""
