"""Tests of the reference RT Plan and RT Dose of planning cases (benchmarks.dicom_writer, benchmarks.cases)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from benchmarks.anatomy import head_phantom, thorax_phantom
from benchmarks.cases import (
    STAGE_PLANNING,
    BuiltCase,
    CaseSpec,
    build_case,
    build_case_from_spec,
    content_hash,
    get_case,
    list_cases,
    model_dose,
)
from benchmarks.dicom_writer import DOSE_STORED_MAX, ArcSpec, DicomWriteError, PlanTarget, write_rtplan
from benchmarks.dose_model import DoseModelOptions
from benchmarks.phantoms import Phantom
from benchmarks.protocols import load_protocol
from qa_checks.dicom_io import load_submission, read_rtdose
from qa_checks.geometry import ImageVolume
from qa_checks.plan_indices import compute_plan_indices, rtog_conformity_limits
from qa_checks.rasterise import rasterise
from qa_checks.structures import StructureSet

PLANNING_CASES = (
    "lung-sabr-planning",
    "prostate-sabr-planning",
    "srs-brain-planning",
    "spine-sabr-planning",
    "oligomets-sabr-planning",
)
TECHNIQUES = {"sabr_lung", "sabr_spine", "sabr_liver", "sabr_prostate", "sabr_oligomets", "srs_brain"}

MINI_CONTENT_SHA256 = "47505e0abd19db4666a7ccf52a37f1749c5705c76ccf54ed206874cc8e90f993"
"""Content hash of lung-sabr-outlining-mini 1.0, as registered: the case must never change."""


def _coarse(case_id: str, builder: Callable[[], Phantom]) -> CaseSpec:
    spec = get_case(case_id)
    assert spec.plan is not None
    return replace(
        spec,
        case_id=f"{case_id}-coarse",
        builder=builder,
        plan=replace(spec.plan, subsampling=(1, 1, 1)),
    )


def _coarse_lung() -> Phantom:
    return thorax_phantom(spacing_mm=(3.0, 2.0, 2.0))


def _coarse_head() -> Phantom:
    return head_phantom(spacing_mm=(3.0, 2.0, 2.0))


@pytest.fixture(scope="module")
def lung_case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case_from_spec(_coarse("lung-sabr-planning", _coarse_lung), tmp_path_factory.mktemp("plan"))


@pytest.fixture(scope="module")
def srs_case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case_from_spec(_coarse("srs-brain-planning", _coarse_head), tmp_path_factory.mktemp("srs"))


class TestLibrary:
    def test_planning_cases_registered(self) -> None:
        ids = {spec.case_id for spec in list_cases()}
        assert set(PLANNING_CASES) <= ids
        for case_id in PLANNING_CASES:
            spec = get_case(case_id)
            assert spec.plan is not None
            assert spec.stage == STAGE_PLANNING
            assert spec.technique in TECHNIQUES
            protocol = load_protocol(spec.protocol_id)
            assert spec.technique in protocol.techniques
            # The plan's fractionation is one the protocol allows.
            allowed = {(f.dose_gy, f.fractions) for f in protocol.fractionations}
            for target in spec.plan.targets:
                assert (target.dose_gy, spec.plan.fractions) in allowed

    def test_srs_prescriptions_follow_size_bands(self) -> None:
        spec = get_case("srs-brain-planning")
        assert spec.plan is not None
        phantom = head_phantom(spacing_mm=(3.0, 3.0, 3.0))
        protocol = load_protocol("srs-brain")
        for target in spec.plan.targets:
            diameter = 2.0 * phantom.spheres[target.structure].radius_mm
            doses = {f.dose_gy for f in protocol.fractionations_for_diameter(diameter)}
            assert doses == {target.dose_gy}

    def test_mini_case_unchanged(self, tmp_path: Path) -> None:
        built = build_case("lung-sabr-outlining-mini", tmp_path)
        assert built.content_sha256 == MINI_CONTENT_SHA256
        assert built.rtplan_path is None and built.rtdose_path is None
        assert not (built.dicom_dir / "RTPLAN.dcm").exists()


class TestBuiltPlanningCase:
    def test_layout_and_manifest(self, lung_case: BuiltCase) -> None:
        assert lung_case.rtplan_path == lung_case.dicom_dir / "RTPLAN.dcm"
        assert lung_case.rtdose_path == lung_case.dicom_dir / "RTDOSE.dcm"
        assert lung_case.rtplan_path.is_file() and lung_case.rtdose_path.is_file()
        assert lung_case.content_sha256 == content_hash(lung_case.directory)
        manifest = lung_case.manifest_path.read_text()
        assert '"RTPLAN.dcm"' not in manifest  # files are listed by relative path
        assert "dicom/RTPLAN.dcm" in manifest and "dicom/RTDOSE.dcm" in manifest

    def test_idempotent(self, lung_case: BuiltCase) -> None:
        again = build_case_from_spec(lung_case.spec, lung_case.directory.parent)
        assert again.content_sha256 == lung_case.content_sha256
        assert again.rtplan_path == lung_case.rtplan_path

    def test_deterministic_across_directories(self, lung_case: BuiltCase, tmp_path: Path) -> None:
        other = build_case_from_spec(lung_case.spec, tmp_path)
        assert other.content_sha256 == lung_case.content_sha256
        assert other.rtdose_path is not None and lung_case.rtdose_path is not None
        assert other.rtdose_path.read_bytes() == lung_case.rtdose_path.read_bytes()

    def test_load_submission_reads_and_cross_checks(self, lung_case: BuiltCase) -> None:
        loaded = load_submission(lung_case.dicom_dir)
        assert loaded.ct is not None and loaded.structure_set is not None
        assert loaded.plan is not None and loaded.dose is not None
        assert loaded.dose.referenced_plan_uid == loaded.plan.sop_instance_uid
        assert loaded.plan.referenced_structure_set_uid == loaded.structure_set.sop_instance_uid
        assert loaded.frame_of_reference_uid == lung_case.ct.frame_of_reference_uid
        plan = loaded.plan
        assert plan.prescription_dose_gy == 54.0
        assert plan.number_of_fractions == 3
        assert plan.dose_per_fraction_gy == pytest.approx(18.0)
        assert plan.approval_status == "APPROVED"
        assert plan.patient_position == "HFS"
        assert plan.treatment_machines == ("TrueBeam1",)
        assert len(plan.treatment_beams) == 2
        for beam in plan.treatment_beams:
            assert beam.is_arc
            assert beam.fluence_mode == "FFF"
            assert beam.nominal_beam_energy_mev == 6.0
            assert beam.radiation_type == "PHOTON"
            assert beam.meterset is not None and beam.meterset > 0
            assert beam.number_of_control_points is not None and beam.number_of_control_points > 10
        # Isocentre at the PTV centroid (x, y, z) = (-95, 0, 25) mm to within a voxel.
        iso = plan.treatment_beams[0].isocentre_mm
        assert iso is not None
        assert np.allclose(iso, (-95.0, 0.0, 25.0), atol=2.0)
        dose = loaded.dose
        assert (dose.dose_units, dose.dose_type, dose.dose_summation_type) == ("GY", "PHYSICAL", "PLAN")

    def test_rtdose_round_trip(self, lung_case: BuiltCase) -> None:
        assert lung_case.spec.plan is not None and lung_case.rtdose_path is not None
        model = model_dose(lung_case.spec.plan, lung_case.phantom())
        dose = read_rtdose(lung_case.rtdose_path)
        assert dose.shape == model.dose.shape
        assert np.allclose(dose.z_mm, model.dose.z_mm) and np.allclose(dose.x_mm, model.dose.x_mm)
        # 16-bit storage: the error is at most half a quantisation step, max dose / 65535 / 2 (about 0.5 mGy),
        # plus float round-off of the 10-digit DoseGridScaling.
        step = model.dose.values_gy.max() / DOSE_STORED_MAX
        assert np.abs(dose.values_gy - model.dose.values_gy).max() <= 0.5 * step * (1 + 1e-6)
        ds = pydicom.dcmread(lung_case.rtdose_path, stop_before_pixels=True)
        assert ds.BitsAllocated == 16 and float(ds.GridFrameOffsetVector[0]) == 0.0

    def test_plan_quality_from_dicom(self, lung_case: BuiltCase) -> None:
        loaded = load_submission(lung_case.dicom_dir)
        assert loaded.dose is not None and lung_case.spec.plan is not None
        ptv = model_dose(lung_case.spec.plan, lung_case.phantom()).masks["PTV"]
        indices = compute_plan_indices(loaded.dose, ptv, 54.0)
        limits = rtog_conformity_limits(indices.ptv_volume_cc)
        assert indices.r50 < limits.r50_no_deviation
        assert indices.d2cm_percent < limits.d2cm_no_deviation_percent
        assert indices.ptv_coverage_percent == pytest.approx(
            DoseModelOptions().coverage_percent, abs=1.0
        )  # tuned on this grid; see dose model

    def test_srs_plan_has_two_dose_references(self, srs_case: BuiltCase) -> None:
        loaded = load_submission(srs_case.dicom_dir)
        assert loaded.plan is not None
        assert loaded.plan.target_prescription_doses_gy == (24.0, 18.0)
        assert loaded.plan.number_of_fractions == 1
        couches = sorted(b.couch_deg or 0.0 for b in loaded.plan.treatment_beams)
        assert couches == [0.0, 45.0, 315.0]
        assert srs_case.rtplan_path is not None
        ds = pydicom.dcmread(srs_case.rtplan_path)
        names = {int(r.ROINumber): r.ROIName for r in pydicom.dcmread(srs_case.rtstruct_path).StructureSetROISequence}
        assert [names[int(item.ReferencedROINumber)] for item in ds.DoseReferenceSequence] == ["PTV", "PTV_2"]


class TestWriterErrors:
    def test_unknown_roi_number(self, lung_case: BuiltCase, tmp_path: Path) -> None:
        with pytest.raises(DicomWriteError, match=r"ReferencedROINumber 99 is not in"):
            write_rtplan(
                lung_case.ct,
                lung_case.rtstruct_path,
                tmp_path / "p.dcm",
                targets=[PlanTarget(99, "PTV", 54.0)],
                fractions=3,
                arcs=[ArcSpec("A", 181.0, 179.0)],
                isocentre_xyz_mm=(0.0, 0.0, 0.0),
                aperture_radius_mm=20.0,
            )

    def test_bad_direction(self, lung_case: BuiltCase, tmp_path: Path) -> None:
        with pytest.raises(DicomWriteError, match="GantryRotationDirection 'UP'"):
            write_rtplan(
                lung_case.ct,
                lung_case.rtstruct_path,
                tmp_path / "p.dcm",
                targets=[PlanTarget(10, "PTV", 54.0)],
                fractions=3,
                arcs=[ArcSpec("A", 181.0, 179.0, "UP")],
                isocentre_xyz_mm=(0.0, 0.0, 0.0),
                aperture_radius_mm=20.0,
            )


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
class TestDciodvfy:
    @pytest.mark.parametrize("which", ["RTPLAN.dcm", "RTDOSE.dcm", "RTSTRUCT.dcm", "CT"])
    @pytest.mark.parametrize("case", ["lung_case", "srs_case"])
    def test_no_errors(self, which: str, case: str, request: pytest.FixtureRequest) -> None:
        built: BuiltCase = request.getfixturevalue(case)
        path = built.ct.paths[0] if which == "CT" else built.dicom_dir / which
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        output = proc.stdout + proc.stderr
        # The verifier names the IOD it recognised; an unparsable file would give no IOD line.
        assert any(iod in output for iod in ("RTPlan", "RTDose", "RTStructureSet", "CTImage")), output
        errors = [line for line in output.splitlines() if line.startswith("Error")]
        assert errors == [], "\n".join(errors)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", PLANNING_CASES)
def test_full_resolution_case(case_id: str, tmp_path: Path) -> None:
    built = build_case(case_id, tmp_path)
    loaded = load_submission(built.dicom_dir)
    assert loaded.plan is not None and loaded.dose is not None and loaded.ct is not None
    assert loaded.ct.spacing_mm == (2.0, 1.0, 1.0)
    spec = built.spec
    assert spec.plan is not None
    phantom = built.phantom()
    assert loaded.structure_set is not None
    _assert_structures_match_phantom(loaded.structure_set, loaded.ct, phantom)
    model = model_dose(spec.plan, phantom)
    if len(spec.plan.targets) == 1:
        target = spec.plan.targets[0]
        indices = compute_plan_indices(loaded.dose, model.masks[target.structure], target.dose_gy)
        limits = rtog_conformity_limits(indices.ptv_volume_cc)
        assert indices.r50 < limits.r50_no_deviation
        assert indices.d2cm_percent < limits.d2cm_no_deviation_percent
        assert indices.ptv_coverage_percent == pytest.approx(DoseModelOptions().coverage_percent, abs=1.0)
    if shutil.which("dciodvfy"):
        for path in (
            *sorted(built.ct_dir.glob("*.dcm"))[:3],
            built.rtstruct_path,
            built.rtplan_path,
            built.rtdose_path,
        ):
            proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
            assert not [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def _assert_structures_match_phantom(structure_set: StructureSet, ct: ImageVolume, phantom: Phantom) -> None:
    for name, mask in phantom.masks.items():
        got = rasterise(structure_set[name], ct)
        overlap = 2.0 * np.count_nonzero(got & mask) / (np.count_nonzero(got) + np.count_nonzero(mask))
        # Contours are traced half-way between voxel centres, so a voxel-centre rasteriser should give the mask
        # back; 0.98 allows for the odd voxel on degenerate (one-voxel-wide) boundaries.
        assert overlap >= 0.98, (name, overlap)


@pytest.mark.parametrize("case", ["lung_case", "srs_case"])
def test_structures_read_back_match_phantom(case: str, request: pytest.FixtureRequest) -> None:
    built: BuiltCase = request.getfixturevalue(case)
    loaded = load_submission(built.dicom_dir)
    assert loaded.structure_set is not None and loaded.ct is not None
    _assert_structures_match_phantom(loaded.structure_set, loaded.ct, built.phantom())
