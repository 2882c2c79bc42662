"""Tests of the facility questionnaire: shipped forms and examples, answer validation errors, outcome levels, and
form-file errors naming file, field and value."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from benchmarks.questionnaires import (
    EXAMPLES_DIR,
    QUESTIONNAIRE_DIR,
    Questionnaire,
    QuestionnaireError,
    QuestionnaireEvaluation,
    QuestionnaireFileError,
    evaluate_answers,
    example_answers,
    list_questionnaires,
    load_questionnaire,
    normalise_answers,
    parse_questionnaire,
)
from qa_checks.protocol import OutcomeLevel

AS_OF = dt.date(2026, 12, 1)
"""Evaluation date of the tests: the shipped examples' end-to-end tests (2026-06-15) are 169 days old."""

PP = OutcomeLevel.PER_PROTOCOL
AV = OutcomeLevel.ACCEPTABLE_VARIATION
UV = OutcomeLevel.UNACCEPTABLE_VARIATION

TECHNIQUES_FILE = Path(__file__).resolve().parents[2] / "models" / "data" / "techniques.yaml"


def _days_before(days: int) -> str:
    return (AS_OF - dt.timedelta(days=days)).isoformat()


def _evaluate(technique: str, **changes: Any) -> QuestionnaireEvaluation:
    """Evaluate the shipped example of ``technique`` with some answers changed (``None`` removes an answer)."""
    answers = example_answers(technique)
    for qid, value in changes.items():
        if value is None:
            answers.pop(qid, None)
        else:
            answers[qid] = value
    return evaluate_answers(load_questionnaire(technique), answers, as_of=AS_OF)


class TestShippedForms:
    def test_one_form_per_technique_code(self) -> None:
        codes = {t["code"] for t in yaml.safe_load(TECHNIQUES_FILE.read_text())["techniques"]}
        forms = list_questionnaires()
        assert {f.technique for f in forms} == codes
        assert [f.form_id for f in forms] == sorted(p.stem for p in QUESTIONNAIRE_DIR.glob("*.yaml"))
        assert all(isinstance(f, Questionnaire) and f.version and f.title for f in forms)

    @pytest.mark.parametrize("technique", sorted(p.stem for p in QUESTIONNAIRE_DIR.glob("*.yaml")))
    def test_form_content(self, technique: str) -> None:
        form = load_questionnaire(technique)
        ids = form.question_ids
        assert len(set(ids)) == len(ids)
        for qid in ("lead_clinician", "lead_physicist", "lead_radiographer", "treatment_unit", "planning_system",
                    "dose_algorithm", "independent_dose_check", "end_to_end_test_date", "patients_per_year",
                    "local_qa_programme", "immobilisation_system"):  # fmt: skip
            assert qid in ids
        source_ids = {s.id for s in form.sources}
        for q in form.questions:
            if q.requirement is not None:
                assert set(q.requirement.sources) <= source_ids
                assert q.requirement.sources or (q.requirement.library_default and q.requirement.rationale)

    def test_shared_questions_are_not_copied(self) -> None:
        lung = load_questionnaire("sabr_lung")
        assert lung.include == ["core", "sabr"]
        assert lung.question("igrt_every_fraction").requirement is not None
        # The form sets a lung requirement on the shared dose-algorithm question.
        algorithm = lung.question("dose_algorithm").requirement
        assert algorithm is not None and "pencil_beam" not in (algorithm.acceptable.one_of or [])
        spine = load_questionnaire("sabr_spine").question("dose_algorithm").requirement
        assert spine is not None and "pencil_beam" in (spine.acceptable.one_of or [])

    def test_form_renders_as_json_for_a_user_interface(self) -> None:
        data = load_questionnaire("srs_brain").model_dump(mode="json")
        assert json.loads(json.dumps(data)) == data
        detector = next(q for q in data["questions"] if q["id"] == "small_field_detector")
        assert detector["type"] == "choice" and detector["only_if"]["question"] == "delivery_platform"
        assert [o["value"] for o in detector["options"]][:2] == ["stereotactic_diode", "microdiamond"]

    def test_unknown_question(self) -> None:
        with pytest.raises(KeyError, match=r"form 'sabr_lung' has no question 'colour'"):
            load_questionnaire("sabr_lung").question("colour")

    def test_unknown_technique(self) -> None:
        with pytest.raises(QuestionnaireFileError, match=r"no questionnaire for technique 'sabr_kidney'.*sabr_lung"):
            load_questionnaire("sabr_kidney")


class TestExamples:
    @pytest.mark.parametrize("technique", sorted(p.stem for p in QUESTIONNAIRE_DIR.glob("*.yaml")))
    def test_example_passes_per_protocol(self, technique: str) -> None:
        form = load_questionnaire(technique)
        evaluation = evaluate_answers(form, example_answers(technique), as_of=AS_OF)
        assert evaluation.outcome is PP
        assert evaluation.reasons == ()
        assert evaluation.form_id == technique and evaluation.form_version == form.version
        applicable = {r.question_id for r in evaluation.results}
        assert all(evaluation.result(q.id).answer is not None for q in form.questions if q.id in applicable)

    def test_every_example_has_a_form(self) -> None:
        assert sorted(p.stem for p in EXAMPLES_DIR.glob("*.json")) == sorted(
            p.stem for p in QUESTIONNAIRE_DIR.glob("*.yaml")
        )

    def test_unknown_example(self) -> None:
        with pytest.raises(QuestionnaireFileError, match=r"no example answers for technique 'nope'"):
            example_answers("nope")


class TestAnswerErrors:
    """Malformed answers: one problem per answer, naming the question id, what was expected and the value."""

    @pytest.fixture
    def lung(self) -> Questionnaire:
        return load_questionnaire("sabr_lung")

    def _raises(self, form: Questionnaire, answers: dict[str, Any], match: str) -> QuestionnaireError:
        with pytest.raises(QuestionnaireError, match=match) as info:
            evaluate_answers(form, answers, as_of=AS_OF)
        return info.value

    def test_unknown_question_id_suggests_the_close_one(self, lung: Questionnaire) -> None:
        err = self._raises(lung, {"dose_algoritm": "aaa"}, r"dose_algoritm: unknown question id; did you mean "
                           r"'dose_algorithm'\?")  # fmt: skip
        assert err.problems[0].question_id == "dose_algoritm"

    def test_unknown_question_id_lists_known_ids(self, lung: Questionnaire) -> None:
        self._raises(lung, {"colour": "red"}, r"colour: unknown question id; known ids: lead_clinician, ")

    @pytest.mark.parametrize(
        ("qid", "value", "match"),
        [
            ("igrt_every_fraction", 3, r"igrt_every_fraction: expected yes or no, got 3 \(wrong type int\)"),
            ("igrt_every_fraction", "sometimes", r"igrt_every_fraction: expected yes or no, got 'sometimes'"),
            ("dose_algorithm", 2, r"dose_algorithm: expected one of the options 'pencil_beam', .*got 2 \(wrong type"),
            ("lead_clinician", 42, r"lead_clinician: expected text, got 42 \(wrong type int\)"),
            ("dose_grid_mm", True, r"dose_grid_mm: expected a number in mm from 0.1 to 10, got True \(wrong type"),
            ("dose_grid_mm", "fine", r"dose_grid_mm: expected a number in mm from 0.1 to 10, got 'fine' \(not a "),
            ("dose_grid_mm", float("nan"), r"dose_grid_mm: .* got nan \(not a finite number\)"),
            ("end_to_end_test_date", 20260101, r"end_to_end_test_date: expected a date as YYYY-MM-DD, got 20260101 "),
            ("end_to_end_test_date", "01/06/2026", r"end_to_end_test_date: .*got '01/06/2026' \(not an ISO date\)"),
        ],
    )
    def test_wrong_type(self, lung: Questionnaire, qid: str, value: Any, match: str) -> None:
        err = self._raises(lung, {qid: value}, match)
        assert len(err.problems) == 1 and err.problems[0].question_id == qid
        assert err.problems[0].given is value or err.problems[0].given == value

    def test_number_out_of_range(self, lung: Questionnaire) -> None:
        err = self._raises(
            lung, {"mlc_leaf_width_mm": 30}, r"mlc_leaf_width_mm: expected a number in mm from 1 to 20, got 30 "
            r"\(out of range\)"
        )  # fmt: skip
        assert err.problems[0].expected == "a number in mm from 1 to 20"

    def test_not_a_whole_number(self, lung: Questionnaire) -> None:
        self._raises(
            lung, {"patients_per_year": 2.5}, r"patients_per_year: expected a whole number in patients/year from 0 to "
            r"100000, got 2.5 \(not a whole number\)"
        )  # fmt: skip

    def test_option_not_offered(self, lung: Questionnaire) -> None:
        self._raises(
            lung, {"igrt_modality": "xray"}, r"igrt_modality: expected one of the options 'cbct', 'mvct', 'mri', "
            r"'stereo_kv', 'planar', 'surface_only', got 'xray' \(option not offered\)"
        )  # fmt: skip

    def test_date_after_the_evaluation_date(self, lung: Questionnaire) -> None:
        self._raises(
            lung, {"end_to_end_test_date": "2026-12-02"}, r"end_to_end_test_date: expected a date as YYYY-MM-DD, got "
            r"'2026-12-02' \(date is after the evaluation date 2026-12-01\)"
        )  # fmt: skip

    def test_answers_not_a_mapping(self, lung: Questionnaire) -> None:
        with pytest.raises(QuestionnaireError, match=r"expected a mapping of question id to answer, got \['a'\]"):
            evaluate_answers(lung, ["a"], as_of=AS_OF)  # type: ignore[arg-type]

    def test_every_problem_is_reported(self, lung: Questionnaire) -> None:
        answers = {"colour": "red", "dose_grid_mm": "fine", "igrt_modality": "xray", "lead_clinician": "Dr A"}
        err = self._raises(lung, answers, r"^3 problems with the answers to questionnaire 'sabr_lung':\n")
        assert [p.question_id for p in err.problems] == ["colour", "dose_grid_mm", "igrt_modality"]
        assert isinstance(err, ValueError)


class TestNormalisation:
    def test_answers_are_normalised_for_storage(self) -> None:
        form = load_questionnaire("sabr_lung")
        answers = {
            "igrt_every_fraction": "Yes",
            "local_qa_programme": False,
            "igrt_modality": " CBCT ",
            "dose_grid_mm": "2.5",
            "patients_per_year": 12.0,
            "end_to_end_test_date": dt.date(2026, 3, 4),
            "lead_clinician": "  Dr A  ",
            "mlc_model": "   ",
            "planning_system": None,
        }
        assert normalise_answers(form, answers, as_of=AS_OF) == {
            "lead_clinician": "Dr A",
            "dose_grid_mm": 2.5,
            "end_to_end_test_date": "2026-03-04",
            "patients_per_year": 12,
            "local_qa_programme": False,
            "igrt_every_fraction": True,
            "igrt_modality": "cbct",
        }

    def test_evaluation_date_defaults_to_today(self) -> None:
        before = dt.date.today()
        evaluation = evaluate_answers(load_questionnaire("sabr_lung"), {})
        assert before <= evaluation.evaluated_on <= dt.date.today()
        assert evaluation.outcome is UV  # nothing answered

    def test_as_dict_is_json(self) -> None:
        evaluation = _evaluate("sabr_lung", dose_algorithm="pencil_beam")
        data = evaluation.as_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["form_id"] == "sabr_lung" and data["form_version"] == "1.0" and data["technique"] == "sabr_lung"
        assert data["outcome"] == "unacceptable_variation" and data["evaluated_on"] == "2026-12-01"
        assert data["answers"]["dose_algorithm"] == "pencil_beam" and data["answers"]["igrt_every_fraction"] is True
        row = next(r for r in data["results"] if r["question_id"] == "dose_algorithm")
        assert row["outcome"] == "unacceptable_variation" and row["reason"] == data["reasons"][0]


class TestOutcomeLevels:
    """Each level is reached by a specific answer; boundaries count as meeting a level."""

    def test_pencil_beam_is_unacceptable_for_lung(self) -> None:
        evaluation = _evaluate("sabr_lung", dose_algorithm="pencil_beam")
        assert evaluation.outcome is UV
        assert evaluation.reasons == (
            "The dose-calculation algorithm is pencil beam (type A): it overestimates the dose to lung tumours, and "
            "the protocol requires a type-B, Acuros XB or Monte Carlo algorithm for lung SABR.",
        )

    def test_pencil_beam_is_an_acceptable_variation_for_spine(self) -> None:
        evaluation = _evaluate("sabr_spine", dose_algorithm="pencil_beam")
        assert evaluation.outcome is AV
        assert evaluation.reasons[0].startswith("The dose-calculation algorithm is pencil beam (type A): the protocol ")

    def test_no_daily_image_guidance(self) -> None:
        evaluation = _evaluate("sabr_lung", igrt_every_fraction="no")
        assert evaluation.outcome is UV
        assert evaluation.reasons[0].startswith(
            "Image guidance is not used at every fraction: the protocol requires image-guided set-up"
        )

    def test_missing_required_answer(self) -> None:
        evaluation = _evaluate("sabr_lung", immobilisation_system=None)
        assert evaluation.outcome is UV
        assert evaluation.result("immobilisation_system").answer is None
        assert evaluation.reasons == (
            "The required question 'Immobilisation system used for this technique (manufacturer and product)' "
            "(immobilisation_system) was not answered.",
        )

    def test_missing_optional_answer_is_per_protocol(self) -> None:
        evaluation = _evaluate("sabr_lung", patient_specific_measurement=None, intrafraction_monitoring="")
        assert evaluation.outcome is PP
        assert evaluation.result("patient_specific_measurement").outcome is PP
        assert "intrafraction_monitoring" not in evaluation.answers

    def test_mentored_staff_is_an_acceptable_variation(self) -> None:
        evaluation = _evaluate("sabr_lung", lead_radiographer_training="mentored")
        assert evaluation.outcome is AV
        assert evaluation.reasons[0].startswith("The lead therapeutic radiographer is in training under a mentoring")
        assert _evaluate("sabr_lung", lead_radiographer_training="none").outcome is UV

    @pytest.mark.parametrize(
        ("days_old", "expected"),
        [(0, PP), (365, PP), (366, AV), (455, AV), (456, UV), (2000, UV)],
    )
    def test_end_to_end_test_age(self, days_old: int, expected: OutcomeLevel) -> None:
        evaluation = _evaluate("sabr_lung", end_to_end_test_date=_days_before(days_old))
        assert evaluation.result("end_to_end_test_date").outcome is expected
        if expected is not PP:
            assert f"({days_old} days ago)" in evaluation.reasons[0]

    @pytest.mark.parametrize(("width_mm", "expected"), [(2.5, PP), (5, PP), (5.01, AV), (10, AV), (10.5, UV)])
    def test_mlc_leaf_width(self, width_mm: float, expected: OutcomeLevel) -> None:
        assert _evaluate("sabr_lung", mlc_leaf_width_mm=width_mm).outcome is expected

    @pytest.mark.parametrize(("count", "expected"), [(10, PP), (9, AV), (0, AV)])
    def test_patients_per_year(self, count: int, expected: OutcomeLevel) -> None:
        assert _evaluate("sabr_lung", patients_per_year=count).outcome is expected

    @pytest.mark.parametrize(
        ("answer", "expected"), [("four_d_ct", PP), ("breath_hold_ct", PP), ("slow_or_paired_ct", AV), ("none", UV)]
    )
    def test_lung_motion_assessment(self, answer: str, expected: OutcomeLevel) -> None:
        assert _evaluate("sabr_lung", motion_assessment=answer).outcome is expected

    @pytest.mark.parametrize(
        ("detector", "expected"),
        [("microdiamond", PP), ("film", PP), ("micro_chamber", AV), ("standard_chamber", UV)],
    )
    def test_srs_small_field_detector(self, detector: str, expected: OutcomeLevel) -> None:
        assert _evaluate("srs_brain", small_field_detector=detector).outcome is expected

    def test_reasons_are_worst_first(self) -> None:
        evaluation = _evaluate("sabr_lung", lead_clinician_training="mentored", igrt_every_fraction=False)
        assert evaluation.outcome is UV
        assert [evaluation.result(q).outcome for q in ("lead_clinician_training", "igrt_every_fraction")] == [AV, UV]
        assert evaluation.reasons[0].startswith("Image guidance is not used")
        assert evaluation.reasons[1].startswith("The lead clinical oncologist is in training")


class TestConditionalQuestions:
    def test_gamma_knife_centre_skips_mlc_and_small_field_questions(self) -> None:
        evaluation = _evaluate(
            "srs_brain", delivery_platform="gamma_knife", mlc_model=None, mlc_leaf_width_mm=None,
            small_field_detector=None, small_field_corrections=None, gamma_knife_tg178="yes", dose_algorithm="tmr10",
        )  # fmt: skip
        assert evaluation.outcome is PP
        evaluated = {r.question_id for r in evaluation.results}
        assert "gamma_knife_tg178" in evaluated
        assert not evaluated & {"mlc_model", "mlc_leaf_width_mm", "small_field_detector"}
        with pytest.raises(KeyError, match=r"question 'mlc_model' was not evaluated"):
            evaluation.result("mlc_model")

    def test_condition_makes_its_questions_required(self) -> None:
        evaluation = _evaluate("srs_brain", delivery_platform="gamma_knife")
        assert evaluation.outcome is UV
        assert evaluation.result("gamma_knife_tg178").outcome is UV
        assert "mlc_leaf_width_mm" in evaluation.answers  # kept for the record, not judged


# --- form files ---------------------------------------------------------------------------------------------------

VALID_FORM: dict[str, Any] = {
    "technique": "sabr_test",
    "version": "1.0",
    "title": "Test form",
    "sources": [{"id": "src", "citation": "A source."}],
    "questions": [
        {"id": "platform", "text": "Platform?", "type": "choice", "required": True,
         "options": [{"value": "linac", "label": "linac"}, {"value": "gk", "label": "Gamma Knife"}]},
        {"id": "igrt", "text": "Daily IGRT?", "type": "yes_no", "required": True,
         "requirement": {"per_protocol": {"one_of": [True]}, "acceptable": {"one_of": [True]},
                         "unacceptable_reason": "No daily IGRT.", "sources": ["src"]}},
        {"id": "leaf_mm", "text": "Leaf width?", "type": "number", "unit": "mm", "min": 1, "max": 20,
         "required": True, "only_if": {"question": "platform", "one_of": ["linac"]},
         "requirement": {"per_protocol": {"max": 5}, "acceptable": {"max": 10}, "variation_reason": "Wide: {answer}.",
                         "unacceptable_reason": "Too wide: {answer}.", "library_default": True,
                         "rationale": "test"}},
    ],
}  # fmt: skip


def _write(directory: Path, data: Any, name: str = "sabr_test.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _with(path_in_data: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(base or VALID_FORM))
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path_in_data)
    target: Any = data
    for part in parts[:-1]:
        target = target[int(part[1:-1])] if part.startswith("[") else target[part]
    last = parts[-1]
    if last.startswith("["):
        target[int(last[1:-1])] = value
    else:
        target[last] = value
    return data


class TestFormFiles:
    def test_valid_form_loads_from_a_path(self, tmp_path: Path) -> None:
        form = load_questionnaire(_write(tmp_path, VALID_FORM))
        assert form.form_id == "sabr_test" and form.question_ids == ("platform", "igrt", "leaf_mm")
        evaluation = evaluate_answers(form, {"platform": "linac", "igrt": "yes", "leaf_mm": 7}, as_of=AS_OF)
        assert evaluation.outcome is AV and evaluation.reasons == ("Wide: 7 mm.",)

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("questions[1].type", "bool",
             r"questions\[1\]\.type: Input should be 'yes_no', 'choice', 'number', 'text' or 'date' \(got 'bool'\)"),
            ("questions[2].unit", None, r"questions\[2\]: unit: a number question needs a unit"),
            ("questions[0].options", [{"value": "linac", "label": "x"}],
             r"questions\[0\]: options: a choice question needs at least 2 options, got 1"),
            ("questions[1].requirement", {"per_protocol": {"one_of": ["yes"]}, "acceptable": {"one_of": ["yes"]},
                                          "unacceptable_reason": "x", "sources": ["src"]},
             r"questions\[1\]: requirement\.per_protocol\.one_of: 'yes' is not true/false"),
            ("questions[2].requirement.acceptable.max", 4,
             r"questions\[2\]: requirement: acceptable range \[None, 4\.0\] must contain the per_protocol range"),
            ("questions[2].requirement.variation_reason", "",
             r"questions\[2\]\.requirement: variation_reason is required when the acceptable level differs"),
            ("questions[2].requirement.unacceptable_reason", "Too wide: {width}.",
             r"questions\[2\]\.requirement: unacceptable_reason: unknown placeholder\(s\) \['width'\]"),
            ("questions[2].requirement.library_default", False,
             r"questions\[2\]\.requirement: a requirement needs sources, or library_default: true with a rationale"),
            ("questions[1].id", "Daily IGRT",
             r"questions\[1\]\.id: String should match pattern .* \(got 'Daily IGRT'\)"),
            ("questions[1].required", "maybe",
             r"questions\[1\]\.required: Input should be a valid boolean.*\(got 'maybe'\)"),
            ("questions[1].colour", "red", r"questions\[1\]\.colour: Extra inputs are not permitted \(got 'red'\)"),
            ("version", None, r"version: Input should be a valid string \(got None\)"),
        ],
    )  # fmt: skip
    def test_error_names_file_field_and_value(self, tmp_path: Path, field: str, value: Any, message: str) -> None:
        path = _write(tmp_path, _with(field, value))
        with pytest.raises(QuestionnaireFileError, match=re.escape(str(path)) + r": " + message):
            load_questionnaire(path)

    def test_cross_question_errors(self, tmp_path: Path) -> None:
        data = _with("questions[1].id", "platform")
        data = _with("questions[2].only_if.question", "later", data)
        data = _with("questions[1].requirement.sources", ["nowhere"], data)
        path = _write(tmp_path, data)
        with pytest.raises(QuestionnaireFileError) as info:
            load_questionnaire(path)
        lines = str(info.value).splitlines()
        assert lines[0] == f"{path}: questions[1].id: duplicate question id 'platform' (also in {path}: questions[0])"
        assert lines[1] == f"{path}: questions[1].requirement.sources: 'nowhere' is not a source id of the form (src)"
        assert lines[2] == f"{path}: questions[2].only_if.question: 'later' is not an earlier question of the form"

    def test_condition_value_must_be_an_option(self, tmp_path: Path) -> None:
        path = _write(tmp_path, _with("questions[2].only_if.one_of", ["cyberknife"]))
        with pytest.raises(QuestionnaireFileError, match=r"questions\[2\]\.only_if\.one_of: 'cyberknife' is not an "):
            load_questionnaire(path)

    def test_technique_must_match_file_name(self, tmp_path: Path) -> None:
        path = _write(tmp_path, VALID_FORM, name="sabr_other.yaml")
        with pytest.raises(QuestionnaireFileError, match=r"sabr_other\.yaml: technique: 'sabr_test' does not match"):
            load_questionnaire(path)

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        path = tmp_path / "sabr_test.yaml"
        path.write_text("technique: [unclosed\n", encoding="utf-8")
        with pytest.raises(QuestionnaireFileError, match=re.escape(str(path)) + r": invalid YAML at line \d+"):
            load_questionnaire(path)

    def test_not_a_mapping(self) -> None:
        with pytest.raises(QuestionnaireFileError, match=r"^inline: <top level>: expected a mapping of fields, got "):
            parse_questionnaire(["questions"], source="inline")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(QuestionnaireFileError, match=r"missing\.yaml: questionnaire file not found"):
            load_questionnaire(tmp_path / "missing.yaml")


class TestSharedParts:
    PART: ClassVar[dict[str, Any]] = {
        "sources": [{"id": "shared-src", "citation": "Shared source."}],
        "questions": [
            {"id": "algorithm", "text": "Algorithm?", "type": "choice", "required": True,
             "options": [{"value": "pb", "label": "pencil beam"}, {"value": "mc", "label": "Monte Carlo"}]},
        ],
    }  # fmt: skip

    def _form(self, **extra: Any) -> dict[str, Any]:
        return {"technique": "sabr_test", "version": "2", "title": "T", "include": ["base"], **extra}

    def test_included_questions_come_first_and_take_form_requirements(self, tmp_path: Path) -> None:
        _write(tmp_path / "shared", self.PART, name="base.yaml")
        requirement = {"per_protocol": {"one_of": ["mc"]}, "acceptable": {"one_of": ["mc"]},
                       "unacceptable_reason": "Algorithm {answer} not allowed.", "sources": ["shared-src"]}  # fmt: skip
        form = load_questionnaire(_write(tmp_path, self._form(requirements={"algorithm": requirement})))
        assert form.question_ids == ("algorithm",)
        evaluation = evaluate_answers(form, {"algorithm": "pb"}, as_of=AS_OF)
        assert evaluation.outcome is UV and evaluation.reasons == ("Algorithm pencil beam not allowed.",)

    def test_error_in_a_shared_part_names_that_file(self, tmp_path: Path) -> None:
        shared = _write(tmp_path / "shared", _with("questions[0].type", "pick", self.PART), name="base.yaml")
        path = _write(tmp_path, self._form())
        with pytest.raises(QuestionnaireFileError, match=re.escape(str(shared)) + r": questions\[0\]\.type: .*'pick'"):
            load_questionnaire(path)

    def test_override_is_checked_against_the_question(self, tmp_path: Path) -> None:
        _write(tmp_path / "shared", self.PART, name="base.yaml")
        requirement = {"per_protocol": {"max": 5}, "acceptable": {"max": 5}, "unacceptable_reason": "x",
                       "sources": ["shared-src"]}  # fmt: skip
        path = _write(tmp_path, self._form(requirements={"algorithm": requirement}))
        with pytest.raises(QuestionnaireFileError, match=r"sabr_test\.yaml: requirements\.algorithm: requirement\."
                           r"per_protocol: \['max'\] do not apply to a choice question"):  # fmt: skip
            load_questionnaire(path)

    def test_override_of_unknown_question(self, tmp_path: Path) -> None:
        _write(tmp_path / "shared", self.PART, name="base.yaml")
        requirement = {"per_protocol": {"one_of": ["mc"]}, "acceptable": {"one_of": ["mc"]}, "unacceptable_reason": "x",
                       "sources": ["shared-src"]}  # fmt: skip
        path = _write(tmp_path, self._form(requirements={"nothing": requirement}))
        with pytest.raises(QuestionnaireFileError, match=r"requirements\.nothing: no question 'nothing' in the form"):
            load_questionnaire(path)

    def test_unknown_part(self, tmp_path: Path) -> None:
        _write(tmp_path / "shared", self.PART, name="base.yaml")
        path = _write(tmp_path, self._form(include=["base", "extra"]))
        with pytest.raises(QuestionnaireFileError, match=r"include\[1\]: no shared part 'extra' .*known parts: base"):
            load_questionnaire(path)

    def test_duplicate_question_across_files(self, tmp_path: Path) -> None:
        shared = _write(tmp_path / "shared", self.PART, name="base.yaml")
        own = [{"id": "algorithm", "text": "Again?", "type": "text", "required": False}]
        path = _write(tmp_path, self._form(questions=own))
        with pytest.raises(QuestionnaireFileError, match=re.escape(f"{path}: questions[0].id: duplicate question id "
                           f"'algorithm' (also in {shared}: questions[0])")):  # fmt: skip
            load_questionnaire(path)

    def test_conflicting_source_definitions(self, tmp_path: Path) -> None:
        _write(tmp_path / "shared", self.PART, name="base.yaml")
        path = _write(tmp_path, self._form(sources=[{"id": "shared-src", "citation": "Different."}]))
        with pytest.raises(QuestionnaireFileError, match=r"sources: source id 'shared-src' is already defined "):
            load_questionnaire(path)
