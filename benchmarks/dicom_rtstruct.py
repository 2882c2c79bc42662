"""Write RT Structure Set Storage instances from masks (traced slice by slice) or from planar contours."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from skimage.measure import find_contours

from benchmarks.dicom_base import (
    CT_IMAGE_STORAGE,
    DEFAULT_DATE,
    DEFAULT_TIME,
    RT_STRUCTURE_SET_STORAGE,
    STUDY_REFERENCE_SOP_CLASS,
    CtSeriesInfo,
    DicomWriteError,
    ds_value,
    make_uid,
    new_rt_dataset,
)

logger = logging.getLogger(__name__)


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

    ds = new_rt_dataset(
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
            item.ContourData = [ds_value(v) for v in pts.reshape(-1)]
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
