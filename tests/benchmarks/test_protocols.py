"""Tests of benchmarks.protocols: shipped protocol files and validation errors naming file, field and value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.protocols import PROTOCOL_DIR, Protocol, ProtocolError, list_protocols, load_protocol, parse_protocol
from qa_checks.protocol import Criterion, OutcomeLevel, evaluate
from tests.benchmarks.protocol_files import replaced, write_protocol

VALID: dict[str, Any] = {
    "id": "test-protocol",
    "version": "1.0",
    "title": "Test protocol",
    "techniques": ["sabr_lung"],
    "fractionations": [{"dose_gy": 54, "fractions": 3}],
    "required_structures": ["PTV", "GTV", "SpinalCord"],
    "outlining": {
        "criteria": [
            {"id": "dice_ptv", "structure": "PTV", "metric": "dice", "direction": ">=", "per_protocol": 0.85,
             "acceptable": 0.75},
            {"id": "dice_gtv", "structure": "GTV", "metric": "dice", "direction": ">=", "per_protocol": 0.8,
             "acceptable": 0.7},
            {"id": "hd95_cord", "structure": "SpinalCord", "metric": "hd95_mm", "direction": "<=",
             "per_protocol": 2.0, "acceptable": 3.0},
        ]
    },
    "required_credentials": [{"stage": "outlining_benchmark", "technique": "sabr_lung"}],
}  # fmt: skip


def _with(path_in_data: str, value: Any) -> dict[str, Any]:
    return replaced(VALID, path_in_data, value)


class TestShippedProtocols:
    def test_all_load(self) -> None:
        protocols = list_protocols()
        assert [p.id for p in protocols] == sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml"))
        assert all(isinstance(p, Protocol) for p in protocols)

    def test_uk_lung_sabr(self) -> None:
        p = load_protocol("uk-lung-sabr")
        assert p.techniques == ["sabr_lung"]
        assert [(f.dose_gy, f.fractions) for f in p.fractionations] == [(54, 3), (55, 5), (60, 8)]
        assert p.fractionations[0].dose_per_fraction_gy == 18.0
        criteria = p.outlining_criteria()
        assert {c.structure for c in criteria} >= {"GTV", "PTV", "SpinalCord", "Lung_L", "Lung_R", "Heart"}
        assert all(isinstance(c, Criterion) and c.metric == "dice" for c in criteria)
        assert all(c.acceptable <= c.per_protocol for c in criteria)

    def test_criteria_drive_evaluate(self) -> None:
        criteria = load_protocol("uk-lung-sabr").outlining_criteria()
        perfect = {c.key: 1.0 for c in criteria}
        assert evaluate(criteria, perfect).outcome is OutcomeLevel.PER_PROTOCOL
        ptv = next(c for c in criteria if c.structure == "PTV")
        worse = perfect | {ptv.key: ptv.acceptable}  # exactly at the acceptable level
        assert evaluate(criteria, worse).outcome is OutcomeLevel.ACCEPTABLE_VARIATION

    def test_all_shipped_ids(self) -> None:
        assert {p.id for p in list_protocols()} >= {
            "uk-lung-sabr",
            "spine-sabr",
            "prostate-sabr",
            "oligomets-sabr",
            "srs-brain",
        }

    def test_prostate_pace_b(self) -> None:
        p = load_protocol("prostate-sabr")
        assert [(f.dose_gy, f.fractions) for f in p.fractionations] == [(36.25, 5)]
        assert p.fractionations[0].dose_per_fraction_gy == 7.25

    def test_spine_single_fraction_range(self) -> None:
        single = load_protocol("spine-sabr").fractionations[0]
        assert (single.dose_gy, single.dose_max_gy, single.fractions) == (16, 20, 1)

    @pytest.mark.parametrize(
        ("diameter_mm", "doses_gy"),
        [(5.0, [24.0]), (20.0, [24.0]), (20.1, [18.0]), (30.0, [18.0]), (30.1, [15.0]), (40.0, [15.0]), (41.0, [])],
    )
    def test_srs_dose_by_size(self, diameter_mm: float, doses_gy: list[float]) -> None:
        # RTOG 90-05: 24 Gy <= 2 cm, 18 Gy 2.1-3 cm, 15 Gy 3.1-4 cm; a band includes its upper bound.
        p = load_protocol("srs-brain")
        assert [f.dose_gy for f in p.fractionations_for_diameter(diameter_mm)] == doses_gy

    def test_load_by_path(self) -> None:
        assert load_protocol(PROTOCOL_DIR / "uk-lung-sabr.yaml").id == "uk-lung-sabr"

    def test_technique_codes_match_the_registry(self) -> None:
        registry = Path(__file__).resolve().parents[2] / "models" / "data" / "techniques.yaml"
        if not registry.is_file():
            pytest.skip("technique registry not present")
        codes = {t["code"] for t in yaml.safe_load(registry.read_text())["techniques"]}
        for p in list_protocols():
            assert set(p.techniques) <= codes, p.id
            assert {r.technique for r in p.required_credentials} <= codes, p.id


class TestValidation:
    def test_valid(self, tmp_path: Path) -> None:
        p = load_protocol(write_protocol(tmp_path, VALID))
        assert p.outlining_criteria()[2].unit == "mm"  # default unit from the metric

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("outlining.criteria[2].per_protocol", "high",
             r"outlining\.criteria\[2\]\.per_protocol: Input should be a valid number.*\(got 'high'\)"),
            ("outlining.criteria[0].direction", ">",
             r"outlining\.criteria\[0\]\.direction: Input should be '>=' or '<=' \(got '>'\)"),
            ("outlining.criteria[1].metric", "overlap",
             r"outlining\.criteria\[1\]\.metric: unknown metric 'overlap'; known metrics: centroid_distance_mm"),
            ("outlining.criteria[0].acceptable", 0.9,
             r"outlining\.criteria\[0\]: acceptable level 0\.9 is stricter than per_protocol 0\.85"),
            ("outlining.criteria[2].unit", "cm",
             r"outlining\.criteria\[2\]: unit 'cm' does not match metric 'hd95_mm'"),
            ("outlining.criteria[1].structure", "Liver",
             r"outlining\.criteria\[1\]\.structure: 'Liver' is not in required_structures"),
            ("fractionations[0].fractions", 0,
             r"fractionations\[0\]\.fractions: Input should be greater than or equal to 1 \(got 0\)"),
            ("required_structures", ["PTV", "Spinal Cord"],
             r"required_structures: \[1\] 'Spinal Cord' is not a TG-263 name"),
            ("required_credentials[0].stage", "audit",
             r"required_credentials\[0\]\.stage: Input should be 'facility_questionnaire'.*\(got 'audit'\)"),
            ("fractionations[0]", {"dose_gy": 20, "dose_max_gy": 16, "fractions": 1},
             r"fractionations\[0\]: dose_max_gy 16\.0 must exceed dose_gy 20\.0"),
            ("fractionations[0]", {"dose_gy": 20, "fractions": 1, "min_target_diameter_mm": 30,
                                   "max_target_diameter_mm": 20},
             r"fractionations\[0\]: max_target_diameter_mm 20\.0 must exceed min_target_diameter_mm 30\.0"),
            ("id", "Bad Id", r"id: String should match pattern"),
            ("techniques", [], r"techniques: List should have at least 1 item"),
        ],
    )  # fmt: skip
    def test_bad_field(self, tmp_path: Path, field: str, value: Any, message: str) -> None:
        path = write_protocol(tmp_path, _with(field, value))
        with pytest.raises(ProtocolError, match=re.escape(str(path)) + r": " + message):
            load_protocol(path)

    def test_unknown_field(self, tmp_path: Path) -> None:
        path = write_protocol(tmp_path, VALID | {"colour": "blue"})
        with pytest.raises(ProtocolError, match=re.escape(str(path)) + r": colour: Extra inputs are not permitted"):
            load_protocol(path)

    def test_missing_field(self, tmp_path: Path) -> None:
        data = {k: v for k, v in VALID.items() if k != "title"}
        with pytest.raises(ProtocolError, match=r"test-protocol\.yaml: title: Field required"):
            load_protocol(write_protocol(tmp_path, data))

    def test_duplicate_criterion_id(self, tmp_path: Path) -> None:
        data = _with("outlining.criteria[1].id", "dice_ptv")
        with pytest.raises(ProtocolError, match=r"outlining\.criteria\[1\]\.id: duplicate criterion id 'dice_ptv'"):
            load_protocol(write_protocol(tmp_path, data))

    def test_several_errors_reported_together(self, tmp_path: Path) -> None:
        data = _with("outlining.criteria[0].per_protocol", "x")
        data["version"] = ""
        with pytest.raises(ProtocolError) as info:
            load_protocol(write_protocol(tmp_path, data))
        lines = str(info.value).splitlines()
        assert len(lines) == 2
        assert all(line.startswith(str(tmp_path / "test-protocol.yaml")) for line in lines)

    def test_invalid_yaml_names_line(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.yaml"
        path.write_text("id: broken\ntitle: [unclosed\n", encoding="utf-8")
        with pytest.raises(ProtocolError, match=re.escape(str(path)) + r": invalid YAML at line \d+, column \d+"):
            load_protocol(path)

    def test_not_a_mapping(self, tmp_path: Path) -> None:
        path = write_protocol(tmp_path, ["a", "b"])
        with pytest.raises(ProtocolError, match=r"test-protocol\.yaml: <top level>: expected a mapping.*got list"):
            load_protocol(path)

    def test_id_must_match_file_name(self, tmp_path: Path) -> None:
        path = write_protocol(tmp_path, VALID, name="other-name.yaml")
        with pytest.raises(ProtocolError, match=r"other-name\.yaml: id: 'test-protocol' does not match the file name"):
            load_protocol(path)

    def test_unknown_id_lists_known(self) -> None:
        with pytest.raises(ProtocolError, match=r"unknown protocol id 'nope'; known protocols: .*uk-lung-sabr"):
            load_protocol("nope")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ProtocolError, match=r"missing\.yaml: protocol file not found"):
            load_protocol(tmp_path / "missing.yaml")

    def test_parse_protocol_source_name(self) -> None:
        with pytest.raises(ProtocolError, match=r"^inline: fractionations: Field required"):
            parse_protocol({k: v for k, v in VALID.items() if k != "fractionations"}, source="inline")
