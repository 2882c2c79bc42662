"""Test helpers: write small, valid CT series, RTSTRUCT, RTDOSE and RTPLAN files with pydicom.

The helpers take *patient-coordinate* axes (increasing voxel-centre vectors in LPS mm, as the readers return
them) and a patient position, and store the pixels the way a scanner would for that position: with
(0020,0037) ImageOrientationPatient from ``IMAGE_ORIENTATION_BY_POSITION``, so for HFP/FFS/FFP the stored rows
and/or columns run towards decreasing x / y. Reading back must therefore undo exactly that.

Shapes are given as polygons per plane: ``{name: [(N, 3) array of (x, y, z) mm, ...]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from qa_checks.geometry import IMAGE_ORIENTATION_BY_POSITION

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"

HuFunction = Callable[
    [npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]], npt.NDArray[np.float64]
]


def _base_dataset(sop_class_uid: str, modality: str, *, study_uid: str, for_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Phantom^Test"
    ds.PatientID = "QA-TEST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    if for_uid is not None:
        ds.FrameOfReferenceUID = for_uid
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class WrittenCT:
    """What :meth:`DicomFactory.ct_series` wrote."""

    directory: Path
    paths: list[Path]
    series_uid: str
    sop_uids: list[str]  # in the order of z_mm
    z_mm: npt.NDArray[np.float64]
    frame_of_reference_uid: str
    study_uid: str


@dataclass
class DicomFactory:
    """Writes DICOM objects under ``root``; one study and frame of reference unless overridden."""

    root: Path
    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)

    def ct_series(
        self,
        z_mm: Sequence[float] | npt.NDArray[np.float64],
        y_mm: Sequence[float] | npt.NDArray[np.float64],
        x_mm: Sequence[float] | npt.NDArray[np.float64],
        *,
        position: str = "HFS",
        hu: HuFunction | None = None,
        directory: str = "ct",
        orientation: Sequence[float] | None = None,
        slice_z_mm: Sequence[float] | None = None,
    ) -> WrittenCT:
        """Write one slice per z. ``hu(x, y, z)`` gives HU at patient coordinates (default: -1000 + 1000·(|x|<∞)).

        ``orientation`` overrides (0020,0037); ``slice_z_mm`` overrides each slice's (0020,0032) z (to build
        broken series).
        """
        z = np.asarray(z_mm, dtype=np.float64)
        y = np.asarray(y_mm, dtype=np.float64)
        x = np.asarray(x_mm, dtype=np.float64)
        iop = list(orientation) if orientation is not None else list(IMAGE_ORIENTATION_BY_POSITION[position])
        row_sign, col_sign = np.sign(iop[0]) or 1.0, np.sign(iop[4]) or 1.0
        stored_x = x if row_sign > 0 else x[::-1]  # x of each stored column
        stored_y = y if col_sign > 0 else y[::-1]  # y of each stored row
        dx = float(abs(x[1] - x[0])) if x.size > 1 else 1.0
        dy = float(abs(y[1] - y[0])) if y.size > 1 else 1.0
        series_uid = generate_uid()
        out = self.root / directory
        paths, sops = [], []
        for k, zk in enumerate(z):
            ds = _base_dataset(CT_IMAGE_STORAGE, "CT", study_uid=self.study_uid, for_uid=self.frame_of_reference_uid)
            ds.SeriesInstanceUID = series_uid
            ds.PatientPosition = position
            ds.ImageOrientationPatient = [float(v) for v in iop]
            z_written = float(slice_z_mm[k]) if slice_z_mm is not None else float(zk)
            ds.ImagePositionPatient = [float(stored_x[0]), float(stored_y[0]), z_written]
            ds.PixelSpacing = [dy, dx]
            ds.SliceThickness = float(abs(z[1] - z[0])) if z.size > 1 else 1.0
            ds.Rows, ds.Columns = int(y.size), int(x.size)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.InstanceNumber = k + 1
            yy, xx = np.meshgrid(stored_y, stored_x, indexing="ij")
            values = hu(xx, yy, np.full_like(xx, zk)) if hu is not None else np.zeros_like(xx)
            ds.PixelData = np.round(values + 1024).astype(np.uint16).tobytes()
            paths.append(_save(ds, out / f"CT_{k:04d}.dcm"))
            sops.append(str(ds.SOPInstanceUID))
        return WrittenCT(out, paths, series_uid, sops, z, self.frame_of_reference_uid, self.study_uid)

    def rtstruct(
        self,
        ct: WrittenCT | None,
        structures: Mapping[str, Sequence[npt.NDArray[np.float64]]],
        *,
        path: str = "rtstruct.dcm",
        frame_of_reference_uid: str | None = None,
        referenced_series_uid: str | None = None,
        extra_image_uids: Sequence[str] = (),
        interpreted_types: Mapping[str, str] | None = None,
    ) -> Path:
        """Write an RTSTRUCT of closed planar polygons referencing ``ct`` (contours on CT planes reference
        the slice; ``extra_image_uids`` are added to (3006,0016) ContourImageSequence)."""
        for_uid = frame_of_reference_uid or self.frame_of_reference_uid
        ds = _base_dataset(RT_STRUCTURE_SET_STORAGE, "RTSTRUCT", study_uid=self.study_uid, for_uid=None)
        ds.StructureSetLabel = "TEST"
        ref_for = Dataset()
        ref_for.FrameOfReferenceUID = for_uid
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        study.ReferencedSOPInstanceUID = self.study_uid
        series = Dataset()
        series.SeriesInstanceUID = referenced_series_uid or (ct.series_uid if ct else generate_uid())
        images = []
        for uid in [*(ct.sop_uids if ct else []), *extra_image_uids]:
            item = Dataset()
            item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
            item.ReferencedSOPInstanceUID = uid
            images.append(item)
        series.ContourImageSequence = DicomSequence(images)
        study.RTReferencedSeriesSequence = DicomSequence([series])
        ref_for.RTReferencedStudySequence = DicomSequence([study])
        ds.ReferencedFrameOfReferenceSequence = DicomSequence([ref_for])

        rois, roi_contours, observations = [], [], []
        for number, (name, polygons) in enumerate(structures.items(), start=1):
            roi = Dataset()
            roi.ROINumber = number
            roi.ReferencedFrameOfReferenceUID = for_uid
            roi.ROIName = name
            roi.ROIGenerationAlgorithm = "MANUAL"
            rois.append(roi)
            roi_contour = Dataset()
            roi_contour.ReferencedROINumber = number
            roi_contour.ROIDisplayColor = [255, 0, number % 256]
            items = []
            for polygon in polygons:
                pts = np.asarray(polygon, dtype=np.float64)
                item = Dataset()
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(pts)
                item.ContourData = [f"{v:.6f}" for v in pts.ravel()]
                if ct is not None:
                    hit = np.flatnonzero(np.abs(ct.z_mm - pts[0, 2]) < 1e-3)
                    if hit.size:
                        ref = Dataset()
                        ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
                        ref.ReferencedSOPInstanceUID = ct.sop_uids[int(hit[0])]
                        item.ContourImageSequence = DicomSequence([ref])
                items.append(item)
            roi_contour.ContourSequence = DicomSequence(items)
            roi_contours.append(roi_contour)
            obs = Dataset()
            obs.ObservationNumber = number
            obs.ReferencedROINumber = number
            obs.RTROIInterpretedType = (interpreted_types or {}).get(name, "ORGAN")
            obs.ROIInterpreter = ""
            observations.append(obs)
        ds.StructureSetROISequence = DicomSequence(rois)
        ds.ROIContourSequence = DicomSequence(roi_contours)
        ds.RTROIObservationsSequence = DicomSequence(observations)
        return _save(ds, self.root / path)

    def rtdose(
        self,
        values_gy: npt.NDArray[np.float64],
        z_mm: Sequence[float] | npt.NDArray[np.float64],
        y_mm: Sequence[float] | npt.NDArray[np.float64],
        x_mm: Sequence[float] | npt.NDArray[np.float64],
        *,
        position: str = "HFS",
        absolute_offsets: bool = False,
        dose_units: str = "GY",
        plan_uid: str | None = None,
        frame_of_reference_uid: str | None = None,
        path: str = "rtdose.dcm",
        scaling: float = 1e-4,
        dose_type: str | None = "PHYSICAL",
        summation_type: str | None = "PLAN",
        beam_numbers: Sequence[int] = (),
    ) -> Path:
        """Write an RTDOSE whose (z, y, x) values (on increasing axes) are ``values_gy``, stored as uint32
        values × ``scaling`` in the orientation of ``position``. ``dose_type`` / ``summation_type`` None leave
        (3004,0004) / (3004,000A) out; ``beam_numbers`` go in the plan reference's (300C,0004)
        ReferencedBeamSequence (fraction group 1)."""
        z = np.asarray(z_mm, dtype=np.float64)
        y = np.asarray(y_mm, dtype=np.float64)
        x = np.asarray(x_mm, dtype=np.float64)
        iop = list(IMAGE_ORIENTATION_BY_POSITION[position])
        row_sign, col_sign = iop[0], iop[4]
        normal_z = row_sign * col_sign
        stored = np.asarray(values_gy, dtype=np.float64)
        if stored.min() < 0:  # would wrap around in the unsigned 32-bit pixels
            raise ValueError(f"RTDOSE values must be >= 0 Gy; got a minimum of {stored.min()} Gy")
        stored_x, stored_y, stored_z = x, y, z
        if row_sign < 0:
            stored, stored_x = stored[:, :, ::-1], x[::-1]
        if col_sign < 0:
            stored, stored_y = stored[:, ::-1, :], y[::-1]
        if normal_z < 0:  # frames run along the slice normal: towards decreasing z
            stored, stored_z = stored[::-1], z[::-1]
        ds = _base_dataset(
            RT_DOSE_STORAGE,
            "RTDOSE",
            study_uid=self.study_uid,
            for_uid=frame_of_reference_uid or self.frame_of_reference_uid,
        )
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.ImagePositionPatient = [float(stored_x[0]), float(stored_y[0]), float(stored_z[0])]
        ds.PixelSpacing = [float(abs(y[1] - y[0])), float(abs(x[1] - x[0]))]
        offsets = stored_z if absolute_offsets else (stored_z - stored_z[0]) * normal_z
        ds.GridFrameOffsetVector = [float(v) for v in offsets]
        ds.NumberOfFrames = int(z.size)
        ds.FrameIncrementPointer = 0x3004000C
        ds.Rows, ds.Columns = int(y.size), int(x.size)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 32
        ds.HighBit = 31
        ds.PixelRepresentation = 0
        ds.DoseUnits = dose_units
        if dose_type is not None:
            ds.DoseType = dose_type
        if summation_type is not None:
            ds.DoseSummationType = summation_type
        ds.DoseGridScaling = scaling
        ds.PixelData = np.round(stored / scaling).astype(np.uint32).tobytes()
        if plan_uid is not None:
            ref = Dataset()
            ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
            ref.ReferencedSOPInstanceUID = plan_uid
            if beam_numbers:
                group = Dataset()
                group.ReferencedFractionGroupNumber = 1
                beams = []
                for number in beam_numbers:
                    beam = Dataset()
                    beam.ReferencedBeamNumber = number
                    beams.append(beam)
                group.ReferencedBeamSequence = DicomSequence(beams)
                ref.ReferencedFractionGroupSequence = DicomSequence([group])
            ds.ReferencedRTPlanSequence = DicomSequence([ref])
        return _save(ds, self.root / path)

    def rtplan(
        self,
        *,
        prescription_gy: float = 54.0,
        fractions: int = 3,
        arc: bool = True,
        frame_of_reference_uid: str | None = None,
        structure_set_uid: str | None = None,
        path: str = "rtplan.dcm",
    ) -> tuple[Path, str]:
        """Write a one-beam plan (a CW VMAT arc 181°→179°, 6 MV FFF, or a static beam); returns (path, SOP UID)."""
        ds = _base_dataset(
            RT_PLAN_STORAGE,
            "RTPLAN",
            study_uid=self.study_uid,
            for_uid=frame_of_reference_uid or self.frame_of_reference_uid,
        )
        ds.RTPlanLabel = "SABR_LUNG"
        ds.RTPlanName = "Lung SABR"
        ds.PlanIntent = "CURATIVE"
        ds.RTPlanGeometry = "PATIENT"
        ds.ApprovalStatus = "APPROVED"
        ds.Manufacturer = "TPS vendor"
        ds.ManufacturerModelName = "TPS"
        ds.SoftwareVersions = ["16.1", "build 7"]
        ref = Dataset()
        ref.DoseReferenceNumber = 1
        ref.DoseReferenceStructureType = "VOLUME"
        ref.DoseReferenceType = "TARGET"
        ref.TargetPrescriptionDose = prescription_gy
        ds.DoseReferenceSequence = DicomSequence([ref])
        group = Dataset()
        group.FractionGroupNumber = 1
        group.NumberOfFractionsPlanned = fractions
        group.NumberOfBeams = 1
        ref_beam = Dataset()
        ref_beam.ReferencedBeamNumber = 1
        ref_beam.BeamMeterset = 2345.6
        group.ReferencedBeamSequence = DicomSequence([ref_beam])
        ds.FractionGroupSequence = DicomSequence([group])
        beam = Dataset()
        beam.BeamNumber = 1
        beam.BeamName = "ARC1" if arc else "F1"
        beam.BeamType = "DYNAMIC" if arc else "STATIC"
        beam.RadiationType = "PHOTON"
        beam.TreatmentDeliveryType = "TREATMENT"
        beam.TreatmentMachineName = "LinacA"
        beam.PrimaryDosimeterUnit = "MU"
        beam.SourceAxisDistance = 1000.0
        fluence = Dataset()
        fluence.FluenceMode = "NON_STANDARD"
        fluence.FluenceModeID = "FFF"
        beam.PrimaryFluenceModeSequence = DicomSequence([fluence])
        cps = []
        angles = [181.0, 270.0, 0.0, 90.0, 179.0] if arc else [30.0, 30.0]
        for i, angle in enumerate(angles):
            cp = Dataset()
            cp.ControlPointIndex = i
            cp.GantryAngle = angle
            cp.CumulativeMetersetWeight = i / (len(angles) - 1)
            if i == 0:
                cp.NominalBeamEnergy = 6
                cp.GantryRotationDirection = "CW" if arc else "NONE"
                cp.BeamLimitingDeviceAngle = 10.0
                cp.PatientSupportAngle = 0.0
                cp.IsocenterPosition = [1.5, -20.0, 12.0]
            cps.append(cp)
        beam.ControlPointSequence = DicomSequence(cps)
        beam.NumberOfControlPoints = len(cps)
        ds.BeamSequence = DicomSequence([beam])
        if structure_set_uid is not None:
            ss_ref = Dataset()
            ss_ref.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
            ss_ref.ReferencedSOPInstanceUID = structure_set_uid
            ds.ReferencedStructureSetSequence = DicomSequence([ss_ref])
        setup = Dataset()
        setup.PatientSetupNumber = 1
        setup.PatientPosition = "HFS"
        ds.PatientSetupSequence = DicomSequence([setup])
        return _save(ds, self.root / path), str(ds.SOPInstanceUID)


@pytest.fixture
def dicom_factory(tmp_path: Path) -> DicomFactory:
    """A :class:`DicomFactory` writing under this test's temporary directory."""
    return DicomFactory(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# analytic shapes as contour polygons


def circle(cx: float, cy: float, z: float, radius: float, *, n: int = 720) -> npt.NDArray[np.float64]:
    """Closed polygon approximating a circle (n vertices on the circle; its area is π r² (1 - O(1/n²)))."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t), np.full(n, z)], axis=1)


def rectangle(x0: float, x1: float, y0: float, y1: float, z: float) -> npt.NDArray[np.float64]:
    """Axis-aligned rectangle polygon at plane z."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float64)


def sphere_contours(
    centre: tuple[float, float, float], radius: float, planes_z: npt.NDArray[np.float64]
) -> list[npt.NDArray[np.float64]]:
    cx, cy, cz = centre
    return [circle(cx, cy, z, float(np.sqrt(radius**2 - (z - cz) ** 2))) for z in planes_z if abs(z - cz) < radius]


def cylinder_contours(
    centre_xy: tuple[float, float], radius: float, planes_z: npt.NDArray[np.float64]
) -> list[npt.NDArray[np.float64]]:
    return [circle(centre_xy[0], centre_xy[1], z, radius) for z in planes_z]


def box_contours(
    x: tuple[float, float], y: tuple[float, float], planes_z: npt.NDArray[np.float64]
) -> list[npt.NDArray[np.float64]]:
    return [rectangle(x[0], x[1], y[0], y[1], z) for z in planes_z]


def polygon_area_mm2(points: npt.NDArray[np.float64]) -> float:
    """Shoelace area of an (N, ≥2) polygon in the x-y plane."""
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
