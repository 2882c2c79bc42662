"""Checks on one pushed DICOM instance, shared by the C-STORE receiver and the STOW-RS endpoint.

Each refusal carries a status a DICOM sender understands (:class:`PushStatus`: the C-STORE response status, or the
STOW-RS (0008,1197) *FailureReason*) and a reason in words. Checks that need the whole push (a missing CT slice,
per-beam doses that must cover the plan, cross references) run when the push becomes a submission, by the same
validation as uploads.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from flows.credentialing import SUMMABLE_STAGES
from flows.dicom_cases import CaseReference

__all__ = [
    "ACCEPTED_SOP_CLASSES",
    "COMMENT_MAX_CHARS",
    "InstanceHeader",
    "InstanceRefusedError",
    "PushStatus",
    "check_against_case",
    "check_sop_class",
    "read_header",
]


class PushStatus(IntEnum):
    """C-STORE response statuses (PS3.4 Annex B.2.3, PS3.7 Annex C) and STOW-RS failure reasons used here.

    The 0xC1xx codes lie in the standard's "Cannot understand" range (0xCxxx); rtqa gives each its own meaning.
    """

    SUCCESS = 0x0000
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    """Refused: only CT Image, RT Structure Set, RT Plan and RT Dose storage are taken."""
    PROCESSING_FAILURE = 0x0110
    """Error: the objects could not be stored as a submission (e.g. the case is no longer registered)."""
    NOT_AUTHORISED = 0x0124
    """Refused: the calling AE title was no longer registered to a provider when its association opened."""
    OUT_OF_RESOURCES = 0xA700
    """Refused: the push exceeds the upload limit, the disk is (nearly) full or the file cannot be written."""
    DOES_NOT_MATCH_SOP_CLASS = 0xA900
    """Error: the dataset's SOP class, instance or modality contradicts the request, or a required UID is absent."""
    CANNOT_UNDERSTAND = 0xC000
    """Error: the dataset cannot be decoded."""
    NO_CASE = 0xC100
    """Error: the object's frame of reference (or referenced CT series) is that of no registered benchmark case."""
    ANOTHER_PATIENT = 0xC101
    """Error: (0010,0020) PatientID is not the case's, or not that of the study's other objects."""
    NOT_A_PLAN_DOSE = 0xC102
    """Error: an RTDOSE that is not the plan dose (DoseSummationType other than PLAN; BEAM only for stages that sum
    one dose per beam)."""
    OTHER_FRAME_OF_REFERENCE = 0xC103
    """Error: the object's frame of reference differs from that of the study's other objects."""


ACCEPTED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
    "1.2.840.10008.5.1.4.1.1.481.5": "RTPLAN",
    "1.2.840.10008.5.1.4.1.1.481.2": "RTDOSE",
}
"""SOP Class UID -> (0008,0060) *Modality* of the storage classes accepted: CT Image, RT Structure Set, RT Plan and
RT Dose Storage."""

COMMENT_MAX_CHARS = 64
"""Longest (0000,0902) *ErrorComment* (VR LO)."""

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class InstanceRefusedError(Exception):
    """An instance is refused: ``status`` for the sender, ``reason`` in words, ``comment`` (at most 64 characters)
    for the C-STORE response's (0000,0902) *ErrorComment*."""

    def __init__(self, status: PushStatus, reason: str, *, comment: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        text = comment or reason
        self.comment = text if len(text) <= COMMENT_MAX_CHARS else text[: COMMENT_MAX_CHARS - 3] + "..."


@dataclass(frozen=True)
class InstanceHeader:
    """What the checks need of one instance (read without pixel data)."""

    sop_class_uid: str
    sop_instance_uid: str
    modality: str
    study_uid: str
    series_uid: str | None
    patient_id: str
    frame_of_reference_uids: tuple[str, ...]
    """(0020,0052) of the object and, for an RTSTRUCT, of its (3006,0010) *ReferencedFrameOfReferenceSequence*."""
    referenced_ct_series_uids: tuple[str, ...]
    """RTSTRUCT: the (0020,000E) SeriesInstanceUID of each (3006,0014) *RTReferencedSeriesSequence* item."""
    dose_summation_type: str | None
    instance_number: int | None

    def describe(self) -> str:
        """``MODALITY SOPInstanceUID`` for messages."""
        return f"{self.modality} {self.sop_instance_uid}"


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return (str(value).strip() or None) if value is not None else None


def check_sop_class(sop_class_uid: str) -> str:
    """The modality of an accepted SOP class.

    Raises:
        InstanceRefusedError: :attr:`PushStatus.SOP_CLASS_NOT_SUPPORTED`.
    """
    modality = ACCEPTED_SOP_CLASSES.get(sop_class_uid)
    if modality is None:
        name = pydicom.uid.UID(sop_class_uid).name if sop_class_uid else "no SOP class"
        raise InstanceRefusedError(
            PushStatus.SOP_CLASS_NOT_SUPPORTED,
            f"{name} ({sop_class_uid}) is not taken; send only CT images, the RT Structure Set, RT Plan and RT Dose",
            comment="only CT, RTSTRUCT, RTPLAN and RTDOSE storage are taken",
        )
    return modality


def _nested_uids(ds: Dataset, *path: str) -> list[str]:
    """Values of the last keyword of ``path`` in every item reached through the sequences before it."""
    items: list[Dataset] = [ds]
    for keyword in path[:-1]:
        items = [item for parent in items for item in (parent.get(keyword) or [])]
    return [v for item in items if (v := _text(item, path[-1]))]


def read_header(
    path: Path, *, expected_sop_class: str | None = None, expected_sop_instance: str | None = None
) -> InstanceHeader:
    """Read and check one instance's identifying attributes (no pixel data; long values left on disk).

    ``expected_sop_class`` / ``expected_sop_instance`` are the C-STORE request's (0000,0002) and (0000,1000).

    Raises:
        InstanceRefusedError: SOP class not taken (0x0122), undecodable (0xC000), or an attribute contradicting the
            request or missing (0xA900).
    """
    if expected_sop_class is not None:
        check_sop_class(expected_sop_class)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="256 KB", force=True)
        sop_class = _text(ds, "SOPClassUID")
        sop_instance = _text(ds, "SOPInstanceUID")
        modality = (_text(ds, "Modality") or "").upper()
        study = _text(ds, "StudyInstanceUID")
        frames = _nested_uids(ds, "FrameOfReferenceUID")
        frames += _nested_uids(ds, "ReferencedFrameOfReferenceSequence", "FrameOfReferenceUID")
        ct_series = _nested_uids(
            ds,
            "ReferencedFrameOfReferenceSequence",
            "RTReferencedStudySequence",
            "RTReferencedSeriesSequence",
            "SeriesInstanceUID",
        )
        number = ds.get("InstanceNumber")
        header_rest = (_text(ds, "SeriesInstanceUID"), _text(ds, "PatientID") or "", _text(ds, "DoseSummationType"))
        instance_number = int(number) if number not in (None, "") else None
    except Exception as err:  # pydicom raises many error types on damaged data
        raise InstanceRefusedError(
            PushStatus.CANNOT_UNDERSTAND,
            f"the dataset cannot be decoded ({type(err).__name__}: {err}); export the object again",
            comment="the dataset cannot be decoded",
        ) from None
    if sop_class is None and sop_instance is None and not modality:
        raise InstanceRefusedError(
            PushStatus.CANNOT_UNDERSTAND,
            "not a DICOM dataset: no (0008,0016) SOPClassUID, (0008,0018) SOPInstanceUID or (0008,0060) Modality",
            comment="not a DICOM dataset",
        )
    if sop_class is None:
        raise InstanceRefusedError(PushStatus.DOES_NOT_MATCH_SOP_CLASS, "(0008,0016) SOPClassUID is missing")
    if expected_sop_class is not None and sop_class != expected_sop_class:
        raise InstanceRefusedError(
            PushStatus.DOES_NOT_MATCH_SOP_CLASS,
            f"(0008,0016) SOPClassUID {sop_class} differs from the request's {expected_sop_class}",
            comment="(0008,0016) SOPClassUID differs from the request's",
        )
    expected_modality = check_sop_class(sop_class)
    if modality != expected_modality:
        raise InstanceRefusedError(
            PushStatus.DOES_NOT_MATCH_SOP_CLASS,
            f"(0008,0060) Modality {modality or 'missing'!r} does not fit {pydicom.uid.UID(sop_class).name}, which "
            f"needs {expected_modality!r}",
            comment=f"(0008,0060) Modality is not {expected_modality}",
        )
    for keyword, tag, value in (
        ("SOPInstanceUID", "0008,0018", sop_instance),
        ("StudyInstanceUID", "0020,000D", study),
    ):
        if value is None or len(value) > 64 or not _UID.match(value):
            raise InstanceRefusedError(
                PushStatus.DOES_NOT_MATCH_SOP_CLASS,
                f"({tag}) {keyword} is {'missing' if value is None else f'not a valid UID ({value!r})'}",
                comment=f"({tag}) {keyword} missing or invalid",
            )
    assert sop_instance is not None and study is not None
    if expected_sop_instance is not None and sop_instance != expected_sop_instance:
        raise InstanceRefusedError(
            PushStatus.DOES_NOT_MATCH_SOP_CLASS,
            f"(0008,0018) SOPInstanceUID {sop_instance} differs from the request's {expected_sop_instance}",
            comment="(0008,0018) SOPInstanceUID differs from the request's",
        )
    series, patient, summation = header_rest
    return InstanceHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        modality=modality,
        study_uid=study,
        series_uid=series,
        patient_id=patient,
        frame_of_reference_uids=tuple(dict.fromkeys(frames)),
        referenced_ct_series_uids=tuple(dict.fromkeys(ct_series)),
        dose_summation_type=summation.upper() if summation else None,
        instance_number=instance_number,
    )


def _quoted(value: str, width: int = 16) -> str:
    return repr(value if len(value) <= width else value[: width - 1] + "…")


def check_against_case(
    header: InstanceHeader,
    candidates: Collection[CaseReference],
    *,
    study_frame_of_reference_uid: str | None,
    study_patient_id: str | None,
) -> None:
    """Check an instance against the cases its UIDs name (``candidates``) and its study's earlier objects.

    Raises:
        InstanceRefusedError: no case (0xC100), another patient (0xC101), not a plan dose (0xC102), another frame of
            reference than the study's (0xC103).
    """
    frames = header.frame_of_reference_uids
    if study_frame_of_reference_uid is not None and frames and study_frame_of_reference_uid not in frames:
        raise InstanceRefusedError(
            PushStatus.OTHER_FRAME_OF_REFERENCE,
            f"{header.describe()}: (0020,0052) FrameOfReferenceUID {', '.join(frames)} differs from "
            f"{study_frame_of_reference_uid} of the study's other objects; send one case per study",
            comment="FrameOfReferenceUID differs from the study's other objects",
        )
    if (header.frame_of_reference_uids or header.referenced_ct_series_uids) and not candidates:
        raise InstanceRefusedError(
            PushStatus.NO_CASE,
            f"{header.describe()}: (0020,0052) FrameOfReferenceUID {', '.join(header.frame_of_reference_uids)} is "
            "that of no benchmark case; contour and plan on the CT supplied for the case",
            comment="FrameOfReferenceUID is that of no benchmark case",
        )
    case_patients = {c.patient_id for c in candidates}
    if candidates and None not in case_patients and header.patient_id not in case_patients:
        expected = sorted(p for p in case_patients if p)
        raise InstanceRefusedError(
            PushStatus.ANOTHER_PATIENT,
            f"{header.describe()}: (0010,0020) PatientID {header.patient_id!r} is not the case's "
            f"{' or '.join(repr(p) for p in expected)}; send only objects of the benchmark case's patient",
            comment=f"PatientID {_quoted(header.patient_id)} is not the case's {_quoted(expected[0])}",
        )
    if study_patient_id is not None and header.patient_id != study_patient_id:
        raise InstanceRefusedError(
            PushStatus.ANOTHER_PATIENT,
            f"{header.describe()}: (0010,0020) PatientID {header.patient_id!r} differs from {study_patient_id!r} of "
            "the study's other objects",
            comment=f"PatientID {_quoted(header.patient_id)} differs from the study's",
        )
    if header.modality == "RTDOSE":
        summation = header.dose_summation_type
        summable = bool(candidates) and all(c.stage in SUMMABLE_STAGES for c in candidates)
        if summation != "PLAN" and not (summation == "BEAM" and summable):
            why = (
                "one beam's dose; this case's stage takes the plan dose" if summation == "BEAM" else "not the plan dose"
            )
            raise InstanceRefusedError(
                PushStatus.NOT_A_PLAN_DOSE,
                f"{header.describe()}: (3004,000A) DoseSummationType is {summation or 'missing'!r} ({why}); export the "
                "plan dose (DoseSummationType PLAN)",
                comment=f"DoseSummationType {summation or 'missing'}: send the PLAN dose",
            )
