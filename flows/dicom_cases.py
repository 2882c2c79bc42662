"""Which benchmark case pushed DICOM objects belong to, found from the data itself.

Centres contour and plan on the CT they were given, so their objects carry the case's (0020,0052)
*FrameOfReferenceUID*, and an RT Structure Set names the case's CT series in (3006,0014) *RTReferencedSeriesSequence*
> (0020,000E) *SeriesInstanceUID*. :class:`CaseIndex` maps both UIDs to the registered cases, read from each case's
reference files (``BenchmarkCase.reference_path``); :meth:`CaseIndex.identify` picks the case or says why none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pydicom
from sqlmodel import Session, col, select

from benchmarks.cases import reference_files
from models.enums import QAStage
from models.tables import BenchmarkCase

__all__ = ["CaseIndex", "CaseMatchError", "CaseReference", "ReferenceSlice", "case_reference", "read_case_reference"]

_log = logging.getLogger(__name__)


class CaseMatchError(ValueError):
    """Pushed objects name no registered case, or more than one (the message lists the UIDs or the cases);
    ``comment`` says it in at most 64 characters (for a DICOM (0000,0902) *ErrorComment*)."""

    def __init__(self, message: str, *, comment: str) -> None:
        super().__init__(message)
        self.comment = comment


@dataclass(frozen=True)
class ReferenceSlice:
    """One slice of a case's CT series."""

    sop_instance_uid: str
    instance_number: int | None
    z_mm: float | None
    """(0020,0032) *ImagePositionPatient* z, in mm."""


@dataclass(frozen=True)
class CaseReference:
    """What identifies a registered case's reference objects."""

    case_id: int
    case_code: str
    version: str
    stage: QAStage
    created_at: datetime
    frame_of_reference_uid: str | None
    ct_series_uid: str | None
    ct_slices: tuple[ReferenceSlice, ...]
    """The CT series' slices, in (0020,0032) z order."""
    patient_id: str | None
    rtplan_uid: str | None
    """(0008,0018) *SOPInstanceUID* of the reference RT Plan (planning and TPS-check cases)."""

    @property
    def label(self) -> str:
        """``code@version``."""
        return f"{self.case_code}@{self.version}"


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value).strip() or None if value is not None else None


def read_case_reference(case: BenchmarkCase) -> CaseReference:
    """Read the identifying UIDs of ``case``'s reference files (headers only).

    Raises:
        FileNotFoundError: the reference folder holds no files.
    """
    files = reference_files(Path(case.reference_path))
    if not files:
        raise FileNotFoundError(f"case {case.case_code}@{case.version}: no reference files in {case.reference_path}")
    slices: list[ReferenceSlice] = []
    frame = series = patient = plan = None
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="64 KB")
        modality = _text(ds, "Modality")
        frame = frame or _text(ds, "FrameOfReferenceUID")
        patient = patient or _text(ds, "PatientID")
        if modality == "CT":
            series = series or _text(ds, "SeriesInstanceUID")
            position = ds.get("ImagePositionPatient")
            number = ds.get("InstanceNumber")
            slices.append(
                ReferenceSlice(
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    instance_number=int(number) if number not in (None, "") else None,
                    z_mm=float(position[2]) if position is not None and len(position) == 3 else None,
                )
            )
        elif modality == "RTPLAN":
            plan = _text(ds, "SOPInstanceUID")
    slices.sort(key=lambda s: (s.z_mm is None, s.z_mm or 0.0, s.sop_instance_uid))
    assert case.id is not None
    return CaseReference(
        case_id=case.id,
        case_code=case.case_code,
        version=case.version,
        stage=case.stage,
        created_at=case.created_at,
        frame_of_reference_uid=frame,
        ct_series_uid=series,
        ct_slices=tuple(slices),
        patient_id=patient,
        rtplan_uid=plan,
    )


_cache: dict[tuple[str, str], CaseReference] = {}
_cache_lock = threading.Lock()


def case_reference(case: BenchmarkCase) -> CaseReference | None:
    """:func:`read_case_reference`, once per reference folder and content hash in this process; None (logged)
    when the reference files cannot be read."""
    key = (case.reference_path, case.reference_sha256)
    with _cache_lock:
        found = _cache.get(key)
    if found is not None and found.case_id == case.id:
        return found
    try:
        found = read_case_reference(case)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        _log.warning("case %s@%s: reference files unreadable, not matched: %s", case.case_code, case.version, err)
        return None
    with _cache_lock:
        _cache[key] = found
    return found


class CaseIndex:
    """Registered cases by frame of reference and by CT series UID."""

    def __init__(self, references: Iterable[CaseReference]) -> None:
        self.references = tuple(references)
        self._by_frame: dict[str, list[CaseReference]] = {}
        self._by_series: dict[str, list[CaseReference]] = {}
        for ref in self.references:
            if ref.frame_of_reference_uid:
                self._by_frame.setdefault(ref.frame_of_reference_uid, []).append(ref)
            if ref.ct_series_uid:
                self._by_series.setdefault(ref.ct_series_uid, []).append(ref)

    @classmethod
    def load(cls, session: Session) -> CaseIndex:
        """Every registered case whose reference files can be read."""
        cases = session.exec(select(BenchmarkCase).order_by(col(BenchmarkCase.id))).all()
        return cls(ref for ref in (case_reference(c) for c in cases) if ref is not None)

    def candidates(
        self, *, frame_of_reference_uids: Iterable[str] = (), ct_series_uids: Iterable[str] = ()
    ) -> list[CaseReference]:
        """Cases with any of these frames of reference, by case code then newest version first; only when no frame of
        reference is given, the cases with any of these CT series (the frame of reference decides: an object drawn
        on another frame of reference is not the case's, whatever series it names)."""
        found: dict[int, CaseReference] = {}
        frames = list(frame_of_reference_uids)
        for uid in frames:
            found.update((r.case_id, r) for r in self._by_frame.get(uid, []))
        for uid in [] if frames else ct_series_uids:
            found.update((r.case_id, r) for r in self._by_series.get(uid, []))
        return sorted(found.values(), key=lambda r: (r.case_code, -r.created_at.timestamp(), -r.case_id))

    def identify(self, *, frame_of_reference_uids: Iterable[str], ct_series_uids: Iterable[str] = ()) -> CaseReference:
        """The one case the UIDs name; of several versions of one case, the newest (as an upload without a version).

        Raises:
            CaseMatchError: no case, or several different cases.
        """
        frames, series = sorted(set(frame_of_reference_uids)), sorted(set(ct_series_uids))
        found = self.candidates(frame_of_reference_uids=frames, ct_series_uids=series)
        if not found:
            named = [f"(0020,0052) FrameOfReferenceUID {u}" for u in frames]
            named += [f"CT (0020,000E) SeriesInstanceUID {u}" for u in ([] if frames else series)]
            if not named:
                raise CaseMatchError(
                    "the objects carry no (0020,0052) FrameOfReferenceUID naming a benchmark case; send the "
                    "structure set or dose drawn on the CT supplied for the case",
                    comment="no FrameOfReferenceUID names a benchmark case",
                )
            raise CaseMatchError(
                f"no benchmark case has {' or '.join(named)}; contour and plan on the CT supplied for the case "
                "(`rtqa cases list` shows the cases)",
                comment="FrameOfReferenceUID is that of no benchmark case",
            )
        codes = sorted({r.case_code for r in found})
        if len(codes) > 1:
            raise CaseMatchError(
                f"the objects match several benchmark cases ({', '.join(r.label for r in found)}); "
                "upload them with the case named (POST /api/v1/submissions) or ask the QA team",
                comment="the objects match several benchmark cases",
            )
        return found[0]
