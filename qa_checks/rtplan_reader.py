"""Read an RT Plan: beams, control points, fractionation and dose references."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from pydicom.dataset import Dataset

from qa_checks.dicom_reading import (
    PathLike,
    _check_modality,
    _get,
    _opt_float,
    _opt_int,
    _opt_str,
    _pydicom_warnings_logged,
    _read_dataset,
    _require,
    _tag,
)
from qa_checks.plan import Beam, DoseReference, Plan

logger = logging.getLogger("qa_checks.dicom_io")


def read_rtplan(path: PathLike) -> Plan:
    """Read an RTPLAN file into a :class:`~qa_checks.plan.Plan` (see its attributes for the tags used).

    Raises:
        NotDicomError, WrongModalityError, MissingAttributeError.
    """
    p = Path(path)
    ds = _read_dataset(p)
    _check_modality(ds, "RTPLAN", p)
    with _pydicom_warnings_logged(p):
        return _rtplan_from_dataset(ds, p)


def _beam_from_item(beam: Dataset, meterset_by_beam: Mapping[int, float], path: Path) -> Beam:
    number = int(_require(beam, "BeamNumber", path, where=_tag("BeamSequence")))
    control_points = list(_get(beam, "ControlPointSequence") or [])
    first: Dataset = control_points[0] if control_points else Dataset()
    gantry_angles = [float(cp.GantryAngle) for cp in control_points if _get(cp, "GantryAngle") is not None]
    isocentre = _get(first, "IsocenterPosition")
    fluence_mode = None
    for item in _get(beam, "PrimaryFluenceModeSequence") or []:
        fluence_mode = _opt_str(item, "FluenceModeID") or _opt_str(item, "FluenceMode")
    return Beam(
        number=number,
        name=_opt_str(beam, "BeamName"),
        description=_opt_str(beam, "BeamDescription"),
        beam_type=_opt_str(beam, "BeamType"),
        radiation_type=_opt_str(beam, "RadiationType"),
        treatment_delivery_type=_opt_str(beam, "TreatmentDeliveryType"),
        machine_name=_opt_str(beam, "TreatmentMachineName"),
        nominal_beam_energy_mev=_opt_float(first, "NominalBeamEnergy"),
        fluence_mode=fluence_mode,
        gantry_start_deg=gantry_angles[0] if gantry_angles else None,
        gantry_stop_deg=gantry_angles[-1] if gantry_angles else None,
        gantry_rotation_direction=_opt_str(first, "GantryRotationDirection"),
        collimator_deg=_opt_float(first, "BeamLimitingDeviceAngle"),
        couch_deg=_opt_float(first, "PatientSupportAngle"),
        isocentre_mm=(
            (float(isocentre[0]), float(isocentre[1]), float(isocentre[2]))
            if isocentre is not None and len(isocentre) == 3
            else None
        ),
        number_of_control_points=_opt_int(beam, "NumberOfControlPoints") or (len(control_points) or None),
        meterset=meterset_by_beam.get(number),
        primary_dosimeter_unit=_opt_str(beam, "PrimaryDosimeterUnit"),
        source_axis_distance_mm=_opt_float(beam, "SourceAxisDistance"),
    )


def _dose_reference(item: Dataset) -> DoseReference:
    return DoseReference(
        number=_opt_int(item, "DoseReferenceNumber"),
        structure_type=_opt_str(item, "DoseReferenceStructureType"),
        description=_opt_str(item, "DoseReferenceDescription"),
        dose_reference_type=_opt_str(item, "DoseReferenceType"),
        roi_number=_opt_int(item, "ReferencedROINumber"),
        target_prescription_dose_gy=_opt_float(item, "TargetPrescriptionDose"),
        target_minimum_dose_gy=_opt_float(item, "TargetMinimumDose"),
        delivery_maximum_dose_gy=_opt_float(item, "DeliveryMaximumDose"),
    )


def _rtplan_from_dataset(ds: Dataset, path: Path) -> Plan:
    prescriptions = tuple(
        float(item.TargetPrescriptionDose)
        for item in (_get(ds, "DoseReferenceSequence") or [])
        if _get(item, "TargetPrescriptionDose") is not None
    )
    fraction_groups = list(_get(ds, "FractionGroupSequence") or [])
    meterset_by_beam: dict[int, float] = {}
    number_of_fractions = None
    if fraction_groups:
        group = fraction_groups[0]
        number_of_fractions = _opt_int(group, "NumberOfFractionsPlanned")
        for ref in _get(group, "ReferencedBeamSequence") or []:
            beam_number = _opt_int(ref, "ReferencedBeamNumber")
            meterset = _opt_float(ref, "BeamMeterset")
            if beam_number is not None and meterset is not None:
                meterset_by_beam[beam_number] = meterset
        if len(fraction_groups) > 1:
            logger.warning(
                "%s: %d items in %s; fractions and metersets are taken from the first",
                path,
                len(fraction_groups),
                _tag("FractionGroupSequence"),
            )
    beams = tuple(_beam_from_item(b, meterset_by_beam, path) for b in (_get(ds, "BeamSequence") or []))
    structure_refs = _get(ds, "ReferencedStructureSetSequence") or []
    setups = _get(ds, "PatientSetupSequence") or []
    return Plan(
        sop_instance_uid=_opt_str(ds, "SOPInstanceUID"),
        label=_opt_str(ds, "RTPlanLabel"),
        name=_opt_str(ds, "RTPlanName"),
        description=_opt_str(ds, "RTPlanDescription"),
        intent=_opt_str(ds, "PlanIntent"),
        geometry=_opt_str(ds, "RTPlanGeometry"),
        approval_status=_opt_str(ds, "ApprovalStatus"),
        prescription_dose_gy=max(prescriptions) if prescriptions else None,
        target_prescription_doses_gy=prescriptions,
        dose_references=tuple(_dose_reference(item) for item in (_get(ds, "DoseReferenceSequence") or [])),
        number_of_fractions=number_of_fractions,
        number_of_fraction_groups=len(fraction_groups),
        beams=beams,
        frame_of_reference_uid=_opt_str(ds, "FrameOfReferenceUID"),
        referenced_structure_set_uid=(
            _opt_str(structure_refs[0], "ReferencedSOPInstanceUID") if structure_refs else None
        ),
        patient_position=_opt_str(setups[0], "PatientPosition") if setups else None,
        manufacturer=_opt_str(ds, "Manufacturer"),
        model_name=_opt_str(ds, "ManufacturerModelName"),
        software_versions=_opt_str(ds, "SoftwareVersions"),
        path=str(path),
    )
