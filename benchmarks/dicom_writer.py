"""Write standard DICOM CT image series and RT Structure Sets from arrays and masks.

The files are meant to be indistinguishable, for a reader, from what a planning system exports: CT Image Storage
and RT Structure Set Storage SOP instances with file meta information, explicit VR little endian, and the
type 1 and type 2 attributes of the Patient, General Study, (RT) Series, Frame of Reference, General Equipment,
image and SOP Common modules present.

Geometry: arrays are (z, y, x); slices are axial with (0020,0037) ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``
(rows along +y, columns along +x, LPS mm, head first supine). Voxel-centre coordinates come from the volume's
``z_mm``, ``y_mm``, ``x_mm`` vectors.

Determinism: with a ``uid_seed`` every UID is derived from the seed (``pydicom.uid.generate_uid`` with
``entropy_srcs``) and dates/times are fixed arguments (never the clock), so the same inputs give byte-identical
files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_ROOT_UID, UID, ExplicitVRLittleEndian, generate_uid
from skimage.measure import find_contours

__all__ = [
    "CT_IMAGE_STORAGE",
    "DEFAULT_DATE",
    "DEFAULT_TIME",
    "DOSE_STORED_MAX",
    "RT_DOSE_STORAGE",
    "RT_PLAN_STORAGE",
    "RT_STRUCTURE_SET_STORAGE",
    "UID_PREFIX",
    "ArcSpec",
    "CtSeriesInfo",
    "CtVolume",
    "DicomWriteError",
    "PlanTarget",
    "PlanarContour",
    "make_uid",
    "mask_to_contours",
    "read_ct_series_info",
    "write_ct_series",
    "write_rtdose",
    "write_rtplan",
    "write_rtstruct",
    "write_rtstruct_contours",
]

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


def _ds(value: float) -> str:
    """Format a number as a DICOM DS string (at most 16 characters, 4 decimals, no trailing zeros)."""
    text = f"{float(value):.4f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        raise DicomWriteError(f"value {value!r} does not fit a 16-character DS")
    return text


def _uniform_step(coords: NDArray[np.float64], axis: str) -> float:
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


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(UID_PREFIX + "1")
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _patient_and_study(
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


def _new_rt_dataset(
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
    ds.file_meta = _file_meta(sop_class_uid, sop_instance_uid)
    _patient_and_study(
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
    sz = _uniform_step(z_mm, "z")
    sy = _uniform_step(y_mm, "y")
    sx = _uniform_step(x_mm, "x")

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
        ds.file_meta = _file_meta(CT_IMAGE_STORAGE, sop_uid)
        _patient_and_study(
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
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.ImageOrientationPatient = list(AXIAL_ORIENTATION)
        ds.ImagePositionPatient = [_ds(x_mm[0]), _ds(y_mm[0]), _ds(z_mm[k])]
        ds.SliceThickness = _ds(sz)
        ds.SliceLocation = _ds(z_mm[k])
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


@dataclass(frozen=True, eq=False)
class PlanarContour:
    """One closed planar polygon on CT slice ``slice_index``: ``points_mm`` (N, 3) as (x, y, z) LPS mm, in
    the order of (3006,0050) ContourData."""

    slice_index: int
    points_mm: NDArray[np.float64]


def _drop_collinear(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Remove vertices of a closed polygon that lie on the straight line through their neighbours."""
    if len(points) < 4:
        return points
    prev = np.roll(points, 1, axis=0)
    nxt = np.roll(points, -1, axis=0)
    d1 = points - prev
    d2 = nxt - points
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    # Tolerance 1e-9 (index units): marching-squares vertices lie on a half-voxel lattice, so true
    # collinearity gives an exact zero; this only absorbs float round-off.
    keep = np.abs(cross) > 1e-9
    return points[keep] if keep.sum() >= 3 else points


def mask_to_contours(mask: NDArray[np.bool_], ct: CtSeriesInfo) -> list[PlanarContour]:
    """Trace a (z, y, x) mask into closed planar polygons, slice by slice.

    Each slice is padded by one empty voxel and traced with ``skimage.measure.find_contours`` at level 0.5, so
    every polygon edge runs half-way between a voxel inside and a voxel outside the mask: the polygons enclose
    exactly the centres of the mask's voxels (on that slice). Holes come out as separate polygons, to be read
    with the even-odd rule. Collinear vertices are dropped (the polygon is unchanged).

    Returns:
        The polygons, ordered by slice then by tracing order.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != ct.shape:
        raise DicomWriteError(f"mask has shape {mask.shape}, but the CT grid is (z, y, x) = {ct.shape}")
    contours: list[PlanarContour] = []
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        padded = np.pad(mask[k], 1).astype(np.float64)
        for rc in find_contours(padded, 0.5):  # type: ignore[no-untyped-call]
            rc = rc[:-1] if np.array_equal(rc[0], rc[-1]) else rc
            rc = _drop_collinear(rc - 1.0)  # back to unpadded (row, column) indices
            if len(rc) < 3:
                continue
            points = np.empty((len(rc), 3), dtype=np.float64)
            points[:, 0] = ct.x0_mm + rc[:, 1] * ct.column_spacing_mm
            points[:, 1] = ct.y0_mm + rc[:, 0] * ct.row_spacing_mm
            points[:, 2] = ct.z_mm[int(k)]
            contours.append(PlanarContour(int(k), points))
    return contours


def write_rtstruct(
    masks: Mapping[str, NDArray[np.bool_]],
    ct: CtSeriesInfo,
    out_path: Path | str,
    *,
    interpreted_types: Mapping[str, str] | None = None,
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    label: str = "RTSTRUCT",
    structure_set_name: str = "",
    uid_seed: str | None = None,
    sop_instance_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 2,
    series_description: str = "Structures",
    manufacturer: str = "rtqa",
    institution_name: str = "",
    roi_generation_algorithm: str = "MANUAL",
    structure_set_date: str = DEFAULT_DATE,
    structure_set_time: str = DEFAULT_TIME,
) -> Path:
    """Write an RT Structure Set whose ROIs are traced from ``masks`` (see :func:`mask_to_contours`).

    Args:
        masks: structure name (written as (3006,0026) ROIName, in mapping order) -> (z, y, x) mask on the CT grid.
        ct: the CT series the structures are drawn on (see :func:`write_ct_series` / :func:`read_ct_series_info`).
        out_path: file to write.
        interpreted_types: name -> (3006,00A4) RTROIInterpretedType; missing names get ``"ORGAN"``.
        colors: name -> (3006,002A) ROIDisplayColor; missing names get a fixed palette colour.
        Others: see :func:`write_rtstruct_contours`.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.
    """
    contours = {name: mask_to_contours(mask, ct) for name, mask in masks.items()}
    return write_rtstruct_contours(
        contours,
        ct,
        out_path,
        interpreted_types=interpreted_types,
        colors=colors,
        label=label,
        structure_set_name=structure_set_name,
        uid_seed=uid_seed,
        sop_instance_uid=sop_instance_uid,
        series_uid=series_uid,
        series_number=series_number,
        series_description=series_description,
        manufacturer=manufacturer,
        institution_name=institution_name,
        roi_generation_algorithm=roi_generation_algorithm,
        structure_set_date=structure_set_date,
        structure_set_time=structure_set_time,
    )


_PALETTE: Final = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255))


def write_rtstruct_contours(
    contours: Mapping[str, Sequence[PlanarContour]],
    ct: CtSeriesInfo,
    out_path: Path | str,
    *,
    interpreted_types: Mapping[str, str] | None = None,
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    label: str = "RTSTRUCT",
    structure_set_name: str = "",
    uid_seed: str | None = None,
    sop_instance_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 2,
    series_description: str = "Structures",
    manufacturer: str = "rtqa",
    institution_name: str = "",
    roi_generation_algorithm: str = "MANUAL",
    structure_set_date: str = DEFAULT_DATE,
    structure_set_time: str = DEFAULT_TIME,
) -> Path:
    """Write an RT Structure Set from planar polygons.

    Frame of Reference module: (0020,0052) FrameOfReferenceUID of the CT. Structure Set module: (3006,0002)
    StructureSetLabel, (3006,0010) ReferencedFrameOfReferenceSequence >
    (3006,0012) RTReferencedStudySequence > (3006,0014) RTReferencedSeriesSequence > (3006,0016)
    ContourImageSequence listing every CT slice; (3006,0020) StructureSetROISequence with (3006,0022) ROINumber
    (1, 2, ... in mapping order). ROI Contour module: (3006,0039) ROIContourSequence, each polygon a
    ``CLOSED_PLANAR`` item of (3006,0040) ContourSequence referencing its CT slice's SOP instance. RT ROI
    Observations module: (3006,0080) RTROIObservationsSequence. A structure with no polygons is written with
    no ContourSequence (and logged).

    Args:
        contours: ROI name -> polygons (see :class:`PlanarContour`).
        ct: the CT series the polygons are drawn on.
        out_path: file to write (parent directories are created).
        interpreted_types: name -> (3006,00A4) RTROIInterpretedType; default ``"ORGAN"``.
        colors: name -> (3006,002A) ROIDisplayColor (r, g, b).
        label, structure_set_name: (3006,0002) StructureSetLabel, (3006,0004) StructureSetName.
        uid_seed: seed for reproducible UIDs (random when ``None``).
        sop_instance_uid, series_uid: (0008,0018) SOPInstanceUID, (0020,000E) SeriesInstanceUID; generated
            from ``uid_seed`` and ``label`` when ``None``.
        series_number, series_description: (0020,0011) SeriesNumber, (0008,103E) SeriesDescription.
        manufacturer, institution_name: (0008,0070) Manufacturer, (0008,0080) InstitutionName.
        roi_generation_algorithm: (3006,0036) ROIGenerationAlgorithm: ``"MANUAL"``, ``"SEMIAUTOMATIC"`` or
            ``"AUTOMATIC"``.
        structure_set_date, structure_set_time: (3006,0008) StructureSetDate, (3006,0009) StructureSetTime.
    """
    if not label or len(label) > 16:
        raise DicomWriteError(f"label (3006,0002) StructureSetLabel must be 1..16 characters, got {label!r}")
    if roi_generation_algorithm not in ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"):
        raise DicomWriteError(
            f"roi_generation_algorithm: (3006,0036) ROIGenerationAlgorithm must be MANUAL, SEMIAUTOMATIC or AUTOMATIC, "
            f"got {roi_generation_algorithm!r}"
        )
    for name in contours:
        if not name or len(name) > 64:
            raise DicomWriteError(f"ROI name (3006,0026) ROIName must be 1..64 characters, got {name!r}")
    interpreted_types = interpreted_types or {}
    colors = colors or {}
    sop_uid = sop_instance_uid or make_uid(uid_seed, "rtstruct", label)
    rs_series_uid = series_uid or make_uid(uid_seed, "rtstruct-series", label)

    ds = _new_rt_dataset(
        ct,
        sop_class_uid=RT_STRUCTURE_SET_STORAGE,
        sop_instance_uid=sop_uid,
        modality="RTSTRUCT",
        series_uid=rs_series_uid,
        series_number=series_number,
        date=structure_set_date,
        time=structure_set_time,
        series_description=series_description,
        manufacturer=manufacturer,
        institution_name=institution_name,
    )
    # Structure Set
    ds.StructureSetLabel = label
    if structure_set_name:
        ds.StructureSetName = structure_set_name
    ds.InstanceNumber = 1
    ds.StructureSetDate = structure_set_date
    ds.StructureSetTime = structure_set_time

    def image_ref(k: int) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        item.ReferencedSOPInstanceUID = ct.sop_instance_uids[k]
        return item

    series_item = Dataset()
    series_item.SeriesInstanceUID = ct.series_uid
    series_item.ContourImageSequence = DicomSequence([image_ref(k) for k in range(len(ct.sop_instance_uids))])
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = STUDY_REFERENCE_SOP_CLASS
    study_item.ReferencedSOPInstanceUID = ct.study_uid
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = ct.frame_of_reference_uid
    frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])

    roi_items: list[Dataset] = []
    contour_items: list[Dataset] = []
    observation_items: list[Dataset] = []
    for number, (name, polygons) in enumerate(contours.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = ct.frame_of_reference_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = roi_generation_algorithm
        roi_items.append(roi)

        roi_contour = Dataset()
        roi_contour.ROIDisplayColor = list(colors.get(name, _PALETTE[(number - 1) % len(_PALETTE)]))
        items: list[Dataset] = []
        for contour_number, polygon in enumerate(polygons, start=1):
            k = polygon.slice_index
            if not 0 <= k < len(ct.sop_instance_uids):
                raise DicomWriteError(f"ROI {name!r}: slice_index {k} outside the CT series (0..{len(ct.z_mm) - 1})")
            pts = np.asarray(polygon.points_mm, dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] < 3:
                raise DicomWriteError(f"ROI {name!r}: polygon points must be (N >= 3, 3), got {pts.shape}")
            item = Dataset()
            item.ContourImageSequence = DicomSequence([image_ref(k)])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = pts.shape[0]
            item.ContourNumber = contour_number
            item.ContourData = [_ds(v) for v in pts.reshape(-1)]
            items.append(item)
        if items:
            roi_contour.ContourSequence = DicomSequence(items)
        else:
            logger.warning("ROI %r has no contours; written without a ContourSequence", name)
        roi_contour.ReferencedROINumber = number
        contour_items.append(roi_contour)

        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = interpreted_types.get(name, "ORGAN")
        obs.ROIInterpreter = ""
        observation_items.append(obs)

    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observation_items)

    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    logger.info("wrote RT Structure Set %s with %d ROIs", path, len(roi_items))
    return path


# RT Plan and RT Dose ----------------------------------------------------------------------------------------------

RT_PLAN_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.5"
"""(0008,0016) SOPClassUID of RT Plan Storage."""

RT_DOSE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.2"
"""(0008,0016) SOPClassUID of RT Dose Storage."""

MLC_LEAF_BOUNDARIES_MM: Final = tuple(
    [-200.0 + 10.0 * i for i in range(10)]
    + [-100.0 + 5.0 * i for i in range(40)]
    + [100.0 + 10.0 * i for i in range(11)]
)
"""(300A,00BE) LeafPositionBoundaries of a 120-leaf (60-pair) MLC: 10 x 10 mm, 40 x 5 mm, 10 x 10 mm pairs."""

DOSE_STORED_MAX: Final = 65535
"""Largest stored RTDOSE value (16-bit unsigned): (3004,000E) DoseGridScaling = maximum dose / 65535, so the
quantisation step is 1/65535 of the maximum (about 1 mGy for a 70 Gy maximum), far below any QA tolerance."""


@dataclass(frozen=True)
class ArcSpec:
    """One VMAT arc (or a static beam when start == stop and direction ``"NONE"``).

    Attributes:
        name: (300A,00C2) BeamName.
        gantry_start_deg, gantry_stop_deg: (300A,011E) GantryAngle of the first and last control points.
        direction: (300A,011F) GantryRotationDirection ``"CW"``, ``"CC"`` or ``"NONE"`` (static beam).
        couch_deg: (300A,0122) PatientSupportAngle.
        collimator_deg: (300A,0120) BeamLimitingDeviceAngle.
        meterset_weight: share of the plan's monitor units delivered by this beam (weights are normalised).
    """

    name: str
    gantry_start_deg: float
    gantry_stop_deg: float
    direction: str = "CW"
    couch_deg: float = 0.0
    collimator_deg: float = 0.0
    meterset_weight: float = 1.0


@dataclass(frozen=True)
class PlanTarget:
    """A dose reference of the plan: ``roi_number`` is the (3006,0022) ROINumber of the target in the referenced
    structure set, ``name`` its ROI name, ``dose_gy`` its (300A,0026) TargetPrescriptionDose (total, Gy)."""

    roi_number: int
    name: str
    dose_gy: float


def _arc_angles(arc: ArcSpec, step_deg: float) -> list[float]:
    if arc.direction == "NONE":
        return [arc.gantry_start_deg % 360.0, arc.gantry_start_deg % 360.0]
    sign = 1.0 if arc.direction == "CW" else -1.0
    span = (sign * (arc.gantry_stop_deg - arc.gantry_start_deg)) % 360.0 or 360.0
    n = max(2, math.ceil(span / step_deg) + 1)
    return [round((arc.gantry_start_deg + sign * span * i / (n - 1)) % 360.0, 1) for i in range(n)]


def write_rtplan(
    ct: CtSeriesInfo,
    rtstruct_path: Path | str,
    out_path: Path | str,
    *,
    targets: Sequence[PlanTarget],
    fractions: int,
    arcs: Sequence[ArcSpec],
    isocentre_xyz_mm: tuple[float, float, float],
    aperture_radius_mm: float,
    monitor_units_per_gy: float = 250.0,
    label: str = "REFERENCE",
    plan_name: str = "",
    machine_name: str = "TrueBeam1",
    energy_mv: float = 6.0,
    fluence_mode_id: str = "FFF",
    dose_rate_mu_per_min: float = 1400.0,
    control_point_step_deg: float = 4.0,
    meterset_scale: float = 1.0,
    uid_seed: str | None = None,
    sop_instance_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 3,
    manufacturer: str = "rtqa",
    plan_date: str = DEFAULT_DATE,
    plan_time: str = DEFAULT_TIME,
    approval_status: str = "APPROVED",
) -> Path:
    """Write an RT Plan (RT Plan Storage) for photon VMAT arcs treating ``targets``.

    Modules: Patient, General Study, RT Series, Frame of Reference, General Equipment, RT General Plan
    ((300A,0002) RTPlanLabel, (300A,000C) RTPlanGeometry ``PATIENT`` with (300C,0060)
    ReferencedStructureSetSequence naming the RTSTRUCT), RT Prescription ((300A,0010) DoseReferenceSequence: one
    VOLUME/TARGET item per target with (300A,0026) TargetPrescriptionDose), RT Patient Setup ((300A,0180)
    PatientSetupSequence, HFS), RT Fraction Scheme ((300A,0070) FractionGroupSequence with (300A,0078)
    NumberOfFractionsPlanned and (300C,0004) ReferencedBeamSequence > (300A,0086) BeamMeterset in MU per
    fraction), RT Beams ((300A,00B0) BeamSequence: jaws and a 120-leaf MLC, 6 MV FFF by default, one control
    point every ``control_point_step_deg`` along each arc, the MLC opened to a circle of ``aperture_radius_mm``
    at the isocentre, i.e. a dynamic conformal arc around a round target), Approval ((300E,0002) ApprovalStatus)
    and SOP Common.

    Monitor units: total MU per fraction = ``monitor_units_per_gy`` × highest prescription per fraction ×
    ``meterset_scale``, split between the arcs by ``meterset_weight``.
    """
    if not targets:
        raise DicomWriteError("targets: at least one (300A,0010) DoseReferenceSequence item is needed")
    if fractions < 1:
        raise DicomWriteError(f"fractions: (300A,0078) NumberOfFractionsPlanned must be >= 1, got {fractions!r}")
    if not arcs:
        raise DicomWriteError("arcs: at least one beam is needed in (300A,00B0) BeamSequence")
    if not label or len(label) > 16:
        raise DicomWriteError(f"label (300A,0002) RTPlanLabel must be 1..16 characters, got {label!r}")
    for arc in arcs:
        if arc.direction not in ("CW", "CC", "NONE"):
            raise DicomWriteError(f"arc {arc.name!r}: (300A,011F) GantryRotationDirection {arc.direction!r}")
    rtstruct: Dataset = pydicom.dcmread(rtstruct_path, stop_before_pixels=True)
    roi_numbers = {int(item.ROINumber) for item in rtstruct.get("StructureSetROISequence", [])}
    for target in targets:
        if target.roi_number not in roi_numbers:
            raise DicomWriteError(
                f"target {target.name!r}: (3006,0084) ReferencedROINumber {target.roi_number} is not in {rtstruct_path}"
            )
    sop_uid = sop_instance_uid or make_uid(uid_seed, "rtplan", label)
    plan_series_uid = series_uid or make_uid(uid_seed, "rtplan-series", label)

    ds = _new_rt_dataset(
        ct,
        sop_class_uid=RT_PLAN_STORAGE,
        sop_instance_uid=sop_uid,
        modality="RTPLAN",
        series_uid=plan_series_uid,
        series_number=series_number,
        date=plan_date,
        time=plan_time,
        series_description=f"Plan {label}",
        manufacturer=manufacturer,
        institution_name="",
    )
    ds.ManufacturerModelName = "rtqa analytic dose model"
    ds.SoftwareVersions = IMPLEMENTATION_VERSION_NAME
    # RT General Plan
    ds.RTPlanLabel = label
    if plan_name:
        ds.RTPlanName = plan_name[:64]
    ds.RTPlanDate = plan_date
    ds.RTPlanTime = plan_time
    ds.PlanIntent = "CURATIVE"
    ds.RTPlanGeometry = "PATIENT"
    ds.InstanceNumber = 1
    ref_ss = Dataset()
    ref_ss.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
    ref_ss.ReferencedSOPInstanceUID = str(rtstruct.SOPInstanceUID)
    ds.ReferencedStructureSetSequence = DicomSequence([ref_ss])
    # RT Prescription
    dose_refs = []
    for number, target in enumerate(targets, start=1):
        item = Dataset()
        item.DoseReferenceNumber = number
        item.DoseReferenceUID = make_uid(uid_seed, "dose-reference", label, str(number))
        item.DoseReferenceStructureType = "VOLUME"
        item.DoseReferenceDescription = target.name[:64]
        item.ReferencedROINumber = target.roi_number
        item.DoseReferenceType = "TARGET"
        item.DeliveryMaximumDose = _ds(1.3 * target.dose_gy)
        item.TargetPrescriptionDose = _ds(target.dose_gy)
        dose_refs.append(item)
    ds.DoseReferenceSequence = DicomSequence(dose_refs)
    # RT Patient Setup
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = "HFS"
    setup.SetupTechnique = "ISOCENTRIC"
    ds.PatientSetupSequence = DicomSequence([setup])
    # RT Fraction Scheme
    dose_per_fraction = max(t.dose_gy for t in targets) / fractions
    total_mu = monitor_units_per_gy * dose_per_fraction * meterset_scale
    weights = np.array([max(a.meterset_weight, 0.0) for a in arcs], dtype=np.float64)
    if weights.sum() <= 0:
        raise DicomWriteError("arcs: meterset_weight must be positive for at least one beam")
    weights /= weights.sum()
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = fractions
    group.NumberOfBeams = len(arcs)
    group.NumberOfBrachyApplicationSetups = 0
    refs = []
    for number, weight in enumerate(weights, start=1):
        ref = Dataset()
        ref.ReferencedBeamNumber = number
        ref.BeamMeterset = _ds(total_mu * weight)
        ref.BeamDose = _ds(dose_per_fraction * weight)
        refs.append(ref)
    group.ReferencedBeamSequence = DicomSequence(refs)
    ds.FractionGroupSequence = DicomSequence([group])
    # RT Beams
    iso = [_ds(v) for v in isocentre_xyz_mm]
    boundaries = np.asarray(MLC_LEAF_BOUNDARIES_MM)
    centres = 0.5 * (boundaries[:-1] + boundaries[1:])
    r = float(aperture_radius_mm)
    half = np.sqrt(np.clip(r**2 - centres**2, 0.0, None))
    open_pairs = half > 0
    bank_a = np.where(open_pairs, -half, -r).round(1)
    bank_b = np.where(open_pairs, half, -r).round(1)
    leaves = [_ds(v) for v in np.concatenate([bank_a, bank_b])]
    jaw = [_ds(-r - 2.0), _ds(r + 2.0)]
    beams = []
    for number, arc in enumerate(arcs, start=1):
        beam = Dataset()
        beam.BeamNumber = number
        beam.BeamName = arc.name[:64]
        beam.BeamType = "STATIC" if arc.direction == "NONE" else "DYNAMIC"
        beam.RadiationType = "PHOTON"
        beam.TreatmentMachineName = machine_name
        beam.PrimaryDosimeterUnit = "MU"
        beam.SourceAxisDistance = "1000"
        fluence = Dataset()
        fluence.FluenceMode = "NON_STANDARD" if fluence_mode_id else "STANDARD"
        if fluence_mode_id:
            fluence.FluenceModeID = fluence_mode_id
        beam.PrimaryFluenceModeSequence = DicomSequence([fluence])
        devices = []
        for kind, pairs in (("ASYMX", 1), ("ASYMY", 1), ("MLCX", len(centres))):
            device = Dataset()
            device.RTBeamLimitingDeviceType = kind
            device.NumberOfLeafJawPairs = pairs
            if kind == "MLCX":
                device.LeafPositionBoundaries = [_ds(v) for v in boundaries]
            devices.append(device)
        beam.BeamLimitingDeviceSequence = DicomSequence(devices)
        beam.ReferencedPatientSetupNumber = 1
        beam.TreatmentDeliveryType = "TREATMENT"
        beam.NumberOfWedges = 0
        beam.NumberOfCompensators = 0
        beam.NumberOfBoli = 0
        beam.NumberOfBlocks = 0
        beam.FinalCumulativeMetersetWeight = "1"
        angles = _arc_angles(arc, control_point_step_deg)
        points = []
        for index, angle in enumerate(angles):
            cp = Dataset()
            cp.ControlPointIndex = index
            cp.CumulativeMetersetWeight = _ds(index / (len(angles) - 1))
            positions = []
            for kind, values in (("ASYMX", jaw), ("ASYMY", jaw), ("MLCX", leaves)):
                if index > 0 and kind != "MLCX":
                    continue
                position = Dataset()
                position.RTBeamLimitingDeviceType = kind
                position.LeafJawPositions = values
                positions.append(position)
            cp.BeamLimitingDevicePositionSequence = DicomSequence(positions)
            cp.GantryAngle = _ds(angle)
            cp.GantryRotationDirection = arc.direction if index < len(angles) - 1 else "NONE"
            if index == 0:
                cp.NominalBeamEnergy = _ds(energy_mv)
                cp.DoseRateSet = _ds(dose_rate_mu_per_min)
                cp.BeamLimitingDeviceAngle = _ds(arc.collimator_deg)
                cp.BeamLimitingDeviceRotationDirection = "NONE"
                cp.PatientSupportAngle = _ds(arc.couch_deg)
                cp.PatientSupportRotationDirection = "NONE"
                cp.TableTopEccentricAngle = "0"
                cp.TableTopEccentricRotationDirection = "NONE"
                cp.TableTopVerticalPosition = ""
                cp.TableTopLongitudinalPosition = ""
                cp.TableTopLateralPosition = ""
                cp.IsocenterPosition = iso
            points.append(cp)
        beam.NumberOfControlPoints = len(points)
        beam.ControlPointSequence = DicomSequence(points)
        beams.append(beam)
    ds.BeamSequence = DicomSequence(beams)
    # Approval
    ds.ApprovalStatus = approval_status
    if approval_status != "UNAPPROVED":
        ds.ReviewDate = plan_date
        ds.ReviewTime = plan_time
        ds.ReviewerName = "Reference^Planner"

    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    logger.info("wrote RT Plan %s (%d beams, %d fractions)", path, len(beams), fractions)
    return path


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
    sy = _uniform_step(y, "y")
    sx = _uniform_step(x, "x")
    _uniform_step(z, "z")
    plan: Dataset = pydicom.dcmread(rtplan_path, stop_before_pixels=True)
    d_max = float(values.max())
    scaling = d_max / DOSE_STORED_MAX if d_max > 0 else 1.0
    stored = np.clip(np.rint(values / scaling), 0, DOSE_STORED_MAX).astype("<u2")
    sop_uid = sop_instance_uid or make_uid(uid_seed, "rtdose", label)
    dose_series_uid = series_uid or make_uid(uid_seed, "rtdose-series", label)

    ds = _new_rt_dataset(
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
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.ImageOrientationPatient = list(AXIAL_ORIENTATION)
    ds.ImagePositionPatient = [_ds(x[0]), _ds(y[0]), _ds(z[0])]
    ds.SliceThickness = _ds(float(z[1] - z[0]) if z.size > 1 else 1.0)
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
    ds.GridFrameOffsetVector = [_ds(v - z[0]) for v in z]
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
