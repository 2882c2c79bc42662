"""Helpers shared by the DICOM readers (:mod:`qa_checks.dicom_io`): reading a file with pydicom's warnings logged,
required and optional attributes, modality and orientation checks, and the tolerances the readers apply.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from qa_checks.errors import (
    InvalidValueError,
    MissingAttributeError,
    NotDicomError,
    QAChecksError,
    UnsupportedGeometryError,
    WrongModalityError,
)
from qa_checks.geometry import IMAGE_ORIENTATION_BY_POSITION

logger = logging.getLogger("qa_checks.dicom_io")


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
