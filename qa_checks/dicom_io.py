"""Readers for DICOM CT series, RTSTRUCT, RTPLAN and RTDOSE, and for a whole submission folder.

Geometry rules (see :mod:`qa_checks.geometry` for the conventions):

- Only axial, axis-aligned images are read: (0020,0037) *ImageOrientationPatient* must have its row cosines
  along ±x and its column cosines along ±y (within :data:`ORIENTATION_TOLERANCE`), which covers HFS, HFP, FFS and
  FFP. Anything else raises :class:`~qa_checks.errors.UnsupportedGeometryError`; nothing is resampled.
- Returned arrays are re-ordered so that ``z_mm``, ``y_mm`` and ``x_mm`` all *increase*: where a direction
  cosine is negative (HFP, FFS, FFP) the stored array is flipped along that axis. Voxel values are not changed.
- CT slices are sorted by (0020,0032) *ImagePositionPatient* z; their spacing must be uniform within
  :data:`SLICE_SPACING_TOLERANCE_MM` and their x/y origin identical within the same tolerance (no gantry tilt).

pydicom reports non-conforming values (e.g. an over-long UID) as Python warnings when elements are decoded.
The readers log those through this module's logger with the file name instead of letting them propagate.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from qa_checks.errors import (
    AmbiguousInputError,
    FrameOfReferenceMismatchError,
    InvalidGridError,
    InvalidValueError,
    MissingAttributeError,
    NotDicomError,
    QAChecksError,
    UnsupportedDoseUnitsError,
    UnsupportedGeometryError,
    WrongModalityError,
)
from qa_checks.geometry import IMAGE_ORIENTATION_BY_POSITION, DoseGrid, ImageVolume, check_axis
from qa_checks.plan import Beam, DoseReference, Plan
from qa_checks.rtdose_meaning import DEFAULT_ALLOWED_DOSE_TYPES, _positive_int, dose_meaning
from qa_checks.structures import Contour, Structure, StructureSet

__all__ = [
    "ORIENTATION_TOLERANCE",
    "SLICE_SPACING_TOLERANCE_MM",
    "LoadedSubmission",
    "load_submission",
    "read_ct_series",
    "read_rtdose",
    "read_rtplan",
    "read_rtstruct",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

ORIENTATION_TOLERANCE: Final = 1e-4
"""Largest deviation of a (0020,0037) *ImageOrientationPatient* component from 0 or ±1 still taken as
axis-aligned. 1e-4 is a rotation of about 0.006°, i.e. 0.03 mm across a 50 cm field: far below a voxel, while
any deliberate oblique acquisition differs by orders of magnitude more."""

SLICE_SPACING_TOLERANCE_MM: Final = 0.01
"""Largest deviation (mm) of any CT slice gap from the median gap, and of any slice's x/y origin from the first
slice's, for the series to count as uniform and untilted. Rounding of 16-character DS values is ~1e-10 mm;
a missing or extra slice changes a gap by a whole slice spacing (≥ 0.5 mm)."""

GRID_FRAME_OFFSET_TOLERANCE_MM: Final = 0.01
"""How close the first (3004,000C) *GridFrameOffsetVector* value must be to 0 (relative offsets) or to the
(0020,0032) *ImagePositionPatient* z (absolute offsets), in mm; same reasoning as the slice spacing tolerance."""

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


# --------------------------------------------------------------------------------------------------------------
# small helpers


def _tag(keyword: str) -> str:
    """``"(gggg,eeee) Keyword"`` for a DICOM keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - only keywords from the dictionary are used
        return keyword
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}"


@contextmanager
def _pydicom_warnings_logged(path: object, *, convert_errors: bool = True) -> Iterator[None]:
    """Turn warnings raised while decoding ``path`` into log records naming the file, and any error other than a
    :class:`~qa_checks.errors.QAChecksError` into :class:`~qa_checks.errors.InvalidValueError` naming it.

    pydicom decodes values lazily, so damaged bytes surface as whatever error the conversion meets (``ValueError``
    from a DS that is not a number, ``struct.error`` from a short binary value, ``UnicodeError``, ...); the error's
    type and text are kept in the message and the traceback is logged. ``convert_errors=False`` leaves errors as
    they are (for the file reader, which sorts them itself).
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except QAChecksError:
        raise
    except Exception as exc:
        if not convert_errors:
            raise
        logger.warning("%s: a value cannot be decoded", path, exc_info=True)
        raise InvalidValueError(
            f"{path}: a value cannot be decoded ({type(exc).__name__}: {exc}); the file is damaged or does not "
            "conform to DICOM: export it again"
        ) from exc
    finally:
        for w in caught:
            logger.warning("%s: %s", path, w.message)


def _read_dataset(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read one file; :class:`NotDicomError` naming the file if it is not DICOM."""
    try:
        with _pydicom_warnings_logged(path, convert_errors=False):
            try:
                return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                # Some valid files (e.g. older exports) lack the 128-byte preamble and 'DICM' prefix: read them
                # anyway, but accept the result only if it carries the SOP common attributes.
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
                if "SOPClassUID" in ds and "Modality" in ds:
                    return ds
                raise
    except InvalidDicomError as exc:
        raise NotDicomError(
            f"{path}: not a DICOM file (no 'DICM' prefix and no (0008,0016) SOPClassUID / (0008,0060) Modality)"
        ) from exc
    except (IsADirectoryError, FileNotFoundError) as exc:
        raise NotDicomError(f"{path}: cannot be read as a DICOM file: {exc}") from exc
    except Exception as exc:  # truncated or corrupt files raise a variety of errors inside pydicom
        raise NotDicomError(f"{path}: cannot be read as DICOM ({type(exc).__name__}: {exc})") from exc


def _get(ds: Dataset, keyword: str) -> Any:
    """Value of ``keyword`` or None when absent or empty."""
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None:
        return None
    try:
        if len(value) == 0:  # empty string, bytes, multi-value or sequence
            return None
    except TypeError:  # numbers (DS, IS, US, ...) have no length
        pass
    return value


def _require(ds: Dataset, keyword: str, path: object, *, where: str = "") -> Any:
    value = _get(ds, keyword)
    if value is None:
        location = f" in {where}" if where else ""
        raise MissingAttributeError(f"{path}: {_tag(keyword)}{location} is missing or empty")
    return value


def _opt_str(ds: Dataset, keyword: str) -> str | None:
    value = _get(ds, keyword)
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _opt_float(ds: Dataset, keyword: str) -> float | None:
    value = _get(ds, keyword)
    return None if value is None else float(value)


def _opt_int(ds: Dataset, keyword: str) -> int | None:
    value = _get(ds, keyword)
    return None if value is None else int(value)


def _floats(ds: Dataset, keyword: str, path: object, *, count: int | None = None) -> npt.NDArray[np.float64]:
    value = _require(ds, keyword, path)
    try:
        arr = np.asarray([float(v) for v in (value if isinstance(value, Sequence) else [value])], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MissingAttributeError(f"{path}: {_tag(keyword)} is not numeric: {value!r}") from exc
    if count is not None and arr.size != count:
        raise MissingAttributeError(f"{path}: {_tag(keyword)} has {arr.size} values, expected {count}: {value!r}")
    return arr


def _check_modality(ds: Dataset, expected: str, path: object) -> None:
    modality = _get(ds, "Modality")
    if modality is None:
        raise MissingAttributeError(f"{path}: {_tag('Modality')} is missing; expected {expected!r}")
    if str(modality).upper() != expected:
        raise WrongModalityError(f"{path}: {_tag('Modality')} is {modality!r}, expected {expected!r}")


def _collect_files(paths_or_dir: PathLike | Iterable[PathLike]) -> list[Path]:
    """Files named by ``paths_or_dir``: a directory (searched recursively), a file, or an iterable of them.

    Hidden files and directories (name starting with ``"."``) inside a directory are ignored; an explicitly
    listed file is always used.
    """
    items = [Path(paths_or_dir)] if isinstance(paths_or_dir, str | os.PathLike) else [Path(p) for p in paths_or_dir]
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            for root, dirs, names in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
        else:
            files.append(item)
    return files


def _axis_signs(ds: Dataset, path: object) -> tuple[float, float]:
    """Signs (+1/-1) of the row cosine's x and the column cosine's y; refuses anything not axis-aligned."""
    iop = _floats(ds, "ImageOrientationPatient", path, count=6)
    row, col = iop[:3], iop[3:]
    aligned = (
        abs(abs(row[0]) - 1.0) <= ORIENTATION_TOLERANCE
        and abs(row[1]) <= ORIENTATION_TOLERANCE
        and abs(row[2]) <= ORIENTATION_TOLERANCE
        and abs(col[0]) <= ORIENTATION_TOLERANCE
        and abs(abs(col[1]) - 1.0) <= ORIENTATION_TOLERANCE
        and abs(col[2]) <= ORIENTATION_TOLERANCE
    )
    if not aligned:
        raise UnsupportedGeometryError(
            f"{path}: {_tag('ImageOrientationPatient')} is {iop.tolist()}; only axial, axis-aligned images "
            f"(rows along ±x, columns along ±y: HFS, HFP, FFS, FFP) are supported, oblique images are not resampled"
        )
    return float(np.sign(row[0])), float(np.sign(col[1]))


def _check_position_matches_orientation(position: str | None, signs: tuple[float, float], path: object) -> None:
    if position is None or position not in IMAGE_ORIENTATION_BY_POSITION:
        return
    usual = IMAGE_ORIENTATION_BY_POSITION[position]
    if (usual[0], usual[4]) != signs:
        logger.warning(
            "%s: %s is %r but %s has row/column signs %s; geometry follows the orientation",
            path,
            _tag("PatientPosition"),
            position,
            _tag("ImageOrientationPatient"),
            signs,
        )


# --------------------------------------------------------------------------------------------------------------
# CT


def read_ct_series(paths_or_dir: PathLike | Iterable[PathLike]) -> ImageVolume:
    """Read one CT series into an :class:`~qa_checks.geometry.ImageVolume` (HU, (z, y, x), increasing axes).

    Args:
        paths_or_dir: a directory (all non-hidden files in it and below must be CT slices of one series),
            a single file, or an iterable of files.

    Raises:
        NotDicomError: a file is not DICOM, or there are no files.
        WrongModalityError: a file's (0008,0060) *Modality* is not ``CT``.
        AmbiguousInputError: the files hold more than one (0020,000E) *SeriesInstanceUID*.
        UnsupportedGeometryError: oblique orientation, multi-frame images, gantry tilt, non-uniform spacing.
        MissingAttributeError: a required attribute (geometry, rescale, UIDs) is absent.
    """
    files = _collect_files(paths_or_dir)
    if not files:
        raise NotDicomError(f"{paths_or_dir}: no files to read as a CT series")
    datasets = [(p, _read_dataset(p)) for p in files]
    for p, ds in datasets:
        _check_modality(ds, "CT", p)
    with _pydicom_warnings_logged(f"CT series in {files[0].parent}"):
        return _ct_from_datasets(datasets)


def _ct_from_datasets(datasets: Sequence[tuple[Path, Dataset]]) -> ImageVolume:
    series = defaultdict(list)
    for p, ds in datasets:
        series[str(_require(ds, "SeriesInstanceUID", p))].append(p)
    if len(series) > 1:
        detail = "; ".join(f"{uid}: {len(ps)} files (e.g. {ps[0]})" for uid, ps in series.items())
        raise AmbiguousInputError(f"CT files belong to {len(series)} series ({_tag('SeriesInstanceUID')}): {detail}")

    first_path, first = datasets[0]
    signs = _axis_signs(first, first_path)
    rows = int(_require(first, "Rows", first_path))
    cols = int(_require(first, "Columns", first_path))
    spacing = _floats(first, "PixelSpacing", first_path, count=2)  # (row spacing = along y, column spacing = along x)
    iop0 = _floats(first, "ImageOrientationPatient", first_path, count=6)

    slices: list[tuple[float, Path, Dataset]] = []
    origin_xy: npt.NDArray[np.float64] | None = None
    for p, ds in datasets:
        frames = _opt_int(ds, "NumberOfFrames")
        if frames is not None and frames > 1:
            raise UnsupportedGeometryError(
                f"{p}: {_tag('NumberOfFrames')} is {frames}; multi-frame CT is not supported"
            )
        tilt = _opt_float(ds, "GantryDetectorTilt")
        if tilt is not None and abs(tilt) > ORIENTATION_TOLERANCE:
            raise UnsupportedGeometryError(f"{p}: {_tag('GantryDetectorTilt')} is {tilt}; tilted CT is not supported")
        iop = _floats(ds, "ImageOrientationPatient", p, count=6)
        if np.max(np.abs(iop - iop0)) > ORIENTATION_TOLERANCE:
            raise UnsupportedGeometryError(
                f"{p}: {_tag('ImageOrientationPatient')} is {iop.tolist()} but {first_path} has {iop0.tolist()}; "
                f"all slices of a series must share one orientation"
            )
        for keyword, expected in (("Rows", rows), ("Columns", cols)):
            value = int(_require(ds, keyword, p))
            if value != expected:
                raise InvalidGridError(f"{p}: {_tag(keyword)} is {value} but {first_path} has {expected}")
        ps = _floats(ds, "PixelSpacing", p, count=2)
        if np.max(np.abs(ps - spacing)) > SLICE_SPACING_TOLERANCE_MM:
            raise UnsupportedGeometryError(
                f"{p}: {_tag('PixelSpacing')} is {ps.tolist()} but {first_path} has {spacing.tolist()}"
            )
        ipp = _floats(ds, "ImagePositionPatient", p, count=3)
        if origin_xy is None:
            origin_xy = ipp[:2]
        elif np.max(np.abs(ipp[:2] - origin_xy)) > SLICE_SPACING_TOLERANCE_MM:
            raise UnsupportedGeometryError(
                f"{p}: {_tag('ImagePositionPatient')} x/y is {ipp[:2].tolist()} but the first slice has "
                f"{origin_xy.tolist()}; slices shifted in-plane (gantry tilt or a sheared series) are not supported"
            )
        slices.append((float(ipp[2]), p, ds))

    slices.sort(key=lambda item: item[0])
    z = np.array([s[0] for s in slices], dtype=np.float64)
    if z.size > 1:
        gaps = np.diff(z)
        dup = np.flatnonzero(gaps <= SLICE_SPACING_TOLERANCE_MM)
        if dup.size:
            i = int(dup[0])
            raise InvalidGridError(
                f"{slices[i][1]} and {slices[i + 1][1]} have the same {_tag('ImagePositionPatient')} z "
                f"({z[i]} mm, {z[i + 1]} mm); duplicate slices"
            )
        median_gap = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - median_gap) > SLICE_SPACING_TOLERANCE_MM)
        if bad.size:
            i = int(bad[0])
            raise UnsupportedGeometryError(
                f"non-uniform slice spacing: {_tag('ImagePositionPatient')} z goes from {z[i]} mm ({slices[i][1]}) "
                f"to {z[i + 1]} mm ({slices[i + 1][1]}), a gap of {gaps[i]:.4g} mm where the series' spacing is "
                f"{median_gap:.4g} mm (tolerance {SLICE_SPACING_TOLERANCE_MM} mm); missing or irregular slices"
            )

    values = np.empty((len(slices), rows, cols), dtype=np.float32)
    for k, (_, p, ds) in enumerate(slices):
        slope = _require(ds, "RescaleSlope", p)
        intercept = _require(ds, "RescaleIntercept", p)
        try:
            with _pydicom_warnings_logged(p):
                pixels = ds.pixel_array
        except Exception as exc:
            raise MissingAttributeError(f"{p}: {_tag('PixelData')} cannot be decoded: {exc}") from exc
        if pixels.shape != (rows, cols):
            raise InvalidGridError(f"{p}: {_tag('PixelData')} has shape {pixels.shape}, expected {(rows, cols)}")
        values[k] = pixels.astype(np.float32) * np.float32(float(slope)) + np.float32(float(intercept))

    assert origin_xy is not None
    row_sign, col_sign = signs
    x = origin_xy[0] + row_sign * spacing[1] * np.arange(cols)
    y = origin_xy[1] + col_sign * spacing[0] * np.arange(rows)
    if row_sign < 0:
        values = values[:, :, ::-1]
        x = x[::-1]
    if col_sign < 0:
        values = values[:, ::-1, :]
        y = y[::-1]

    position = _opt_str(first, "PatientPosition")
    _check_position_matches_orientation(position, signs, first_path)
    for_uids = {_opt_str(ds, "FrameOfReferenceUID") for _, _, ds in slices}
    if len(for_uids) > 1:
        raise FrameOfReferenceMismatchError(
            f"CT series {_opt_str(first, 'SeriesInstanceUID')}: slices carry several {_tag('FrameOfReferenceUID')} "
            f"values: {sorted(str(u) for u in for_uids)}"
        )
    volume = ImageVolume(
        values=np.ascontiguousarray(values),
        z_mm=z,
        y_mm=np.ascontiguousarray(y),
        x_mm=np.ascontiguousarray(x),
        frame_of_reference_uid=for_uids.pop(),
        patient_position=position,
        series_instance_uid=_opt_str(first, "SeriesInstanceUID"),
        sop_instance_uids=tuple(str(_require(ds, "SOPInstanceUID", p)) for _, p, ds in slices),
    )
    logger.debug("read CT series %s: shape %s", volume.series_instance_uid, volume.shape)
    return volume


# --------------------------------------------------------------------------------------------------------------
# RTSTRUCT


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


# --------------------------------------------------------------------------------------------------------------
# RTDOSE


def read_rtdose(
    path: PathLike,
    *,
    allow_relative: bool = False,
    number_of_fractions: int | None = None,
    allowed_dose_types: Collection[str] = DEFAULT_ALLOWED_DOSE_TYPES,
    allow_beam: bool = False,
) -> DoseGrid:
    """Read an RTDOSE file into a :class:`~qa_checks.geometry.DoseGrid` (Gy, (z, y, x), increasing axes).

    Dose = stored value × (3004,000E) *DoseGridScaling*. Frame positions come from (3004,000C)
    *GridFrameOffsetVector*: when its first value is 0 the offsets are relative to (0020,0032)
    *ImagePositionPatient* along the slice normal (row cosines × column cosines); when the first value equals
    the *ImagePositionPatient* z they are absolute z coordinates (allowed by DICOM only for the HFS
    orientation). A single-frame grid may omit the vector. (3004,0002) *DoseUnits*, (3004,0004) *DoseType* and
    (3004,000A) *DoseSummationType* are recorded on the grid.

    What the dose means is checked by :func:`qa_checks.rtdose_meaning.dose_meaning`: *DoseType* must be one of
    ``allowed_dose_types``; *DoseSummationType* must be PLAN, or FRACTION when ``number_of_fractions`` is given
    (the values are then multiplied by it and the grid's ``notes`` say so), or BEAM when ``allow_beam`` (the
    grid's ``summation`` is then ``"BEAM"``: one beam, not the plan; see
    :func:`qa_checks.rtdose_meaning.sum_beam_doses`).

    Args:
        allow_relative: (3004,0002) *DoseUnits* ``RELATIVE`` is refused unless this is True; when allowed the
            grid's ``values_gy`` hold the scaled relative values and ``dose_units`` is ``"RELATIVE"``.
        number_of_fractions: the plan's number of fractions, to accept a FRACTION dose (multiplied by it).
        allowed_dose_types: (3004,0004) *DoseType* values accepted.
        allow_beam: accept a single-beam dose (read as that beam's dose, not the plan's).

    Raises:
        UnsupportedDoseUnitsError: *DoseUnits* is not ``GY`` (and not an allowed ``RELATIVE``).
        UnsupportedDoseTypeError: *DoseType* not allowed.
        UnsupportedDoseSummationError: *DoseSummationType* is not PLAN (nor an accepted FRACTION or BEAM).
        InvalidGridError: the offset vector's length or first value does not fit the grid.
        UnsupportedGeometryError: oblique orientation.
        NotDicomError, WrongModalityError, MissingAttributeError.
    """
    if number_of_fractions is not None:
        _positive_int(number_of_fractions)  # a wrong argument is the caller's error, not the file's
    p = Path(path)
    ds = _read_dataset(p)
    _check_modality(ds, "RTDOSE", p)
    with _pydicom_warnings_logged(p):
        return _rtdose_from_dataset(
            ds,
            p,
            allow_relative=allow_relative,
            number_of_fractions=number_of_fractions,
            allowed_dose_types=allowed_dose_types,
            allow_beam=allow_beam,
        )


def _rtdose_from_dataset(
    ds: Dataset,
    path: Path,
    *,
    allow_relative: bool,
    number_of_fractions: int | None = None,
    allowed_dose_types: Collection[str] = DEFAULT_ALLOWED_DOSE_TYPES,
    allow_beam: bool = False,
    name: str | None = None,
) -> DoseGrid:
    """``name``: the file as the user knows it (relative to the submission folder) in the new messages."""
    units = str(_require(ds, "DoseUnits", path)).upper()
    if units != "GY" and not (units == "RELATIVE" and allow_relative):
        raise UnsupportedDoseUnitsError(
            f"{path}: {_tag('DoseUnits')} is {units!r}; only 'GY' gives dose in Gy "
            f"(read with allow_relative=True to accept 'RELATIVE')"
        )
    meaning = dose_meaning(
        _opt_str(ds, "DoseType"),
        _opt_str(ds, "DoseSummationType"),
        name=name or str(path),
        number_of_fractions=number_of_fractions,
        allowed_dose_types=allowed_dose_types,
        allow_beam=allow_beam,
    )
    row_sign, col_sign = _axis_signs(ds, path)
    rows = int(_require(ds, "Rows", path))
    cols = int(_require(ds, "Columns", path))
    frames = _opt_int(ds, "NumberOfFrames") or 1
    spacing = _floats(ds, "PixelSpacing", path, count=2)
    ipp = _floats(ds, "ImagePositionPatient", path, count=3)
    scaling = float(_require(ds, "DoseGridScaling", path))

    offsets_raw = _get(ds, "GridFrameOffsetVector")
    if offsets_raw is None:
        if frames > 1:
            raise MissingAttributeError(
                f"{path}: {_tag('GridFrameOffsetVector')} is missing but {_tag('NumberOfFrames')} is {frames}"
            )
        offsets = np.zeros(1)
    else:
        offsets = _floats(ds, "GridFrameOffsetVector", path)
    if offsets.size != frames:
        raise InvalidGridError(
            f"{path}: {_tag('GridFrameOffsetVector')} has {offsets.size} values but {_tag('NumberOfFrames')} is "
            f"{frames}"
        )
    normal_z = row_sign * col_sign  # z component of (row cosines × column cosines) for axis-aligned images
    if abs(offsets[0]) <= GRID_FRAME_OFFSET_TOLERANCE_MM:
        z = ipp[2] + normal_z * offsets
    elif abs(offsets[0] - ipp[2]) <= GRID_FRAME_OFFSET_TOLERANCE_MM and normal_z > 0:
        z = offsets.copy()
    else:
        raise InvalidGridError(
            f"{path}: first {_tag('GridFrameOffsetVector')} value is {offsets[0]} mm: neither 0 (relative offsets) "
            f"nor the {_tag('ImagePositionPatient')} z {ipp[2]} mm (absolute offsets, HFS orientation only)"
        )
    z = check_axis(z, name=f"{path}: z from {_tag('GridFrameOffsetVector')}")

    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise MissingAttributeError(f"{path}: {_tag('PixelData')} cannot be decoded: {exc}") from exc
    pixels = pixels.reshape(frames, rows, cols)
    values = pixels.astype(np.float64) * scaling * meaning.factor

    x = ipp[0] + row_sign * spacing[1] * np.arange(cols)
    y = ipp[1] + col_sign * spacing[0] * np.arange(rows)
    if row_sign < 0:
        values, x = values[:, :, ::-1], x[::-1]
    if col_sign < 0:
        values, y = values[:, ::-1, :], y[::-1]
    if z.size > 1 and z[1] < z[0]:
        values, z = values[::-1], z[::-1]

    plan_uid = None
    beam_numbers: set[int] = set()
    plan_refs = _get(ds, "ReferencedRTPlanSequence") or []
    if plan_refs:
        plan_uid = _opt_str(plan_refs[0], "ReferencedSOPInstanceUID")
        for group in _get(plan_refs[0], "ReferencedFractionGroupSequence") or []:
            for beam in _get(group, "ReferencedBeamSequence") or []:
                number = _opt_int(beam, "ReferencedBeamNumber")
                if number is not None:
                    beam_numbers.add(number)
    return DoseGrid(
        values_gy=np.ascontiguousarray(values),
        z_mm=np.ascontiguousarray(z),
        y_mm=np.ascontiguousarray(y),
        x_mm=np.ascontiguousarray(x),
        frame_of_reference_uid=_opt_str(ds, "FrameOfReferenceUID"),
        dose_units=units,
        dose_type=_opt_str(ds, "DoseType"),
        dose_summation_type=_opt_str(ds, "DoseSummationType"),
        referenced_plan_uid=plan_uid,
        sop_instance_uid=_opt_str(ds, "SOPInstanceUID"),
        path=str(path),
        summation=meaning.summation,
        referenced_beam_numbers=tuple(sorted(beam_numbers)),
        notes=meaning.notes,
    )


# --------------------------------------------------------------------------------------------------------------
# RTPLAN


def read_rtplan(path: PathLike) -> Plan:
    """Read an RTPLAN file into a :class:`~qa_checks.plan.Plan` (see its attributes for the tags used).

    Raises:
        NotDicomError, WrongModalityError, MissingAttributeError.
    """
    p = Path(path)
    ds = _read_dataset(p)
    _check_modality(ds, "RTPLAN", p)
    with _pydicom_warnings_logged(p):
        return _rtplan_from_dataset(ds, p)


def _beam_from_item(beam: Dataset, meterset_by_beam: Mapping[int, float], path: Path) -> Beam:
    number = int(_require(beam, "BeamNumber", path, where=_tag("BeamSequence")))
    control_points = list(_get(beam, "ControlPointSequence") or [])
    first: Dataset = control_points[0] if control_points else Dataset()
    gantry_angles = [float(cp.GantryAngle) for cp in control_points if _get(cp, "GantryAngle") is not None]
    isocentre = _get(first, "IsocenterPosition")
    fluence_mode = None
    for item in _get(beam, "PrimaryFluenceModeSequence") or []:
        fluence_mode = _opt_str(item, "FluenceModeID") or _opt_str(item, "FluenceMode")
    return Beam(
        number=number,
        name=_opt_str(beam, "BeamName"),
        description=_opt_str(beam, "BeamDescription"),
        beam_type=_opt_str(beam, "BeamType"),
        radiation_type=_opt_str(beam, "RadiationType"),
        treatment_delivery_type=_opt_str(beam, "TreatmentDeliveryType"),
        machine_name=_opt_str(beam, "TreatmentMachineName"),
        nominal_beam_energy_mev=_opt_float(first, "NominalBeamEnergy"),
        fluence_mode=fluence_mode,
        gantry_start_deg=gantry_angles[0] if gantry_angles else None,
        gantry_stop_deg=gantry_angles[-1] if gantry_angles else None,
        gantry_rotation_direction=_opt_str(first, "GantryRotationDirection"),
        collimator_deg=_opt_float(first, "BeamLimitingDeviceAngle"),
        couch_deg=_opt_float(first, "PatientSupportAngle"),
        isocentre_mm=(
            (float(isocentre[0]), float(isocentre[1]), float(isocentre[2]))
            if isocentre is not None and len(isocentre) == 3
            else None
        ),
        number_of_control_points=_opt_int(beam, "NumberOfControlPoints") or (len(control_points) or None),
        meterset=meterset_by_beam.get(number),
        primary_dosimeter_unit=_opt_str(beam, "PrimaryDosimeterUnit"),
        source_axis_distance_mm=_opt_float(beam, "SourceAxisDistance"),
    )


def _dose_reference(item: Dataset) -> DoseReference:
    return DoseReference(
        number=_opt_int(item, "DoseReferenceNumber"),
        structure_type=_opt_str(item, "DoseReferenceStructureType"),
        description=_opt_str(item, "DoseReferenceDescription"),
        dose_reference_type=_opt_str(item, "DoseReferenceType"),
        roi_number=_opt_int(item, "ReferencedROINumber"),
        target_prescription_dose_gy=_opt_float(item, "TargetPrescriptionDose"),
        target_minimum_dose_gy=_opt_float(item, "TargetMinimumDose"),
        delivery_maximum_dose_gy=_opt_float(item, "DeliveryMaximumDose"),
    )


def _rtplan_from_dataset(ds: Dataset, path: Path) -> Plan:
    prescriptions = tuple(
        float(item.TargetPrescriptionDose)
        for item in (_get(ds, "DoseReferenceSequence") or [])
        if _get(item, "TargetPrescriptionDose") is not None
    )
    fraction_groups = list(_get(ds, "FractionGroupSequence") or [])
    meterset_by_beam: dict[int, float] = {}
    number_of_fractions = None
    if fraction_groups:
        group = fraction_groups[0]
        number_of_fractions = _opt_int(group, "NumberOfFractionsPlanned")
        for ref in _get(group, "ReferencedBeamSequence") or []:
            beam_number = _opt_int(ref, "ReferencedBeamNumber")
            meterset = _opt_float(ref, "BeamMeterset")
            if beam_number is not None and meterset is not None:
                meterset_by_beam[beam_number] = meterset
        if len(fraction_groups) > 1:
            logger.warning(
                "%s: %d items in %s; fractions and metersets are taken from the first",
                path,
                len(fraction_groups),
                _tag("FractionGroupSequence"),
            )
    beams = tuple(_beam_from_item(b, meterset_by_beam, path) for b in (_get(ds, "BeamSequence") or []))
    structure_refs = _get(ds, "ReferencedStructureSetSequence") or []
    setups = _get(ds, "PatientSetupSequence") or []
    return Plan(
        sop_instance_uid=_opt_str(ds, "SOPInstanceUID"),
        label=_opt_str(ds, "RTPlanLabel"),
        name=_opt_str(ds, "RTPlanName"),
        description=_opt_str(ds, "RTPlanDescription"),
        intent=_opt_str(ds, "PlanIntent"),
        geometry=_opt_str(ds, "RTPlanGeometry"),
        approval_status=_opt_str(ds, "ApprovalStatus"),
        prescription_dose_gy=max(prescriptions) if prescriptions else None,
        target_prescription_doses_gy=prescriptions,
        dose_references=tuple(_dose_reference(item) for item in (_get(ds, "DoseReferenceSequence") or [])),
        number_of_fractions=number_of_fractions,
        number_of_fraction_groups=len(fraction_groups),
        beams=beams,
        frame_of_reference_uid=_opt_str(ds, "FrameOfReferenceUID"),
        referenced_structure_set_uid=(
            _opt_str(structure_refs[0], "ReferencedSOPInstanceUID") if structure_refs else None
        ),
        patient_position=_opt_str(setups[0], "PatientPosition") if setups else None,
        manufacturer=_opt_str(ds, "Manufacturer"),
        model_name=_opt_str(ds, "ManufacturerModelName"),
        software_versions=_opt_str(ds, "SoftwareVersions"),
        path=str(path),
    )


# The submission loader lives in its own module; it is re-exported here for the readers' callers.
from qa_checks.submission_io import LoadedSubmission, load_submission  # noqa: E402
