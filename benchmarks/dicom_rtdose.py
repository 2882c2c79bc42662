"""Write RT Dose Storage instances: a 3D dose grid as 16-bit values with (3004,000E) DoseGridScaling."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from benchmarks.dicom_base import (
    AXIAL_ORIENTATION,
    DEFAULT_DATE,
    DEFAULT_TIME,
    CtSeriesInfo,
    DicomWriteError,
    ds_value,
    make_uid,
    new_rt_dataset,
    uniform_step,
)
from benchmarks.dicom_rtplan import RT_PLAN_STORAGE

logger = logging.getLogger(__name__)


RT_DOSE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.2"
"""(0008,0016) SOPClassUID of RT Dose Storage."""

DOSE_STORED_MAX: Final = 65535
"""Largest stored RTDOSE value (16-bit unsigned): (3004,000E) DoseGridScaling = maximum dose / 65535, so the
quantisation step is 1/65535 of the maximum (about 1 mGy for a 70 Gy maximum), far below any QA tolerance."""


def write_rtdose(
    values_gy: NDArray[np.floating],
    z_mm: NDArray[np.float64],
    y_mm: NDArray[np.float64],
    x_mm: NDArray[np.float64],
    ct: CtSeriesInfo,
    rtplan_path: Path | str,
    out_path: Path | str,
    *,
    label: str = "REFERENCE",
    uid_seed: str | None = None,
    sop_instance_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 4,
    manufacturer: str = "rtqa",
    content_date: str = DEFAULT_DATE,
    content_time: str = DEFAULT_TIME,
) -> Path:
    """Write a (z, y, x) dose grid in Gy as an RT Dose (RT Dose Storage) of the plan in ``rtplan_path``.

    (3004,0002) DoseUnits ``GY``, (3004,0004) DoseType ``PHYSICAL``, (3004,000A) DoseSummationType ``PLAN``,
    (3004,000C) GridFrameOffsetVector relative to the first frame (first value 0), (0028,0009)
    FrameIncrementPointer to it, 16-bit unsigned pixel data with (3004,000E) DoseGridScaling = max dose / 65535
    (see :data:`DOSE_STORED_MAX`; 16 bits because the packaged ``dciodvfy`` cannot parse 32-bit dose pixels),
    and (300C,0002) ReferencedRTPlanSequence naming the plan. Axial HFS orientation; the frame of reference and
    study are the CT's.
    """
    values = np.asarray(values_gy, dtype=np.float64)
    z = np.asarray(z_mm, dtype=np.float64)
    y = np.asarray(y_mm, dtype=np.float64)
    x = np.asarray(x_mm, dtype=np.float64)
    if values.ndim != 3 or values.shape != (z.size, y.size, x.size):
        raise DicomWriteError(f"values_gy has shape {values.shape}; expected (z, y, x) = {(z.size, y.size, x.size)}")
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise DicomWriteError("values_gy must be finite and >= 0 Gy")
    sy = uniform_step(y, "y")
    sx = uniform_step(x, "x")
    uniform_step(z, "z")
    plan: Dataset = pydicom.dcmread(rtplan_path, stop_before_pixels=True)
    d_max = float(values.max())
    scaling = d_max / DOSE_STORED_MAX if d_max > 0 else 1.0
    stored = np.clip(np.rint(values / scaling), 0, DOSE_STORED_MAX).astype("<u2")
    sop_uid = sop_instance_uid or make_uid(uid_seed, "rtdose", label)
    dose_series_uid = series_uid or make_uid(uid_seed, "rtdose-series", label)

    ds = new_rt_dataset(
        ct,
        sop_class_uid=RT_DOSE_STORAGE,
        sop_instance_uid=sop_uid,
        modality="RTDOSE",
        series_uid=dose_series_uid,
        series_number=series_number,
        date=content_date,
        time=content_time,
        series_description=f"Dose {label}",
        manufacturer=manufacturer,
        institution_name="",
    )
    # General Image
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate = content_date
    ds.ContentTime = content_time
    # Image Plane
    ds.PixelSpacing = [ds_value(sy), ds_value(sx)]
    ds.ImageOrientationPatient = list(AXIAL_ORIENTATION)
    ds.ImagePositionPatient = [ds_value(x[0]), ds_value(y[0]), ds_value(z[0])]
    ds.SliceThickness = ds_value(float(z[1] - z[0]) if z.size > 1 else 1.0)
    # Image Pixel and Multi-frame
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = str(z.size)
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.Rows = y.size
    ds.Columns = x.size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    # RT Dose
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.GridFrameOffsetVector = [ds_value(v - z[0]) for v in z]
    ds.DoseGridScaling = f"{scaling:.10g}"
    ds.TissueHeterogeneityCorrection = ["IMAGE", "ROI_OVERRIDE"]
    plan_ref = Dataset()
    plan_ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
    plan_ref.ReferencedSOPInstanceUID = str(plan.SOPInstanceUID)
    ds.ReferencedRTPlanSequence = DicomSequence([plan_ref])
    ds.PixelData = stored.tobytes()

    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    logger.info("wrote RT Dose %s (%s voxels, max %.3f Gy, scaling %.4g)", path, values.shape, d_max, scaling)
    return path
