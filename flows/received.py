"""What a submission holds and what it still lacks, for the sender (``GET /api/v1/submissions/{id}/received``).

Read from the stored files (headers only) and the case's reference objects: the series received with their instance
counts, the count per modality, how the submission came (upload, C-STORE or STOW-RS, with the instances refused
on the way, from the ``submission.pushed`` audit record) and what is missing:

- a modality the case's QA stage needs (RTSTRUCT; RTSTRUCT, RTPLAN and RTDOSE; RTDOSE);
- slices of the case's CT series, when the CT was sent (the case's CT is used when it is not);
- CT slices an RT Structure Set's (3006,0016) *ContourImageSequence* references but the submission does not hold;
- the RTPLAN an RTDOSE references, for a planning benchmark; beams of the plan without a BEAM dose, when the dose
  comes one per beam.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from sqlmodel import Session, col, select

from flows._store import submission_files
from flows.credentialing import REQUIRED_MODALITIES
from flows.dicom_cases import CaseReference, case_reference
from flows.steps import load_submission_and_case
from models.enums import QAStage
from models.tables import AuditEvent

__all__ = ["MAX_LISTED", "received_summary"]

MAX_LISTED = 10
"""Most missing UIDs named one by one in a message (the count is always given)."""

_NEEDS = {
    "RTSTRUCT": "the structure set with your contours",
    "RTPLAN": "your plan",
    "RTDOSE": "the plan dose (DoseSummationType PLAN, or one BEAM dose per beam)",
}


@dataclass(frozen=True)
class _Object:
    """One stored file's identifying attributes."""

    name: str
    modality: str
    sop_instance_uid: str
    series_uid: str
    series_description: str
    contour_image_uids: frozenset[str]
    dose_summation_type: str | None
    referenced_plan_uid: str | None
    referenced_beams: tuple[int, ...]
    treatment_beams: tuple[int, ...]


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip() if value is not None else ""


def _items(ds: Dataset, *path: str) -> list[Dataset]:
    items = [ds]
    for keyword in path:
        items = [item for parent in items for item in (parent.get(keyword) or [])]
    return items


def _read(path: Path, root: Path) -> _Object:
    ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="256 KB", force=True)
    contour_images = {
        _text(item, "ReferencedSOPInstanceUID")
        for item in _items(ds, "ROIContourSequence", "ContourSequence", "ContourImageSequence")
    }
    plan_refs = _items(ds, "ReferencedRTPlanSequence")
    beams = [
        int(item.ReferencedBeamNumber)
        for item in _items(ds, "ReferencedRTPlanSequence", "ReferencedFractionGroupSequence", "ReferencedBeamSequence")
        if "ReferencedBeamNumber" in item
    ]
    treatment = [
        int(b.BeamNumber)
        for b in _items(ds, "BeamSequence")
        if "BeamNumber" in b and (_text(b, "TreatmentDeliveryType") or "TREATMENT") == "TREATMENT"
    ]
    return _Object(
        name=path.relative_to(root).as_posix(),
        modality=_text(ds, "Modality").upper() or "unknown",
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_description=_text(ds, "SeriesDescription"),
        contour_image_uids=frozenset(u for u in contour_images if u),
        dose_summation_type=_text(ds, "DoseSummationType").upper() or None,
        referenced_plan_uid=_text(plan_refs[0], "ReferencedSOPInstanceUID") or None if plan_refs else None,
        referenced_beams=tuple(sorted(beams)),
        treatment_beams=tuple(sorted(treatment)),
    )


def _read_or_describe(path: Path, root: Path) -> _Object:
    """:func:`_read`, or an object of modality "unreadable" for a file pydicom cannot parse."""
    try:
        return _read(path, root)
    except Exception:  # pydicom raises many error types on damaged files; the validation names the problem
        name = path.relative_to(root).as_posix()
        return _Object(name, "unreadable", "", "", "", frozenset(), None, None, (), ())


def _listed(uids: list[str]) -> str:
    shown = ", ".join(uids[:MAX_LISTED])
    return shown + (f" and {len(uids) - MAX_LISTED} more" if len(uids) > MAX_LISTED else "")


def _missing(objects: list[_Object], stage: QAStage, reference: CaseReference | None) -> list[str]:
    """What the submission still lacks, one sentence each (see the module docstring)."""
    by_modality: dict[str, list[_Object]] = {}
    for obj in objects:
        by_modality.setdefault(obj.modality, []).append(obj)
    missing = [
        f"{m}: none received; {stage.label} submissions need {_NEEDS[m]}"
        for m in REQUIRED_MODALITIES.get(stage, ())
        if m not in by_modality
    ]
    cts = by_modality.get("CT", [])
    received_ct = {o.sop_instance_uid for o in cts}
    if cts and reference is not None and reference.ct_slices:
        lacking = [s for s in reference.ct_slices if s.sop_instance_uid not in received_ct]
        if lacking and any(o.series_uid == reference.ct_series_uid for o in cts):
            described = [
                f"InstanceNumber {s.instance_number} ({s.sop_instance_uid})"
                if s.instance_number is not None
                else s.sop_instance_uid
                for s in lacking
            ]
            missing.append(
                f"CT: {len(lacking)} of the case's {len(reference.ct_slices)} slices not received: {_listed(described)}"
            )
    known_ct = received_ct if cts else {s.sop_instance_uid for s in reference.ct_slices} if reference else set()
    for rs in by_modality.get("RTSTRUCT", []):
        unknown = sorted(rs.contour_image_uids - known_ct)
        if unknown and known_ct:
            where = "received" if cts else "of the case's CT"
            missing.append(
                f"{rs.name}: (3006,0016) ContourImageSequence references {len(unknown)} CT slice(s) not {where}: "
                f"{_listed(unknown)}"
            )
    plans = {o.sop_instance_uid: o for o in by_modality.get("RTPLAN", [])}
    doses = by_modality.get("RTDOSE", [])
    if stage is QAStage.PLANNING_BENCHMARK:
        for uid in sorted({d.referenced_plan_uid for d in doses if d.referenced_plan_uid} - set(plans)):
            missing.append(f"RTPLAN {uid}: referenced by the RTDOSE but not received")
    beam_doses = [d for d in doses if d.dose_summation_type == "BEAM"]
    if beam_doses:
        plan = plans.get(beam_doses[0].referenced_plan_uid or "")
        covered = {b for d in beam_doses for b in d.referenced_beams}
        if plan is not None and plan.treatment_beams:
            lacking_beams = sorted(set(plan.treatment_beams) - covered)
            if lacking_beams:
                missing.append(
                    f"RTDOSE: no BEAM dose for beam(s) {lacking_beams} of the RTPLAN's treatment beams "
                    f"{list(plan.treatment_beams)}; send one dose per beam, or the plan dose"
                )
        elif plan is None and len(beam_doses) == 1:
            missing.append(
                f"RTDOSE: {beam_doses[0].name} is one beam's dose (DoseSummationType BEAM) and no RTPLAN names the "
                "other beams; send the plan dose"
            )
    return missing


def _push_record(session: Session, submission_id: int) -> dict[str, Any] | None:
    event = session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.action == "submission.pushed",
            AuditEvent.subject_type == "submission",
            AuditEvent.subject_id == str(submission_id),
        )
        .order_by(col(AuditEvent.id).desc())
    ).first()
    return dict(event.after) if event is not None and event.after is not None else None


def received_summary(session: Session, submission_id: int) -> dict[str, Any]:
    """What the submission holds and lacks (see the module docstring), as plain data.

    Raises:
        LookupError: no submission has that id.
    """
    sub, case = load_submission_and_case(session, submission_id)
    root = Path(sub.storage_path)
    objects = [_read_or_describe(p, root) for p in submission_files(root)] if root.is_dir() else []
    series: dict[tuple[str, str], list[_Object]] = {}
    for obj in objects:
        series.setdefault((obj.modality, obj.series_uid), []).append(obj)
    pushed = _push_record(session, submission_id)
    via: dict[str, Any] = {"route": "upload", "by": sub.submitted_by}
    if pushed is not None:
        via = {"route": pushed.get("via"), "by": sub.submitted_by, "senders": pushed.get("senders", [])}
    missing = _missing(objects, case.stage, case_reference(case))
    return {
        "submission_id": submission_id,
        "case": f"{case.case_code}@{case.version}",
        "stage": case.stage.value,
        "status": sub.status.value,
        "via": via,
        "instances": len(objects),
        "instances_by_modality": dict(sorted(Counter(o.modality for o in objects).items())),
        "series": [
            {
                "modality": modality,
                "series_instance_uid": uid,
                "description": members[0].series_description,
                "instances": len(members),
            }
            for (modality, uid), members in sorted(series.items())
        ],
        "refused": list(pushed.get("refused", [])) if pushed else [],
        "refused_count": int(pushed.get("refused_count", 0)) if pushed else 0,
        "missing": missing,
        "complete": not missing,
    }
