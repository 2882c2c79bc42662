"""Read an RT Dose grid (see :mod:`qa_checks.rtdose_meaning` for what the dose means)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from qa_checks.dicom_reading import (
    GRID_FRAME_OFFSET_TOLERANCE_MM,
    PathLike,
    _axis_signs,
    _check_modality,
    _floats,
    _get,
    _opt_int,
    _opt_str,
    _pydicom_warnings_logged,
    _read_dataset,
    _require,
    _tag,
)
from qa_checks.errors import (
    InvalidGridError,
    MissingAttributeError,
    UnsupportedDoseUnitsError,
)
from qa_checks.geometry import DoseGrid, check_axis
from qa_checks.rtdose_meaning import DEFAULT_ALLOWED_DOSE_TYPES, _positive_int, dose_meaning


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
