"""Read a CT image series (see :mod:`qa_checks.dicom_io` for the geometry rules)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from qa_checks.dicom_reading import (
    ORIENTATION_TOLERANCE,
    SLICE_SPACING_TOLERANCE_MM,
    PathLike,
    _axis_signs,
    _check_modality,
    _check_position_matches_orientation,
    _collect_files,
    _floats,
    _opt_float,
    _opt_int,
    _opt_str,
    _pydicom_warnings_logged,
    _read_dataset,
    _require,
    _tag,
)
from qa_checks.errors import (
    AmbiguousInputError,
    FrameOfReferenceMismatchError,
    InvalidGridError,
    MissingAttributeError,
    NotDicomError,
    UnsupportedGeometryError,
)
from qa_checks.geometry import ImageVolume

logger = logging.getLogger("qa_checks.dicom_io")


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
