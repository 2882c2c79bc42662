"""Write RT Plan Storage instances: VMAT arcs (or static beams) with a 120-leaf MLC, for the reference plans."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from benchmarks.dicom_base import (
    DEFAULT_DATE,
    DEFAULT_TIME,
    IMPLEMENTATION_VERSION_NAME,
    RT_STRUCTURE_SET_STORAGE,
    CtSeriesInfo,
    DicomWriteError,
    ds_value,
    make_uid,
    new_rt_dataset,
)

logger = logging.getLogger(__name__)


RT_PLAN_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.5"
"""(0008,0016) SOPClassUID of RT Plan Storage."""

MLC_LEAF_BOUNDARIES_MM: Final = tuple(
    [-200.0 + 10.0 * i for i in range(10)]
    + [-100.0 + 5.0 * i for i in range(40)]
    + [100.0 + 10.0 * i for i in range(11)]
)
"""(300A,00BE) LeafPositionBoundaries of a 120-leaf (60-pair) MLC: 10 x 10 mm, 40 x 5 mm, 10 x 10 mm pairs."""


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

    ds = new_rt_dataset(
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
        item.DeliveryMaximumDose = ds_value(1.3 * target.dose_gy)
        item.TargetPrescriptionDose = ds_value(target.dose_gy)
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
        ref.BeamMeterset = ds_value(total_mu * weight)
        ref.BeamDose = ds_value(dose_per_fraction * weight)
        refs.append(ref)
    group.ReferencedBeamSequence = DicomSequence(refs)
    ds.FractionGroupSequence = DicomSequence([group])
    # RT Beams
    iso = [ds_value(v) for v in isocentre_xyz_mm]
    boundaries = np.asarray(MLC_LEAF_BOUNDARIES_MM)
    centres = 0.5 * (boundaries[:-1] + boundaries[1:])
    r = float(aperture_radius_mm)
    half = np.sqrt(np.clip(r**2 - centres**2, 0.0, None))
    open_pairs = half > 0
    bank_a = np.where(open_pairs, -half, -r).round(1)
    bank_b = np.where(open_pairs, half, -r).round(1)
    leaves = [ds_value(v) for v in np.concatenate([bank_a, bank_b])]
    jaw = [ds_value(-r - 2.0), ds_value(r + 2.0)]
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
                device.LeafPositionBoundaries = [ds_value(v) for v in boundaries]
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
            cp.CumulativeMetersetWeight = ds_value(index / (len(angles) - 1))
            positions = []
            for kind, values in (("ASYMX", jaw), ("ASYMY", jaw), ("MLCX", leaves)):
                if index > 0 and kind != "MLCX":
                    continue
                position = Dataset()
                position.RTBeamLimitingDeviceType = kind
                position.LeafJawPositions = values
                positions.append(position)
            cp.BeamLimitingDevicePositionSequence = DicomSequence(positions)
            cp.GantryAngle = ds_value(angle)
            cp.GantryRotationDirection = arc.direction if index < len(angles) - 1 else "NONE"
            if index == 0:
                cp.NominalBeamEnergy = ds_value(energy_mv)
                cp.DoseRateSet = ds_value(dose_rate_mu_per_min)
                cp.BeamLimitingDeviceAngle = ds_value(arc.collimator_deg)
                cp.BeamLimitingDeviceRotationDirection = "NONE"
                cp.PatientSupportAngle = ds_value(arc.couch_deg)
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
