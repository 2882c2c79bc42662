"""Tests of benchmarks.cases: the case library and the deterministic, idempotent builder."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from benchmarks.cases import (
    STAGE_OUTLINING,
    BuiltCase,
    CaseError,
    build_case,
    content_hash,
    get_case,
    list_cases,
)
from benchmarks.protocols import load_protocol

CASE = "lung-sabr-outlining-mini"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(CASE, tmp_path_factory.mktemp("cases"))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.count_nonzero(a & b)) / float(np.count_nonzero(a) + np.count_nonzero(b))


class TestLibrary:
    def test_list_and_get(self) -> None:
        ids = [spec.case_id for spec in list_cases()]
        assert CASE in ids
        spec = get_case(CASE)
        assert spec.version == "1.0"
        assert spec.technique == "sabr_lung"
        assert spec.stage == STAGE_OUTLINING == "outlining_benchmark"
        assert spec.protocol_id == "uk-lung-sabr"

    def test_every_case_has_a_loadable_protocol(self) -> None:
        for spec in list_cases():
            assert load_protocol(spec.protocol_id).id == spec.protocol_id

    def test_unknown_case(self) -> None:
        with pytest.raises(CaseError, match=r"unknown case id 'nope'; known cases: lung-sabr-outlining-mini"):
            get_case("nope")
        with pytest.raises(CaseError, match="unknown case id 'nope'"):
            build_case("nope", Path("unused"))


class TestBuildCase:
    def test_layout(self, built: BuiltCase) -> None:
        assert built.directory.name == f"{CASE}-1.0"
        assert built.dicom_dir == built.directory / "dicom"
        assert built.ct_dir.parent == built.dicom_dir
        assert built.rtstruct_path.parent == built.dicom_dir
        assert len(list(built.ct_dir.glob("*.dcm"))) == 40
        assert built.manifest_path.is_file()
        # dicom/ holds only DICOM files, so it can be loaded like a submission.
        assert all(p.suffix == ".dcm" for p in built.dicom_dir.rglob("*") if p.is_file())

    def test_manifest(self, built: BuiltCase) -> None:
        manifest = json.loads(built.manifest_path.read_text())
        assert manifest["case_id"] == CASE
        assert manifest["content_sha256"] == built.content_sha256 == content_hash(built.directory)
        assert manifest["frame_of_reference_uid"] == built.ct.frame_of_reference_uid
        assert {s["name"] for s in manifest["structures"]} >= {"PTV", "GTV", "SpinalCord"}
        assert len(manifest["files"]) == 41
        paths = [f["path"] for f in manifest["files"]]
        assert paths == sorted(paths)
        assert "dicom/RTSTRUCT.dcm" in paths

    def test_deterministic_across_directories(self, built: BuiltCase, tmp_path: Path) -> None:
        again = build_case(CASE, tmp_path)
        assert again.content_sha256 == built.content_sha256
        assert again.ct.sop_instance_uids == built.ct.sop_instance_uids
        assert again.rtstruct_path.read_bytes() == built.rtstruct_path.read_bytes()

    def test_idempotent_does_not_rewrite(self, tmp_path: Path) -> None:
        first = build_case(CASE, tmp_path)
        mtimes = {p: p.stat().st_mtime_ns for p in first.directory.rglob("*") if p.is_file()}
        second = build_case(CASE, tmp_path)
        assert second.content_sha256 == first.content_sha256
        assert {p: p.stat().st_mtime_ns for p in second.directory.rglob("*") if p.is_file()} == mtimes

    def test_tampered_build_is_rebuilt(self, tmp_path: Path) -> None:
        first = build_case(CASE, tmp_path)
        victim = sorted(first.ct_dir.glob("*.dcm"))[5]
        victim.write_bytes(b"corrupt")
        assert content_hash(first.directory) != first.content_sha256
        rebuilt = build_case(CASE, tmp_path)
        assert rebuilt.content_sha256 == first.content_sha256
        assert pydicom.dcmread(victim).Modality == "CT"

    def test_content_hash_depends_on_paths(self, built: BuiltCase, tmp_path: Path) -> None:
        copy = tmp_path / "copy"
        (copy / "dicom" / "CT").mkdir(parents=True)
        for p in built.ct_dir.glob("*.dcm"):
            (copy / "dicom" / "CT" / p.name).write_bytes(p.read_bytes())
        (copy / "dicom" / "RTSTRUCT.dcm").write_bytes(built.rtstruct_path.read_bytes())
        assert content_hash(copy) == built.content_sha256
        first = sorted((copy / "dicom" / "CT").glob("*.dcm"))[0]
        first.rename(first.with_name("CT.9999.dcm"))
        assert content_hash(copy) != built.content_sha256

    def test_reference_structures_match_phantom_with_pydicom(self, built: BuiltCase) -> None:
        ds = pydicom.dcmread(built.rtstruct_path)
        phantom = built.phantom()
        assert [roi.ROIName for roi in ds.StructureSetROISequence] == list(phantom.masks)
        assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == built.ct.frame_of_reference_uid
        ct0 = pydicom.dcmread(sorted(built.ct_dir.glob("*.dcm"))[0])
        assert ct0.PatientID == ds.PatientID == get_case(CASE).patient_id
        assert ct0.StudyDate == "20260101"  # fixed date, never the clock

    def test_reads_back_through_qa_checks(self, built: BuiltCase) -> None:
        dicom_io = pytest.importorskip("qa_checks.dicom_io")
        rasterise = pytest.importorskip("qa_checks.rasterise")
        loaded = dicom_io.load_submission(built.dicom_dir)
        assert loaded.frame_of_reference_uid == built.ct.frame_of_reference_uid
        phantom = built.phantom()
        for name, mask in phantom.masks.items():
            got = rasterise.rasterise(loaded.structure_set[name], loaded.ct)
            # Requirement: Dice >= 0.98 against the phantom (the contours are traced half-way between voxel
            # centres, so a voxel-centre rasteriser actually reproduces the mask exactly).
            assert _dice(got, mask) >= 0.98, name


def _dicom3tools_errors(command: list[str]) -> list[str]:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None or shutil.which("dcentvfy") is None,
    reason="dicom3tools (dciodvfy, dcentvfy) not installed",
)
class TestDicom3toolsConformance:
    """Conformance per dicom3tools: each file against its IOD, and entity consistency across the files."""

    def test_every_reference_file_verifies(self, built: BuiltCase) -> None:
        for path in [*sorted(built.ct_dir.glob("*.dcm"))[:3], built.rtstruct_path]:
            assert _dicom3tools_errors(["dciodvfy", str(path)]) == [], path

    def test_reference_files_are_one_consistent_study(self, built: BuiltCase) -> None:
        files = [str(p) for p in sorted(built.ct_dir.glob("*.dcm"))] + [str(built.rtstruct_path)]
        assert _dicom3tools_errors(["dcentvfy", *files]) == []

    def test_simulated_submission_verifies(self, built: BuiltCase, tmp_path: Path) -> None:
        from benchmarks.simulator import parse_deviation, simulate_submission

        sim = simulate_submission(
            built,
            provider="the-christie",
            deviations=[parse_deviation("rename:SpinalCord:Cord"), parse_deviation("margin_mm:PTV:3")],
            seed=1,
            out_dir=tmp_path / "sub",
        )
        assert _dicom3tools_errors(["dciodvfy", str(sim.rtstruct_path)]) == []
        files = [str(p) for p in sorted(sim.ct_dir.glob("*.dcm"))] + [str(sim.rtstruct_path)]
        assert _dicom3tools_errors(["dcentvfy", *files, str(built.rtstruct_path)]) == []
