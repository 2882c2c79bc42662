"""RT plans: what a reviewer needs to see of an RTPLAN (prescription, fractionation, beams, machine).

Read with :func:`qa_checks.dicom_io.read_rtplan`. Angles are in degrees as in DICOM (IEC 61217 scales);
energies in MeV as (300A,0114) *NominalBeamEnergy* (for photons the number a physicist calls "MV").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["ARC_DIRECTIONS", "Beam", "DoseReference", "Plan"]

ARC_DIRECTIONS: Final[frozenset[str]] = frozenset({"CW", "CC"})
"""(300A,011F) *GantryRotationDirection* values meaning the gantry moves during the beam (an arc)."""


@dataclass(frozen=True)
class Beam:
    """One item of (300A,00B0) *BeamSequence*.

    Attributes:
        number: (300A,00C0) *BeamNumber*.
        name: (300A,00C2) *BeamName*.
        description: (300A,00C3) *BeamDescription*.
        beam_type: (300A,00C4) *BeamType*: ``"STATIC"`` or ``"DYNAMIC"``.
        radiation_type: (300A,00C6) *RadiationType*: ``"PHOTON"``, ``"ELECTRON"``, ...
        treatment_delivery_type: (300A,00CE) *TreatmentDeliveryType*: ``"TREATMENT"``, ``"SETUP"``, ...
        machine_name: (300A,00B2) *TreatmentMachineName*.
        nominal_beam_energy_mev: (300A,0114) *NominalBeamEnergy* of the first control point, in MeV.
        fluence_mode: (3002,0051) *FluenceModeID* (e.g. ``"FFF"``) when given, else (3002,0052)
            *FluenceMode* (``"STANDARD"`` / ``"NON_STANDARD"``) of (3002,0050) *PrimaryFluenceModeSequence*.
        gantry_start_deg: (300A,011E) *GantryAngle* of the first control point.
        gantry_stop_deg: *GantryAngle* of the last control point that gives one (equal to start for static beams).
        gantry_rotation_direction: (300A,011F) *GantryRotationDirection* of the first control point.
        collimator_deg: (300A,0120) *BeamLimitingDeviceAngle* of the first control point.
        couch_deg: (300A,0122) *PatientSupportAngle* of the first control point.
        isocentre_mm: (300A,012C) *IsocenterPosition* (x, y, z) in patient LPS mm, first control point.
        number_of_control_points: (300A,0110) *NumberOfControlPoints*.
        meterset: (300C,0004) *ReferencedBeamSequence* (300A,0086) *BeamMeterset* of the first fraction
            group (per fraction), in ``primary_dosimeter_unit``.
        primary_dosimeter_unit: (300A,00B3) *PrimaryDosimeterUnit*, usually ``"MU"``.
        source_axis_distance_mm: (300A,00B4) *SourceAxisDistance*.
    """

    number: int
    name: str | None = None
    description: str | None = None
    beam_type: str | None = None
    radiation_type: str | None = None
    treatment_delivery_type: str | None = None
    machine_name: str | None = None
    nominal_beam_energy_mev: float | None = None
    fluence_mode: str | None = None
    gantry_start_deg: float | None = None
    gantry_stop_deg: float | None = None
    gantry_rotation_direction: str | None = None
    collimator_deg: float | None = None
    couch_deg: float | None = None
    isocentre_mm: tuple[float, float, float] | None = None
    number_of_control_points: int | None = None
    meterset: float | None = None
    primary_dosimeter_unit: str | None = None
    source_axis_distance_mm: float | None = None

    @property
    def is_arc(self) -> bool:
        """True when the gantry rotates during the beam (direction CW or CC)."""
        return self.gantry_rotation_direction in ARC_DIRECTIONS

    @property
    def is_treatment(self) -> bool:
        """True unless (300A,00CE) *TreatmentDeliveryType* says otherwise (e.g. a ``SETUP`` beam)."""
        return self.treatment_delivery_type in (None, "TREATMENT", "CONTINUATION")


@dataclass(frozen=True)
class DoseReference:
    """One item of (300A,0010) *DoseReferenceSequence*.

    Attributes:
        number: (300A,0012) *DoseReferenceNumber*.
        structure_type: (300A,0014) *DoseReferenceStructureType*: ``"VOLUME"``, ``"POINT"``, ``"SITE"``, ...
        description: (300A,0016) *DoseReferenceDescription*.
        dose_reference_type: (300A,0020) *DoseReferenceType*: ``"TARGET"`` or ``"ORGAN_AT_RISK"``.
        roi_number: (3006,0084) *ReferencedROINumber*: the structure-set ROI the reference is tied to, if any.
        target_prescription_dose_gy: (300A,0026) *TargetPrescriptionDose*, Gy.
        target_minimum_dose_gy: (300A,0025) *TargetMinimumDose*, Gy.
        delivery_maximum_dose_gy: (300A,0023) *DeliveryMaximumDose*, Gy.
    """

    number: int | None = None
    structure_type: str | None = None
    description: str | None = None
    dose_reference_type: str | None = None
    roi_number: int | None = None
    target_prescription_dose_gy: float | None = None
    target_minimum_dose_gy: float | None = None
    delivery_maximum_dose_gy: float | None = None

    @property
    def is_target(self) -> bool:
        """True when (300A,0020) *DoseReferenceType* is ``"TARGET"``."""
        return self.dose_reference_type == "TARGET"


@dataclass(frozen=True)
class Plan:
    """A read RTPLAN.

    Attributes:
        sop_instance_uid: (0008,0018) *SOPInstanceUID*.
        label: (300A,0002) *RTPlanLabel*.
        name: (300A,0003) *RTPlanName*.
        description: (300A,0004) *RTPlanDescription*.
        intent: (300A,000A) *PlanIntent* (``"CURATIVE"``, ``"PALLIATIVE"``, ``"VERIFICATION"``, ...).
        geometry: (300A,000C) *RTPlanGeometry*: ``"PATIENT"`` or ``"TREATMENT_DEVICE"``.
        approval_status: (300E,0002) *ApprovalStatus*: ``"APPROVED"``, ``"UNAPPROVED"``, ``"REJECTED"``.
        prescription_dose_gy: the highest (300A,0026) *TargetPrescriptionDose* among the
            (300A,0010) *DoseReferenceSequence* items (the primary dose level of a simultaneous boost), or None.
        target_prescription_doses_gy: every *TargetPrescriptionDose* found, in sequence order.
        dose_references: every item of *DoseReferenceSequence*, in sequence order.
        number_of_fractions: (300A,0078) *NumberOfFractionsPlanned* of the first item of
            (300A,0070) *FractionGroupSequence*.
        number_of_fraction_groups: number of items in *FractionGroupSequence*.
        beams: the beams of (300A,00B0) *BeamSequence*, in order.
        frame_of_reference_uid: (0020,0052) *FrameOfReferenceUID*, when the plan carries one.
        referenced_structure_set_uid: (0008,1155) *ReferencedSOPInstanceUID* in
            (300C,0060) *ReferencedStructureSetSequence*.
        patient_position: (0018,5100) *PatientPosition* of the first (300A,0180) *PatientSetupSequence* item.
        manufacturer: (0008,0070) *Manufacturer* of the planning system.
        model_name: (0008,1090) *ManufacturerModelName* (planning system).
        software_versions: (0018,1020) *SoftwareVersions*, joined with ``"\\"``.
        path: file the plan was read from.
    """

    sop_instance_uid: str | None
    label: str | None = None
    name: str | None = None
    description: str | None = None
    intent: str | None = None
    geometry: str | None = None
    approval_status: str | None = None
    prescription_dose_gy: float | None = None
    target_prescription_doses_gy: tuple[float, ...] = ()
    dose_references: tuple[DoseReference, ...] = ()
    number_of_fractions: int | None = None
    number_of_fraction_groups: int = 0
    beams: tuple[Beam, ...] = ()
    frame_of_reference_uid: str | None = None
    referenced_structure_set_uid: str | None = None
    patient_position: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    software_versions: str | None = None
    path: str | None = None

    @property
    def treatment_beams(self) -> tuple[Beam, ...]:
        """Beams that deliver treatment (set-up beams excluded)."""
        return tuple(b for b in self.beams if b.is_treatment)

    @property
    def treatment_machines(self) -> tuple[str, ...]:
        """Distinct (300A,00B2) *TreatmentMachineName* values of the beams, in first-use order."""
        return tuple(dict.fromkeys(b.machine_name for b in self.beams if b.machine_name))

    @property
    def dose_per_fraction_gy(self) -> float | None:
        """``prescription_dose_gy / number_of_fractions`` when both are known."""
        if self.prescription_dose_gy is None or not self.number_of_fractions:
            return None
        return self.prescription_dose_gy / self.number_of_fractions

    @property
    def total_meterset(self) -> float | None:
        """Sum of the beams' per-fraction meterset, when every treatment beam has one."""
        values = [b.meterset for b in self.treatment_beams]
        if not values or any(v is None for v in values):
            return None
        return float(sum(v for v in values if v is not None))
