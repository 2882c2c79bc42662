"""Tests of the QA-stage vocabulary of benchmark cases (benchmarks.case_spec) and of the catalogue's coverage of
the protocols' stages (benchmarks.case_catalogue)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.cases import (
    CASE_STAGES,
    STAGE_DOSIMETRY,
    STAGE_OUTLINING,
    STAGE_PLANNING,
    CaseSpecError,
    get_case,
    list_cases,
)
from benchmarks.protocols import list_protocols, load_protocol


class TestStageVocabulary:
    def test_values(self) -> None:
        assert STAGE_OUTLINING == "outlining_benchmark"
        assert STAGE_PLANNING == "planning_benchmark"
        assert STAGE_DOSIMETRY == "complex_treatment_dosimetry_check"
        assert CASE_STAGES == (STAGE_OUTLINING, STAGE_PLANNING, STAGE_DOSIMETRY)

    @pytest.mark.parametrize(
        ("case_id", "stage", "files"),
        [
            ("lung-sabr-outlining-mini", STAGE_OUTLINING, ("CT",)),
            ("lung-sabr-planning", STAGE_PLANNING, ("CT", "RTSTRUCT")),
            ("prostate-sabr-planning", STAGE_PLANNING, ("CT", "RTSTRUCT")),
            ("srs-brain-planning", STAGE_PLANNING, ("CT", "RTSTRUCT")),
            ("lung-sabr-tps-check", STAGE_DOSIMETRY, ("CT", "RTSTRUCT", "RTPLAN")),
            ("srs-brain-tps-check", STAGE_DOSIMETRY, ("CT", "RTSTRUCT", "RTPLAN")),
        ],
    )
    def test_stage_and_distributed_files(self, case_id: str, stage: str, files: tuple[str, ...]) -> None:
        spec = get_case(case_id)
        assert spec.stage == stage
        assert spec.distributed_files == files

    def test_unknown_stage(self) -> None:
        with pytest.raises(CaseSpecError, match=r"case 'lung-sabr-planning': stage 'benchmark_case' is not one of"):
            replace(get_case("lung-sabr-planning"), stage="benchmark_case")

    def test_outlining_case_has_no_plan(self) -> None:
        plan = get_case("lung-sabr-planning").plan
        with pytest.raises(CaseSpecError, match=r"an outlining_benchmark case has no reference plan"):
            replace(get_case("lung-sabr-outlining-mini"), plan=plan)

    @pytest.mark.parametrize("case_id", ["lung-sabr-planning", "lung-sabr-tps-check"])
    def test_planning_and_dosimetry_cases_need_a_plan(self, case_id: str) -> None:
        with pytest.raises(CaseSpecError, match=r"case needs a reference plan"):
            replace(get_case(case_id), plan=None)


class TestCatalogue:
    def test_ids_unique_and_at_least_seven(self) -> None:
        ids = [spec.case_id for spec in list_cases()]
        assert len(ids) == len(set(ids)) >= 7

    def test_patient_ids_unique(self) -> None:
        patients = [spec.patient_id for spec in list_cases()]
        assert len(patients) == len(set(patients))

    def test_every_case_technique_is_its_protocols(self) -> None:
        for spec in list_cases():
            assert spec.technique in load_protocol(spec.protocol_id).techniques, spec.case_id

    def test_every_protocol_with_an_outlining_stage_has_an_outlining_case(self) -> None:
        for protocol in list_protocols():
            wants_outlining = any(r.stage == STAGE_OUTLINING for r in protocol.required_credentials)
            assert wants_outlining, protocol.id  # all five shipped protocols list an outlining benchmark
            cases = [s for s in list_cases() if s.protocol_id == protocol.id and s.stage == STAGE_OUTLINING]
            assert len(cases) >= 1, protocol.id
            for spec in cases:
                assert spec.technique in protocol.techniques

    def test_every_protocol_with_a_planning_stage_has_a_planning_case(self) -> None:
        for protocol in list_protocols():
            if any(r.stage == STAGE_PLANNING for r in protocol.required_credentials):
                stages = {s.stage for s in list_cases() if s.protocol_id == protocol.id}
                assert STAGE_PLANNING in stages, protocol.id

    @pytest.mark.parametrize("technique", ["sabr_lung", "srs_brain", "sabr_spine"])
    def test_dosimetry_case_recalculates_the_planning_reference(self, technique: str) -> None:
        by_stage = {s.stage: s for s in list_cases() if s.technique == technique}
        planning, dosimetry = by_stage[STAGE_PLANNING], by_stage[STAGE_DOSIMETRY]
        assert dosimetry.plan == planning.plan
        assert dosimetry.builder is planning.builder
        assert dosimetry.protocol_id == planning.protocol_id
        assert load_protocol(dosimetry.protocol_id).gamma is not None
        # A different case: its own patient, hence its own UIDs.
        assert dosimetry.patient_id != planning.patient_id
        assert dosimetry.uid_seed != planning.uid_seed

    def test_protocols_listing_a_dosimetry_stage_have_a_dosimetry_case(self) -> None:
        for protocol in list_protocols():
            if any(r.stage == STAGE_DOSIMETRY for r in protocol.required_credentials):
                stages = {s.stage for s in list_cases() if s.protocol_id == protocol.id}
                assert STAGE_DOSIMETRY in stages, protocol.id
