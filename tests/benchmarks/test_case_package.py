"""The case download holds what the stage supplies and never the reference answers: every entry is read back with
pydicom and judged by its SOP Class UID (hard-coded from DICOM PS3.4, not taken from our code)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from benchmarks.case_package import CasePackageError, supplied_files, write_case_zip
from benchmarks.cases import BuiltCase
from tests.portal.centre_fixtures import OUTLINING, PLANNING, SOP_CLASS, TPS, built_cases, instance_uid, zip_objects

__all__ = ["built_cases"]

EXPECTED = {
    OUTLINING: {SOP_CLASS["CT"]},
    PLANNING: {SOP_CLASS["CT"], SOP_CLASS["RTSTRUCT"]},
    TPS: {SOP_CLASS["CT"], SOP_CLASS["RTSTRUCT"], SOP_CLASS["RTPLAN"]},
}
"""What a centre must receive per case: outlining the CT; planning the CT and structures; TPS check also the plan."""


def _answers(built: BuiltCase) -> set[str]:
    """SOP Instance UIDs of the reference objects a centre must never receive for the case's stage."""
    if built.spec.case_id == OUTLINING:
        return {instance_uid(built.rtstruct_path)}
    assert built.rtplan_path is not None and built.rtdose_path is not None
    if built.spec.case_id == PLANNING:
        return {instance_uid(built.rtplan_path), instance_uid(built.rtdose_path)}
    return {instance_uid(built.rtdose_path)}


class TestWriteCaseZip:
    @pytest.mark.parametrize("code", [OUTLINING, PLANNING, TPS])
    def test_zip_holds_what_the_stage_supplies_and_no_answer(
        self, code: str, built_cases: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        built = built_cases[code]
        target = tmp_path / "case.zip"
        names = write_case_zip(built.directory, built.spec.stage, target, folder=built.spec.directory_name)
        objects = zip_objects(target.read_bytes())
        assert [name for name, *_ in objects] == names
        assert {sop_class for _, _, sop_class, _ in objects} == EXPECTED[code]
        assert not {uid for *_, uid in objects} & _answers(built)
        assert SOP_CLASS["RTDOSE"] not in {sop_class for _, _, sop_class, _ in objects}
        ct_slices = sorted(built.ct_dir.glob("*.dcm"))
        assert sum(1 for _, modality, _, _ in objects if modality == "CT") == len(ct_slices)
        assert all(name.startswith(f"{built.spec.case_id}-{built.spec.version}/") for name in names)

    def test_the_same_case_gives_the_same_bytes(self, built_cases: dict[str, BuiltCase], tmp_path: Path) -> None:
        built = built_cases[TPS]
        first, second = tmp_path / "a.zip", tmp_path / "b.zip"
        write_case_zip(built.directory, built.spec.stage, first, folder="x")
        write_case_zip(built.directory, built.spec.stage, second, folder="x")
        assert first.read_bytes() == second.read_bytes()
        assert not list(tmp_path.glob(".*.part"))

    def test_files_are_chosen_by_modality_not_by_name(self, built_cases: dict[str, BuiltCase], tmp_path: Path) -> None:
        """The reference RTSTRUCT of an outlining case put among the CT slices is still left out."""
        case = tmp_path / "disguised"
        shutil.copytree(built_cases[OUTLINING].directory, case)
        shutil.move(case / "dicom" / "RTSTRUCT.dcm", case / "dicom" / "CT" / "CT.9999.dcm")
        write_case_zip(case, "outlining_benchmark", tmp_path / "case.zip", folder="x")
        objects = zip_objects((tmp_path / "case.zip").read_bytes())
        assert {sop_class for _, _, sop_class, _ in objects} == {SOP_CLASS["CT"]}
        assert "x/CT/CT.9999.dcm" not in [name for name, *_ in objects]

    def test_a_stage_without_files_is_refused(self, built_cases: dict[str, BuiltCase], tmp_path: Path) -> None:
        with pytest.raises(CasePackageError, match="facility questionnaire has no case files"):
            write_case_zip(built_cases[OUTLINING].directory, "facility_questionnaire", tmp_path / "q.zip", folder="q")
        assert not (tmp_path / "q.zip").exists()

    def test_a_missing_supplied_object_is_refused(self, built_cases: dict[str, BuiltCase], tmp_path: Path) -> None:
        """A TPS check without its reference plan cannot be taken: refused, naming the missing modality."""
        with pytest.raises(CasePackageError, match="no RTPLAN file"):
            supplied_files(built_cases[OUTLINING].directory, "complex_treatment_dosimetry_check")
        with pytest.raises(CasePackageError, match="no reference DICOM files"):
            supplied_files(tmp_path, "outlining_benchmark")

    def test_an_unreadable_reference_file_is_named(self, built_cases: dict[str, BuiltCase], tmp_path: Path) -> None:
        case = tmp_path / "broken"
        shutil.copytree(built_cases[OUTLINING].directory, case)
        (case / "dicom" / "CT" / "CT.0002.dcm").write_bytes(b"not dicom")
        with pytest.raises(CasePackageError, match=re.escape("broken: dicom/CT/CT.0002.dcm cannot be read as DICOM")):
            write_case_zip(case, "outlining_benchmark", tmp_path / "out" / "case.zip", folder="x")
        assert not (tmp_path / "out").exists()
