"""Write a CT Image Storage series from a HU volume, and read back what an RT Structure Set needs about it.

Geometry: arrays are (z, y, x); slices are axial with (0020,0037) ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``
(rows along +y, columns along +x, LPS mm, head first supine). Voxel-centre coordinates come from the volume's
``z_mm``, ``y_mm``, ``x_mm`` vectors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from benchmarks.dicom_base import (
    AXIAL_ORIENTATION,
    CT_IMAGE_STORAGE,
    DEFAULT_DATE,
    DEFAULT_TIME,
    RESCALE_INTERCEPT_HU,
    CtSeriesInfo,
    CtVolume,
    DicomWriteError,
    ds_value,
    file_meta,
    make_uid,
    patient_and_study,
    uniform_step,
)

logger = logging.getLogger(__name__)


def write_ct_series(
    volume: CtVolume,
    out_dir: Path | str,
    *,
    patient_id: str,
    patient_name: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    uid_seed: str | None = None,
    study_id: str = "1",
    study_date: str = DEFAULT_DATE,
    study_time: str = DEFAULT_TIME,
    series_number: int = 1,
    series_description: str = "CT",
    manufacturer: str = "rtqa synthetic phantom",
    institution_name: str = "",
    body_part_examined: str | None = None,
    file_prefix: str = "CT",
) -> CtSeriesInfo:
    """Write ``volume`` as a CT image series, one file per axial slice.

    Stored pixel values are ``round(HU) + 1024`` (unsigned 16 bit) with (0028,1052) RescaleIntercept -1024 and
    (0028,1053) RescaleSlope 1; HU outside [-1024, 64511] are clipped (logged).

    Args:
        volume: CT grid (see :class:`CtVolume`), e.g. a :class:`benchmarks.phantoms.Phantom`.
        out_dir: directory to write ``{file_prefix}.{index:04d}.dcm`` files into (created if missing).
        patient_id: (0010,0020) PatientID.
        patient_name: (0010,0010) PatientName.
        study_uid, series_uid, frame_of_reference_uid: (0020,000D) StudyInstanceUID, (0020,000E)
            SeriesInstanceUID, (0020,0052) FrameOfReferenceUID; generated (from ``uid_seed``) when ``None``.
        uid_seed: seed making all generated UIDs reproducible; random UIDs when ``None``.
        study_id, study_date, study_time: (0020,0010) StudyID, (0008,0020) StudyDate, (0008,0030) StudyTime.
        series_number, series_description: (0020,0011) SeriesNumber, (0008,103E) SeriesDescription.
        manufacturer, institution_name: (0008,0070) Manufacturer, (0008,0080) InstitutionName.
        body_part_examined: (0018,0015) BodyPartExamined, e.g. ``"CHEST"``; omitted when ``None``. Without it
            (0020,0060) Laterality's type 2C condition cannot be decided and IOD verifiers flag the series.
        file_prefix: file name prefix.

    Returns:
        The series description needed to reference it from an RT Structure Set.
    """
    hu = np.asarray(volume.hu)
    z_mm = np.asarray(volume.z_mm, dtype=np.float64)
    y_mm = np.asarray(volume.y_mm, dtype=np.float64)
    x_mm = np.asarray(volume.x_mm, dtype=np.float64)
    if hu.ndim != 3 or hu.shape != (z_mm.size, y_mm.size, x_mm.size):
        raise DicomWriteError(
            f"volume.hu has shape {hu.shape}; expected (z, y, x) = {(z_mm.size, y_mm.size, x_mm.size)}"
        )
    if not patient_id:
        raise DicomWriteError(f"patient_id must be non-empty, got {patient_id!r}")
    sz = uniform_step(z_mm, "z")
    sy = uniform_step(y_mm, "y")
    sx = uniform_step(x_mm, "x")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or make_uid(uid_seed, "study")
    series_uid = series_uid or make_uid(uid_seed, "ct-series")
    frame_uid = frame_of_reference_uid or make_uid(uid_seed, "frame-of-reference")
    nz, ny, nx = hu.shape

    finite = np.where(np.isfinite(hu), hu, float(RESCALE_INTERCEPT_HU))
    stored_f = np.rint(finite) - RESCALE_INTERCEPT_HU
    n_clipped = int(np.count_nonzero((stored_f < 0) | (stored_f > 65535)))
    if n_clipped:
        logger.warning("%d voxels outside the storable HU range were clipped", n_clipped)
    stored = np.clip(stored_f, 0, 65535).astype("<u2")

    sop_uids: list[str] = []
    paths: list[Path] = []
    for k in range(nz):
        sop_uid = make_uid(uid_seed, "ct-image", str(k)) if uid_seed is not None else make_uid(None)
        ds = Dataset()
        ds.file_meta = file_meta(CT_IMAGE_STORAGE, sop_uid)
        patient_and_study(
            ds,
            patient_name=patient_name,
            patient_id=patient_id,
            study_uid=study_uid,
            study_id=study_id,
            study_date=study_date,
            study_time=study_time,
        )
        # SOP Common
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.InstanceCreationDate = study_date
        ds.InstanceCreationTime = study_time
        # General Series
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDate = study_date
        ds.SeriesTime = study_time
        ds.SeriesDescription = series_description
        ds.PatientPosition = "HFS"
        ds.OperatorsName = ""
        if body_part_examined:
            ds.BodyPartExamined = body_part_examined
        # Frame of Reference
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        # General Equipment
        ds.Manufacturer = manufacturer
        ds.InstitutionName = institution_name
        # General Image / General Acquisition
        ds.InstanceNumber = k + 1
        ds.PatientOrientation = ""
        ds.ContentDate = study_date
        ds.ContentTime = study_time
        ds.AcquisitionNumber = 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        # Image Plane
        ds.PixelSpacing = [ds_value(sy), ds_value(sx)]
        ds.ImageOrientationPatient = list(AXIAL_ORIENTATION)
        ds.ImagePositionPatient = [ds_value(x_mm[0]), ds_value(y_mm[0]), ds_value(z_mm[k])]
        ds.SliceThickness = ds_value(sz)
        ds.SliceLocation = ds_value(z_mm[k])
        # Image Pixel
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = stored[k].tobytes()
        # CT Image
        ds.RescaleIntercept = str(RESCALE_INTERCEPT_HU)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.KVP = "120"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"

        path = out / f"{file_prefix}.{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sop_uids.append(sop_uid)
        paths.append(path)

    logger.info("wrote %d CT slices to %s", nz, out)
    return CtSeriesInfo(
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_id=study_id,
        study_date=study_date,
        study_time=study_time,
        series_uid=series_uid,
        frame_of_reference_uid=frame_uid,
        sop_instance_uids=tuple(sop_uids),
        paths=tuple(paths),
        z_mm=tuple(float(z) for z in z_mm),
        y0_mm=float(y_mm[0]),
        x0_mm=float(x_mm[0]),
        row_spacing_mm=sy,
        column_spacing_mm=sx,
        rows=ny,
        columns=nx,
    )


def read_ct_series_info(ct_dir: Path | str) -> CtSeriesInfo:
    """Read the :class:`CtSeriesInfo` of the CT series in ``ct_dir`` (all ``*.dcm`` files, one series).

    Raises:
        DicomWriteError: naming the file and attribute when the directory holds no CT, several series, or
            slices that are not axial / not on one grid.
    """
    directory = Path(ct_dir)
    slices: list[tuple[float, Path, Dataset]] = []
    for path in sorted(directory.glob("*.dcm")):
        ds: Dataset = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.get("Modality") != "CT":
            continue
        orientation = [float(v) for v in ds.ImageOrientationPatient]
        # 1e-6: direction cosines are written as exact 0/1; anything else is an oblique slice.
        if not np.allclose(orientation, [1, 0, 0, 0, 1, 0], atol=1e-6):
            raise DicomWriteError(f"{path}: (0020,0037) ImageOrientationPatient {orientation} is not axial HFS")
        slices.append((float(ds.ImagePositionPatient[2]), path, ds))
    if not slices:
        raise DicomWriteError(f"{directory}: no CT image files (*.dcm with Modality CT) found")
    slices.sort(key=lambda item: item[0])
    first = slices[0][2]
    for _, path, ds in slices:
        for keyword in ("SeriesInstanceUID", "FrameOfReferenceUID", "Rows", "Columns"):
            if ds.get(keyword) != first.get(keyword):
                raise DicomWriteError(
                    f"{path}: {keyword} {ds.get(keyword)!r} differs from {first.get(keyword)!r} in {slices[0][1]}"
                )
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    return CtSeriesInfo(
        patient_id=str(first.PatientID),
        patient_name=str(first.PatientName),
        study_uid=str(first.StudyInstanceUID),
        study_id=str(first.get("StudyID", "")),
        study_date=str(first.get("StudyDate", "")),
        study_time=str(first.get("StudyTime", "")),
        series_uid=str(first.SeriesInstanceUID),
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        sop_instance_uids=tuple(str(ds.SOPInstanceUID) for _, _, ds in slices),
        paths=tuple(path for _, path, _ in slices),
        z_mm=tuple(z for z, _, _ in slices),
        y0_mm=float(first.ImagePositionPatient[1]),
        x0_mm=float(first.ImagePositionPatient[0]),
        row_spacing_mm=row_spacing,
        column_spacing_mm=column_spacing,
        rows=int(first.Rows),
        columns=int(first.Columns),
    )
