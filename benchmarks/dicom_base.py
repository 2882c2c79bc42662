"""Shared pieces of the DICOM writers: SOP class UIDs, fixed dates, deterministic UIDs, DS formatting and the
Patient, General Study, Series, Frame of Reference, Equipment and SOP Common attributes of every file written.

Determinism: with a ``uid_seed`` every UID is derived from the seed (``pydicom.uid.generate_uid`` with
``entropy_srcs``) and dates/times are fixed arguments (never the clock), so the same inputs give byte-identical
files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_ROOT_UID, UID, ExplicitVRLittleEndian, generate_uid

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
"""(0008,0016) SOPClassUID of CT Image Storage."""

RT_STRUCTURE_SET_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.3"
"""(0008,0016) SOPClassUID of RT Structure Set Storage."""

STUDY_REFERENCE_SOP_CLASS: Final = "1.2.840.10008.3.1.2.3.1"
"""SOP class UID used in (3006,0012) RTReferencedStudySequence > (0008,1150) ReferencedSOPClassUID, as
PS3.3 C.8.8.5 prescribes (the retired Detached Study Management SOP Class)."""

UID_PREFIX: Final = PYDICOM_ROOT_UID
"""Root of the UIDs generated here (pydicom's root, followed by a hash of the seed)."""

IMPLEMENTATION_VERSION_NAME: Final = "RTQA_0_1"
"""(0002,0013) ImplementationVersionName written in the file meta information."""

DEFAULT_DATE: Final = "20260101"
"""Fixed DICOM date (DA) used when none is given, so that builds are reproducible."""

DEFAULT_TIME: Final = "120000"
"""Fixed DICOM time (TM) used when none is given."""

AXIAL_ORIENTATION: Final = ("1", "0", "0", "0", "1", "0")
"""(0020,0037) ImageOrientationPatient of every slice written: the direction along a row (increasing column
index) is +x and the direction along a column (increasing row index) is +y, in LPS."""

RESCALE_INTERCEPT_HU: Final = -1024
"""(0028,1052) RescaleIntercept: stored values are HU + 1024 as unsigned 16-bit integers."""


class DicomWriteError(ValueError):
    """Raised when inputs cannot be written as conformant DICOM; the message names the argument and value."""


class CtVolume(Protocol):
    """Anything with a CT grid: ``hu`` (z, y, x) in HU and voxel-centre coordinate vectors in LPS mm."""

    @property
    def hu(self) -> NDArray[np.floating]: ...
    @property
    def z_mm(self) -> NDArray[np.float64]: ...
    @property
    def y_mm(self) -> NDArray[np.float64]: ...
    @property
    def x_mm(self) -> NDArray[np.float64]: ...


def make_uid(seed: str | None, *parts: str) -> str:
    """Return a UID under :data:`UID_PREFIX`: derived from ``seed`` and ``parts`` when a seed is given (the
    same arguments always give the same UID), random otherwise."""
    if seed is None:
        return str(generate_uid(prefix=UID_PREFIX))
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=[seed, *parts]))


def ds_value(value: float) -> str:
    """Format a number as a DICOM DS string (at most 16 characters, 4 decimals, no trailing zeros)."""
    text = f"{float(value):.4f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        raise DicomWriteError(f"value {value!r} does not fit a 16-character DS")
    return text


def uniform_step(coords: NDArray[np.float64], axis: str) -> float:
    if coords.ndim != 1 or coords.size < 1:
        raise DicomWriteError(f"{axis}_mm must be a non-empty 1-D vector, got shape {coords.shape}")
    if coords.size == 1:
        return 1.0
    steps = np.diff(coords)
    step = float(steps[0])
    # Tolerance 1e-4 mm: far below any voxel size, above float64 round-off of coordinate vectors.
    if step <= 0 or not np.allclose(steps, step, rtol=0, atol=1e-4):
        raise DicomWriteError(f"{axis}_mm must be uniformly increasing; steps range {steps.min()}..{steps.max()}")
    return step


@dataclass(frozen=True)
class CtSeriesInfo:
    """What an RT Structure Set needs to know about the CT series it annotates.

    Slices are listed in increasing z. ``x0_mm``/``y0_mm`` are the coordinates of the first column/row centre
    ((0020,0032) ImagePositionPatient), ``row_spacing_mm`` is the spacing between rows (along y) and
    ``column_spacing_mm`` the spacing between columns (along x), as in (0028,0030) PixelSpacing.
    """

    patient_id: str
    patient_name: str
    study_uid: str
    study_id: str
    study_date: str
    study_time: str
    series_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: tuple[str, ...]
    paths: tuple[Path, ...]
    z_mm: tuple[float, ...]
    y0_mm: float
    x0_mm: float
    row_spacing_mm: float
    column_spacing_mm: float
    rows: int
    columns: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (z, y, x)."""
        return (len(self.z_mm), self.rows, self.columns)


def file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(UID_PREFIX + "1")
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def patient_and_study(
    ds: Dataset,
    *,
    patient_name: str,
    patient_id: str,
    study_uid: str,
    study_id: str,
    study_date: str,
    study_time: str,
) -> None:
    """Patient and General Study modules (type 2 attributes present, empty where unknown)."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study_id
    ds.AccessionNumber = ""


def new_rt_dataset(
    ct: CtSeriesInfo,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    modality: str,
    series_uid: str,
    series_number: int,
    date: str,
    time: str,
    series_description: str,
    manufacturer: str,
    institution_name: str,
) -> Dataset:
    """A dataset with the file meta, Patient, General Study, RT Series, Frame of Reference, General Equipment and
    SOP Common modules filled for an RT object drawn on ``ct``."""
    ds = Dataset()
    ds.file_meta = file_meta(sop_class_uid, sop_instance_uid)
    patient_and_study(
        ds,
        patient_name=ct.patient_name,
        patient_id=ct.patient_id,
        study_uid=ct.study_uid,
        study_id=ct.study_id,
        study_date=ct.study_date,
        study_time=ct.study_time,
    )
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate = date
    ds.SeriesTime = time
    ds.SeriesDescription = series_description
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = manufacturer
    ds.InstitutionName = institution_name
    return ds
