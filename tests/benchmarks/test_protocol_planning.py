"""Tests of the typed planning and gamma sections of protocol files (benchmarks.protocols)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.protocols import (
    GAMMA_METRIC,
    GAMMA_STRUCTURE,
    PLAN_INDEX_METRICS,
    ProtocolError,
    dvh_metric_unit,
    list_protocols,
    load_protocol,
)
from qa_checks.gamma import gamma_3d
from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import RTOG_CONFORMITY_TABLE, PlanIndices, rtog_conformity_limits
from qa_checks.protocol import OutcomeLevel, evaluate
from tests.benchmarks.protocol_files import replaced, write_protocol

VALID: dict[str, Any] = {
    "id": "test-protocol",
    "version": "1.0",
    "title": "Test protocol",
    "techniques": ["sabr_lung"],
    "fractionations": [{"dose_gy": 54, "fractions": 3}, {"dose_gy": 55, "fractions": 5}],
    "required_structures": ["PTV", "SpinalCord", "Lung_L", "Lung_R"],
    "planning": {
        "prescription": {
            "target": "PTV",
            "coverage": {"structure": "PTV", "metric": "V100%", "per_protocol": 95, "acceptable": 90},
            "max_dose_percent": {"per_protocol": 140, "acceptable": 167},
        },
        "conformity": {
            "r100_max": {"per_protocol": 1.2, "acceptable": 1.5},
            "by_ptv_cc": [
                {"ptv_cc": 1.8, "r50": {"per_protocol": 5.9, "acceptable": 7.5},
                 "d2cm_percent": {"per_protocol": 50, "acceptable": 57}},
                {"ptv_cc": 3.8, "r50": {"per_protocol": 5.5, "acceptable": 6.5},
                 "d2cm_percent": {"per_protocol": 50, "acceptable": 57}},
            ],
        },
        "composite_structures": {"Lungs": ["Lung_L", "Lung_R"]},
        "oar_limits": [
            {"structure": "SpinalCord", "metric": "D0.35cc", "fractions": 3, "optimal": 18, "mandatory": 18},
            {"structure": "Lungs", "metric": "V20Gy%", "fractions": 3, "optimal": 10, "mandatory": 15},
        ],
    },
    "gamma": {"dose_percent": 3, "distance_mm": 2, "normalisation": "global", "low_dose_threshold_percent": 10,
              "pass_rate_percent": {"per_protocol": 95, "acceptable": 90}},
}  # fmt: skip


def _with(path_in_data: str, value: Any) -> dict[str, Any]:
    return replaced(VALID, path_in_data, value)


class TestShippedPlanning:
    def test_every_protocol_loads_with_typed_sections(self) -> None:
        protocols = {p.id: p for p in list_protocols()}
        assert len(protocols) == 5
        for p in protocols.values():
            assert p.gamma is not None, p.id
        for pid in ("uk-lung-sabr", "spine-sabr", "prostate-sabr", "srs-brain"):
            assert protocols[pid].planning is not None, pid

    def test_prostate_table_is_unverified_and_warned(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING, logger="benchmarks.protocols"):
            prostate = load_protocol("prostate-sabr")
        assert prostate.planning_verified is False
        assert any("verified: false" in r.getMessage() and "prostate-sabr" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="benchmarks.protocols"):
            lung = load_protocol("uk-lung-sabr")
        assert lung.planning_verified is True
        assert not caplog.records

    def test_prostate_numbers_kept(self) -> None:
        criteria = {c.key: c for c in load_protocol("prostate-sabr").planning_criteria(fractions=5, ptv_volume_cc=None)}
        rectum, bladder = criteria[("Rectum", "V24Gy%")], criteria[("Bladder", "V39Gy")]
        assert (rectum.per_protocol, rectum.acceptable, rectum.unit) == (35, 40, "%")
        assert (bladder.per_protocol, bladder.acceptable, bladder.unit) == (8, 12, "cc")

    @pytest.mark.parametrize(
        ("protocol_id", "fractions", "expected"),
        [
            # AAPM TG-101 (DOMAIN table): spinal cord 0.35 cc / max point, 1.2 cc; brainstem 0.5 cc; optic pathway.
            ("spine-sabr", 1, {("SpinalCord", "D0.35cc"): 10.0, ("SpinalCord", "D1.2cc"): 7.0,
                               ("SpinalCord", "D0.035cc"): 14.0}),
            ("spine-sabr", 3, {("SpinalCord", "D0.35cc"): 18.0, ("SpinalCord", "D1.2cc"): 12.3,
                               ("SpinalCord", "D0.035cc"): 21.9}),
            ("uk-lung-sabr", 5, {("SpinalCord", "D0.35cc"): 23.0, ("SpinalCord", "D0.035cc"): 30.0,
                                 ("Lungs", "V20Gy%"): 10.0}),
            ("srs-brain", 1, {("Brainstem", "D0.5cc"): 10.0, ("Brainstem", "D0.035cc"): 15.0,
                              ("OpticChiasm", "D0.2cc"): 8.0, ("OpticChiasm", "D0.035cc"): 10.0}),
        ],
    )  # fmt: skip
    def test_oar_limits_for_fraction_number(
        self, protocol_id: str, fractions: int, expected: dict[tuple[str, str], float]
    ) -> None:
        criteria = load_protocol(protocol_id).planning_criteria(fractions=fractions, ptv_volume_cc=20.0)
        oar = {c.key: c.per_protocol for c in criteria if c.id.startswith("oar_")}
        assert oar == expected

    def test_metric_names_are_pipeline_keys(self) -> None:
        index_fields = set(PlanIndices.__dataclass_fields__)
        for p in list_protocols():
            if p.planning is None:
                continue
            for n in sorted({limit.fractions for limit in p.planning.oar_limits}):
                for c in p.planning_criteria(fractions=n, ptv_volume_cc=20.0):
                    if c.id.startswith("oar_"):
                        dvh_metric_unit(c.metric)  # raises for a name qa_checks.dvh does not parse
                    elif c.id.startswith("coverage_"):  # an additional coverage check: a DVH dose metric, in Gy
                        assert dvh_metric_unit(c.metric) == c.unit == "Gy", (p.id, c)
                    else:
                        assert c.metric in PLAN_INDEX_METRICS, (p.id, c)
                        assert PLAN_INDEX_METRICS[c.metric][0] in index_fields, (p.id, c)

    def test_no_limits_for_fraction_number(self) -> None:
        # A protocol without a planning section; lung allows 8 fractions: only V20Gy applies.
        without = load_protocol("oligomets-sabr").model_copy(update={"planning": None})
        with pytest.raises(ProtocolError, match=r"protocol 'oligomets-sabr' has no planning section"):
            without.planning_criteria(fractions=5, ptv_volume_cc=10.0)
        with pytest.raises(ProtocolError, match=r"'uk-lung-sabr': 4 fractions is not one of its fractionations"):
            load_protocol("uk-lung-sabr").planning_criteria(fractions=4, ptv_volume_cc=10.0)
        with pytest.raises(ProtocolError, match=r"'srs-brain': 3 fractions is not one of its fractionations \[1\]"):
            load_protocol("srs-brain").planning_criteria(fractions=3, ptv_volume_cc=10.0)
        eight = load_protocol("uk-lung-sabr").planning_criteria(fractions=8, ptv_volume_cc=10.0)
        assert [c.key for c in eight if c.id.startswith("oar_")] == [("Lungs", "V20Gy%")]

    def test_fraction_without_limits_is_an_error(self, tmp_path: Path) -> None:
        p = load_protocol(write_protocol(tmp_path, VALID))
        with pytest.raises(ProtocolError, match=r"no limits for 5 fractions \(limits exist for 3 fractions\)"):
            p.planning_criteria(fractions=5, ptv_volume_cc=2.0)

    def test_conformity_table_needs_volume(self) -> None:
        with pytest.raises(ProtocolError, match=r"needs the PTV volume \(ptv_volume_cc\), got None"):
            load_protocol("uk-lung-sabr").planning_criteria(fractions=3, ptv_volume_cc=None)


class TestConformityInterpolation:
    @pytest.mark.parametrize(
        "ptv_cc",
        # every row, between rows, and outside the table on both sides (nearest row, clamped)
        [row[0] for row in RTOG_CONFORMITY_TABLE] + [2.5, 10.0, 20.35, 28.0, 100.0, 150.0, 1.0, 200.0],
    )
    def test_lung_table_matches_qa_checks(self, ptv_cc: float) -> None:
        ours = load_protocol("uk-lung-sabr").conformity_limits(ptv_cc)
        reference = rtog_conformity_limits(ptv_cc)
        # The same table and the same linear interpolation: identical up to float round-off (1e-12).
        for name in ("r50_no_deviation", "r50_minor_deviation", "d2cm_no_deviation_percent",
                     "d2cm_minor_deviation_percent", "r100_no_deviation", "r100_minor_deviation"):  # fmt: skip
            assert getattr(ours, name) == pytest.approx(getattr(reference, name), rel=1e-12, abs=0), name
        assert ours.clamped == reference.clamped

    def test_criteria_carry_interpolated_levels(self) -> None:
        # 22 cc -> 34 cc row, a quarter of the way: R50 4.5 + 0.25 (4.3 - 4.5) = 4.45; minor 5.5 - 0.05 = 5.45;
        # D2cm 54 + 1 = 55 %, minor 63 + 1.25 = 64.25 %.
        criteria = {c.id: c for c in load_protocol("uk-lung-sabr").planning_criteria(fractions=3, ptv_volume_cc=25.0)}
        assert (criteria["r50"].per_protocol, criteria["r50"].acceptable) == pytest.approx((4.45, 5.45), abs=1e-12)
        assert (criteria["d2cm"].per_protocol, criteria["d2cm"].acceptable) == pytest.approx((55.0, 64.25), abs=1e-12)
        assert (criteria["r100"].per_protocol, criteria["r100"].acceptable) == (1.2, 1.5)
        assert criteria["d2cm"].metric == "D2cm%" and criteria["d2cm"].unit == "%"

    def test_no_table(self) -> None:
        with pytest.raises(ProtocolError, match=r"'srs-brain': planning.conformity has no by_ptv_cc table"):
            load_protocol("srs-brain").conformity_limits(3.0)


class TestCoverageAndMaxDose:
    def test_v100_is_plan_index(self) -> None:
        criteria = {c.id: c for c in load_protocol("uk-lung-sabr").planning_criteria(fractions=3, ptv_volume_cc=20.0)}
        cov, hot = criteria["coverage"], criteria["max_dose"]
        assert (cov.key, cov.direction, cov.per_protocol, cov.acceptable) == (("PTV", "V100%"), ">=",
                                                                              95, 90)  # fmt: skip
        # max_dose_percent 140 / 167 % of prescription -> Dmax% (Dmax in % of the prescription) 140 / 167
        assert (hot.key, hot.direction, hot.unit) == (("PTV", "Dmax%"), "<=", "%")
        assert (hot.per_protocol, hot.acceptable) == pytest.approx((140.0, 167.0), abs=1e-12)

    def test_second_target_named_and_suffixed(self) -> None:
        p = load_protocol("srs-brain")
        second = {c.id: c for c in p.planning_criteria(fractions=1, ptv_volume_cc=9.0, target="PTV_2")}
        assert second["coverage@PTV_2"].key == ("PTV_2", "V100%")
        assert second["r100@PTV_2"].key == ("PTV_2", "R100%")
        assert "oar_brainstem_d0_5cc_1fx" in second
        alone = p.planning_criteria(fractions=1, ptv_volume_cc=9.0, target="PTV_2", include_oars=False)
        assert all(c.structure == "PTV_2" for c in alone)

    def test_dose_coverage_metric_in_gy(self, tmp_path: Path) -> None:
        data = _with("planning.prescription.coverage", {"structure": "PTV", "metric": "D95%", "per_protocol": 100,
                                                        "acceptable": 95})  # fmt: skip
        p = load_protocol(write_protocol(tmp_path, data))
        cov = p.planning_criteria(fractions=3, ptv_volume_cc=2.0)[0]
        # levels in % of the 54 Gy prescription of the 3-fraction schedule
        assert (cov.key, cov.unit) == (("PTV", "D95%"), "Gy")
        assert (cov.per_protocol, cov.acceptable) == pytest.approx((54.0, 51.3), abs=1e-9)
        assert p.planning_criteria(fractions=3, ptv_volume_cc=2.0, prescription_gy=50)[0].per_protocol == 50.0


class TestSourceNotes:
    def test_unverified_numbers_say_what_could_not_be_verified(self) -> None:
        prostate = load_protocol("prostate-sabr").planning
        lung = load_protocol("uk-lung-sabr").planning
        assert prostate is not None and lung is not None
        assert prostate.verified is False and "PACE" in prostate.notes and "not confirmed" in prostate.notes
        assert "TG-101" in lung.notes and "could not be retrieved" in lung.notes
        # The UK consensus numbers are not invented: the cord limits are still TG-101's, with TG-101 as source.
        cord = [limit for limit in lung.oar_limits if limit.structure == "SpinalCord"]
        assert cord and all(limit.source == "AAPM TG-101" for limit in cord)


class TestLowerBounds:
    """Lower levels next to upper ones: maximum dose (UK SABR 110-140 %), R100% (RTOG 90-05 PITV 1.0-2.0) and a
    second coverage check (D99%)."""

    def test_lung_max_dose_bounded_both_sides(self) -> None:
        criteria = {c.id: c for c in load_protocol("uk-lung-sabr").planning_criteria(fractions=5, ptv_volume_cc=20.0)}
        low, high = criteria["max_dose_min"], criteria["max_dose"]
        assert (low.key, low.direction, low.unit, low.per_protocol, low.acceptable) == (
            ("PTV", "Dmax%"), ">=", "%", 110, 100)  # fmt: skip
        assert (high.key, high.direction, high.per_protocol, high.acceptable) == (("PTV", "Dmax%"), "<=", 140, 167)
        # Dmax 105 % of the prescription: above the acceptable floor, below 110 %: acceptable variation.
        outcomes = [evaluate([low, high], {low.key: v}).outcome for v in (125.0, 105.0, 95.0, 150.0, 170.0)]
        assert outcomes == [OutcomeLevel.PER_PROTOCOL, OutcomeLevel.ACCEPTABLE_VARIATION,
                            OutcomeLevel.UNACCEPTABLE_VARIATION, OutcomeLevel.ACCEPTABLE_VARIATION,
                            OutcomeLevel.UNACCEPTABLE_VARIATION]  # fmt: skip

    @pytest.mark.parametrize(("fractions", "dose_gy"), [(3, 54.0), (5, 55.0), (8, 60.0)])
    def test_lung_d99_coverage_in_gy(self, fractions: int, dose_gy: float) -> None:
        criteria = load_protocol("uk-lung-sabr").planning_criteria(fractions=fractions, ptv_volume_cc=20.0)
        ids = [c.id for c in criteria]
        assert ids[:4] == ["coverage", "coverage_d99", "max_dose", "max_dose_min"]
        d99 = criteria[1]
        # 90 % / 85 % of the schedule's prescription, in Gy, on the DVH metric D99% of the PTV
        assert (d99.key, d99.direction, d99.unit) == (("PTV", "D99%"), ">=", "Gy")
        assert (d99.per_protocol, d99.acceptable) == pytest.approx((0.90 * dose_gy, 0.85 * dose_gy), abs=1e-9)
        assert criteria[0].key == ("PTV", "V100%")  # the main coverage check keeps its id and metric

    def test_srs_r100_bounded_both_sides(self) -> None:
        criteria = {c.id: c for c in load_protocol("srs-brain").planning_criteria(fractions=1, ptv_volume_cc=3.0)}
        low, high = criteria["r100_min"], criteria["r100"]
        assert (low.key, low.direction, low.unit, low.per_protocol, low.acceptable) == (
            ("PTV", "R100%"), ">=", "1", 1.0, 0.9)  # fmt: skip
        assert (high.direction, high.per_protocol, high.acceptable) == ("<=", 2.0, 2.5)
        # RTOG 90-05 PITV bands: 1.0-2.0 per protocol, 0.9-1.0 and 2.0-2.5 minor, outside major.
        outcomes = [evaluate([low, high], {low.key: v}).outcome for v in (1.5, 0.95, 0.85, 2.2, 2.6)]
        assert outcomes == [OutcomeLevel.PER_PROTOCOL, OutcomeLevel.ACCEPTABLE_VARIATION,
                            OutcomeLevel.UNACCEPTABLE_VARIATION, OutcomeLevel.ACCEPTABLE_VARIATION,
                            OutcomeLevel.UNACCEPTABLE_VARIATION]  # fmt: skip

    def test_second_target_ids_suffixed(self) -> None:
        srs = load_protocol("srs-brain")
        ids = [c.id for c in srs.planning_criteria(fractions=1, ptv_volume_cc=3.0, target="PTV_2", include_oars=False)]
        assert ids == ["coverage@PTV_2", "max_dose@PTV_2", "r100@PTV_2", "r100_min@PTV_2"]
        lung = load_protocol("uk-lung-sabr").planning_criteria(fractions=3, ptv_volume_cc=20.0, target="PTV_2",
                                                               include_oars=False)  # fmt: skip
        assert [c.id for c in lung][:4] == ["coverage@PTV_2", "coverage_d99@PTV_2", "max_dose@PTV_2",
                                            "max_dose_min@PTV_2"]  # fmt: skip
        assert {c.structure for c in lung} == {"PTV_2"}

    def test_additional_coverage_ids(self, tmp_path: Path) -> None:
        extra = [{"structure": "PTV", "metric": "D99.5%", "per_protocol": 90, "acceptable": 85}]
        p = load_protocol(write_protocol(tmp_path, _with("planning.prescription.additional_coverage", extra)))
        ids = [c.id for c in p.planning_criteria(fractions=3, ptv_volume_cc=2.0)]
        assert ids[:3] == ["coverage", "coverage_d99_5", "max_dose"]


class TestGammaSection:
    def test_criterion_and_parameters(self) -> None:
        p = load_protocol("spine-sabr")
        c = p.gamma_criterion()
        assert (c.key, c.direction, c.per_protocol, c.acceptable, c.unit) == (
            (GAMMA_STRUCTURE, GAMMA_METRIC), ">=", 95, 90, "%")  # fmt: skip
        assert p.gamma_parameters() == {"dose_percent": 3, "distance_mm": 1, "lower_cutoff_percent": 10,
                                         "local": False}  # fmt: skip

    def test_parameters_drive_gamma_3d(self) -> None:
        # A ramp of 2 Gy/mm along x (maximum 68 Gy on the reference grid, so 3% is 2.04 Gy = 1.02 mm of ramp)
        # and the same ramp moved by 1.8 mm. 3%/2 mm: the matching dose is 1.8 mm away, gamma 0.9, every point
        # passes. 3%/1 mm: the best compromise point gives gamma about 1.26, every point fails. The evaluated
        # grid extends 5 mm beyond the reference grid so that the search never leaves it.
        x_eval = np.arange(0.0, 40.0, 1.0)
        x_ref = x_eval[5:35]
        yz = np.arange(4.0)
        ref = DoseGrid(np.broadcast_to(2.0 * x_ref, (4, 4, x_ref.size)).copy(), yz, yz, x_ref)
        ev = DoseGrid(np.broadcast_to(2.0 * (x_eval + 1.8), (4, 4, x_eval.size)).copy(), yz, yz, x_eval)
        lung, spine = load_protocol("uk-lung-sabr"), load_protocol("spine-sabr")
        assert gamma_3d(ref, ev, **lung.gamma_parameters()).pass_rate_percent == 100.0
        assert gamma_3d(ref, ev, **spine.gamma_parameters()).pass_rate_percent == 0.0

    def test_criterion_evaluates(self) -> None:
        c = load_protocol("uk-lung-sabr").gamma_criterion()
        outcomes = [evaluate([c], {c.key: rate}).outcome for rate in (96.0, 92.0, 85.0)]
        assert outcomes == [OutcomeLevel.PER_PROTOCOL, OutcomeLevel.ACCEPTABLE_VARIATION,
                            OutcomeLevel.UNACCEPTABLE_VARIATION]  # fmt: skip

    def test_defaults_are_tg218(self, tmp_path: Path) -> None:
        p = load_protocol(write_protocol(tmp_path, _with("gamma", {})))
        assert p.gamma is not None
        assert (p.gamma.dose_percent, p.gamma.distance_mm, p.gamma.normalisation) == (3, 2, "global")
        assert p.gamma.low_dose_threshold_percent == 10
        assert (p.gamma.pass_rate_percent.per_protocol, p.gamma.pass_rate_percent.acceptable) == (95, 90)

    def test_missing_section(self, tmp_path: Path) -> None:
        p = load_protocol(write_protocol(tmp_path, {k: v for k, v in VALID.items() if k != "gamma"}))
        with pytest.raises(ProtocolError, match=r"protocol 'test-protocol' has no gamma section"):
            p.gamma_criterion()


class TestValidation:
    def test_valid(self, tmp_path: Path) -> None:
        p = load_protocol(write_protocol(tmp_path, VALID))
        ids = [c.id for c in p.planning_criteria(fractions=3, ptv_volume_cc=2.0)]
        assert ids == [
            "coverage",
            "max_dose",
            "r100",
            "r50",
            "d2cm",
            "oar_spinalcord_d0_35cc_3fx",
            "oar_lungs_v20gypct_3fx",
        ]

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("planning.oar_limits[0].metric", "D2cm",
             r"planning\.oar_limits\[0\]\.metric: unknown DVH metric 'D2cm'"),
            ("planning.oar_limits[1].metric", "V20",
             r"planning\.oar_limits\[1\]\.metric: unknown DVH metric 'V20'"),
            ("planning.oar_limits[0].fractions", 4,
             r"planning\.oar_limits\[0\]\.fractions: 4 is not a fraction number of the protocol's fractionations "
             r"\[3, 5\]"),
            ("planning.oar_limits[0].structure", "Liver",
             r"planning\.oar_limits\[0\]\.structure: 'Liver' is neither a required structure nor a composite"),
            ("planning.oar_limits[1].mandatory", 8,
             r"planning\.oar_limits\[1\]: mandatory level 8 is stricter than optimal 10 for direction '<='"),
            ("planning.oar_limits[1].unit", "cc",
             r"planning\.oar_limits\[1\]: unit 'cc' does not match metric 'V20Gy%' \(levels are in '%'\)"),
            ("planning.oar_limits[0].direction", "<",
             r"planning\.oar_limits\[0\]\.direction: Input should be '<=' or '>=' \(got '<'\)"),
            ("planning.oar_limits[0].colour", "red",
             r"planning\.oar_limits\[0\]\.colour: Extra inputs are not permitted \(got 'red'\)"),
            ("planning.prescription", {"target": "GTV", "coverage": {"structure": "GTV", "metric": "V100%",
                                                                     "per_protocol": 95, "acceptable": 90}},
             r"planning\.prescription\.target: 'GTV' is not in required_structures"),
            ("planning.prescription.target", "SpinalCord",
             r"planning\.prescription: coverage\.structure: 'V100%' is measured on the prescription target "
             r"'SpinalCord', got 'PTV'"),
            ("planning.prescription.coverage.metric", "V95%",
             r"planning\.prescription\.coverage\.metric: unknown coverage metric 'V95%'"),
            ("planning.prescription.coverage.acceptable", 97,
             r"planning\.prescription\.coverage: levels: acceptable level 97 is stricter than per_protocol 95 "
             r"for direction '>='"),
            ("planning.prescription.max_dose_percent.acceptable", 130,
             r"planning\.prescription: max_dose_percent: acceptable level 130 is stricter than per_protocol 140"),
            ("planning.conformity.r100_max.acceptable", 1.1,
             r"planning\.conformity: r100_max: acceptable level 1\.1 is stricter than per_protocol 1\.2"),
            ("planning.conformity.r100_min", {"per_protocol": 1.0, "acceptable": 1.05},
             r"planning\.conformity: r100_min: acceptable level 1\.05 is stricter than per_protocol 1 "
             r"for direction '>='"),
            ("planning.conformity.r100_min", {"per_protocol": 1.2, "acceptable": 0.9},
             r"planning\.conformity: r100_min: per_protocol 1\.2 must lie below r100_max per_protocol 1\.2"),
            ("planning.prescription.max_dose_percent.lower", {"per_protocol": 110, "acceptable": 115},
             r"planning\.prescription: max_dose_percent\.lower: acceptable level 115 is stricter than per_protocol "
             r"110 for direction '>='"),
            ("planning.prescription.max_dose_percent.lower", {"per_protocol": 150, "acceptable": 100},
             r"planning\.prescription: max_dose_percent\.lower: per_protocol 150 must lie below the upper "
             r"per_protocol level 140"),
            ("planning.prescription.additional_coverage",
             [{"structure": "PTV", "metric": "V100%", "per_protocol": 98, "acceptable": 95}],
             r"planning\.prescription: additional_coverage\[0\]: a second coverage check of V100% on PTV"),
            ("planning.prescription.additional_coverage",
             [{"structure": "Lung_X", "metric": "D99%", "per_protocol": 90, "acceptable": 85}],
             r"planning\.prescription\.additional_coverage\[0\]\.structure: 'Lung_X' is not in required_structures"),
            ("planning.prescription.additional_coverage",
             [{"structure": "PTV", "metric": "D99%", "per_protocol": 85, "acceptable": 90}],
             r"planning\.prescription\.additional_coverage\[0\]: levels: acceptable level 90 is stricter"),
            ("planning.conformity.by_ptv_cc[1].r50.acceptable", 5.0,
             r"planning\.conformity\.by_ptv_cc\[1\]: r50: acceptable level 5 is stricter than per_protocol 5\.5 "
             r"for direction '<='"),
            ("planning.conformity.by_ptv_cc[0].d2cm_percent.acceptable", 45,
             r"planning\.conformity\.by_ptv_cc\[0\]: d2cm_percent: acceptable level 45 is stricter"),
            ("planning.conformity.by_ptv_cc[1].ptv_cc", 1.8,
             r"planning\.conformity: by_ptv_cc\[1\]\.ptv_cc: PTV volumes must strictly increase; 1\.8 cc follows "
             r"1\.8 cc"),
            ("planning.conformity.by_ptv_cc[1].ptv_cc", 1.0,
             r"planning\.conformity: by_ptv_cc\[1\]\.ptv_cc: PTV volumes must strictly increase; 1 cc follows 1\.8 cc"),
            ("planning.composite_structures", {"Lungs": ["Lung_L", "Lung_X"]},
             r"planning\.composite_structures\.Lungs: parts \['Lung_X'\] must be non-empty required structures"),
            ("planning.dose_volume", [],
             r"planning\.dose_volume: Extra inputs are not permitted"),
            ("planning.verified", "perhaps",
             r"planning\.verified: Input should be a valid boolean"),
            ("gamma.normalisation", "relative",
             r"gamma\.normalisation: Input should be 'global' or 'local' \(got 'relative'\)"),
            ("gamma.distance_mm", 0,
             r"gamma\.distance_mm: Input should be greater than 0 \(got 0\)"),
            ("gamma.pass_rate_percent", {"per_protocol": 90, "acceptable": 95},
             r"gamma: pass_rate_percent: acceptable level 95 is stricter than per_protocol 90 for direction '>='"),
            ("gamma.pass_rate_percent", {"per_protocol": 105, "acceptable": 95},
             r"gamma: pass_rate_percent\.per_protocol: 105 is not a percentage in \[0, 100\]"),
            ("gamma.dta_mm", 2,
             r"gamma\.dta_mm: Extra inputs are not permitted \(got 2\)"),
        ],
    )  # fmt: skip
    def test_bad_field(self, tmp_path: Path, field: str, value: Any, message: str) -> None:
        path = write_protocol(tmp_path, _with(field, value))
        with pytest.raises(ProtocolError, match=re.escape(str(path)) + r": " + message):
            load_protocol(path)

    def test_several_planning_problems_each_name_the_file(self, tmp_path: Path) -> None:
        data = _with("planning.oar_limits[0].fractions", 4)
        data["planning"]["oar_limits"][1]["fractions"] = 8
        path = write_protocol(tmp_path, data)
        with pytest.raises(ProtocolError) as info:
            load_protocol(path)
        lines = str(info.value).splitlines()
        assert len(lines) == 2
        assert all(line.startswith(f"{path}: planning.oar_limits[") for line in lines), lines
