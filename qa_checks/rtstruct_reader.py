"""Read an RT Structure Set: its ROIs and their planar contours."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from qa_checks.dicom_reading import (
    PathLike,
    _check_modality,
    _get,
    _opt_int,
    _opt_str,
    _pydicom_warnings_logged,
    _read_dataset,
    _require,
    _tag,
)
from qa_checks.errors import (
    FrameOfReferenceMismatchError,
    InvalidValueError,
    QAChecksError,
)
from qa_checks.structures import Contour, Structure, StructureSet

logger = logging.getLogger("qa_checks.dicom_io")


def read_rtstruct(path: PathLike) -> StructureSet:
    """Read an RTSTRUCT file into a :class:`~qa_checks.structures.StructureSet`.

    Structures follow (3006,0020) *StructureSetROISequence*; contours and (3006,002A) *ROIDisplayColor* come
    from the (3006,0039) *ROIContourSequence* item whose (3006,0084) *ReferencedROINumber* matches, and
    (3006,00A4) *RTROIInterpretedType* from (3006,0080) *RTROIObservationsSequence*. A ROI without contours is
    kept with no contours.

    Raises:
        NotDicomError, WrongModalityError, MissingAttributeError: as their names say, naming the file and tag.
        FrameOfReferenceMismatchError: the set references more than one (0020,0052) *FrameOfReferenceUID*.
    """
    p = Path(path)
    ds = _read_dataset(p)
    _check_modality(ds, "RTSTRUCT", p)
    with _pydicom_warnings_logged(p):
        return _rtstruct_from_dataset(ds, p)


_CONTOUR_DATA_TAG: Final = 0x30060050
"""(3006,0050) *ContourData*."""

_NOT_DS_TEXT: Final = re.compile(r"[^0-9+\-.eE \\]")
"""A character outside the DS repertoire (PS3.5 table 6.2-1: digits, ``+ - . e E``, space) and the backslash."""

_DS_MAX_CHARS: Final = 16
"""Longest DS value (PS3.5 table 6.2-1); longer ones are invalid DS, so they take pydicom's path."""


def _contour_data(item: Dataset) -> npt.NDArray[np.float64] | None:
    """(3006,0050) *ContourData* of a *ContourSequence* item as floats in file order; None when absent or empty.

    The values are those of pydicom's DS conversion, ``float`` of each backslash-separated string, parsed here from
    the element's raw bytes in one go (pydicom builds and validates one object per value: about a million for a
    clinical structure set). An element pydicom has already converted, one not read as DS (explicit VR other than
    DS), or text that is not plain valid DS (empty values, characters outside the DS repertoire, malformed numbers,
    values over 16 characters, which pydicom may warn about or reject depending on its validation mode) goes
    through pydicom, so its values, warnings and errors are unchanged. DS is text, so byte order does not matter.
    """
    raw = item.get_item(_CONTOUR_DATA_TAG) if _CONTOUR_DATA_TAG in item else None
    if isinstance(raw, RawDataElement) and raw.VR in (None, "DS") and isinstance(raw.value, bytes):
        # The text pydicom splits: decoded, stripped, trailing padding and NULs removed (values.convert_DS_string).
        text = raw.value.decode("latin-1").strip().rstrip(" \x00")
        if not text:
            return None
        # Over these characters, Python's float() accepts exactly pydicom's DS pattern ``^ *[+-]?(digits | digits.
        # digits? | .digits)([eE][+-]?digits)? *$``; anything else (an empty value, "1.2.3", "1e") raises.
        values = text.split("\\")
        if _NOT_DS_TEXT.search(text) is None and max(map(len, values)) <= _DS_MAX_CHARS:
            try:
                return np.fromiter(map(float, values), dtype=np.float64, count=len(values))
            except ValueError:
                pass  # pydicom reports it
    data = _get(item, "ContourData")
    if data is None:
        return None
    if not isinstance(data, MultiValue | list | tuple):  # pydicom gives a single value as a scalar
        data = [data]
    return np.asarray([float(v) for v in data], dtype=np.float64)


def _rtstruct_from_dataset(ds: Dataset, path: Path) -> StructureSet:
    for_uids: list[str] = []
    series_uids: list[str] = []
    image_uids: set[str] = set()
    for ref_for in _get(ds, "ReferencedFrameOfReferenceSequence") or []:
        uid = _opt_str(ref_for, "FrameOfReferenceUID")
        if uid:
            for_uids.append(uid)
        for study in _get(ref_for, "RTReferencedStudySequence") or []:
            for series in _get(study, "RTReferencedSeriesSequence") or []:
                s_uid = _opt_str(series, "SeriesInstanceUID")
                if s_uid:
                    series_uids.append(s_uid)
                for image in _get(series, "ContourImageSequence") or []:
                    i_uid = _opt_str(image, "ReferencedSOPInstanceUID")
                    if i_uid:
                        image_uids.add(i_uid)
    top_for = _opt_str(ds, "FrameOfReferenceUID")
    if top_for:
        for_uids.insert(0, top_for)

    interpreted: dict[int, str | None] = {}
    for obs in _get(ds, "RTROIObservationsSequence") or []:
        number = _opt_int(obs, "ReferencedROINumber")
        if number is not None:
            interpreted[number] = _opt_str(obs, "RTROIInterpretedType")

    contours_by_roi: dict[int, tuple[Contour, ...]] = {}
    colour_by_roi: dict[int, tuple[int, int, int] | None] = {}
    for roi_contour in _get(ds, "ROIContourSequence") or []:
        number = int(_require(roi_contour, "ReferencedROINumber", path, where=_tag("ROIContourSequence")))
        colour = _get(roi_contour, "ROIDisplayColor")
        colour_by_roi[number] = (
            (int(colour[0]), int(colour[1]), int(colour[2])) if colour is not None and len(colour) == 3 else None
        )
        contours = []
        for item in _get(roi_contour, "ContourSequence") or []:
            try:
                coords = _contour_data(item)
            except (TypeError, ValueError) as exc:
                raise InvalidValueError(
                    f"{path}: {_tag('ContourData')} of ROI {number} holds a value that is not a number ({exc})"
                ) from None
            if coords is None:
                continue
            if not np.all(np.isfinite(coords)):
                raise InvalidValueError(f"{path}: {_tag('ContourData')} of ROI {number} holds a non-finite value")
            if coords.size % 3:
                raise QAChecksError(
                    f"{path}: {_tag('ContourData')} of ROI {number} has {coords.size} values, not a multiple of 3"
                )
            refs = tuple(
                str(r.ReferencedSOPInstanceUID)
                for r in (_get(item, "ContourImageSequence") or [])
                if _get(r, "ReferencedSOPInstanceUID")
            )
            image_uids.update(refs)
            geometric_type = _opt_str(item, "ContourGeometricType") or "CLOSED_PLANAR"
            contours.append(Contour(coords.reshape(-1, 3), geometric_type, refs))
        contours_by_roi[number] = tuple(contours)

    structures = []
    for roi in _get(ds, "StructureSetROISequence") or []:
        number = int(_require(roi, "ROINumber", path, where=_tag("StructureSetROISequence")))
        name = _opt_str(roi, "ROIName") or ""
        roi_for = _opt_str(roi, "ReferencedFrameOfReferenceUID")
        if roi_for:
            for_uids.append(roi_for)
        structures.append(
            Structure(
                number=number,
                name=name,
                interpreted_type=interpreted.get(number),
                contours=contours_by_roi.get(number, ()),
                colour=colour_by_roi.get(number),
            )
        )
    distinct_for = list(dict.fromkeys(for_uids))
    if len(distinct_for) > 1:
        raise FrameOfReferenceMismatchError(
            f"{path}: the structure set references several {_tag('FrameOfReferenceUID')} values "
            f"({', '.join(distinct_for)}); a benchmark structure set must use one frame of reference"
        )
    distinct_series = list(dict.fromkeys(series_uids))
    if len(distinct_series) > 1:
        logger.warning("%s: several referenced series %s; using the first", path, distinct_series)
    return StructureSet(
        structures=tuple(structures),
        frame_of_reference_uid=distinct_for[0] if distinct_for else None,
        referenced_series_uid=distinct_series[0] if distinct_series else None,
        referenced_sop_instance_uids=frozenset(image_uids),
        sop_instance_uid=_opt_str(ds, "SOPInstanceUID"),
        label=_opt_str(ds, "StructureSetLabel"),
        path=str(path),
    )
