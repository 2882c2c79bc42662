"""Tests of qa_checks.protocol: outcome levels, single criteria, worst-of evaluation and boundaries."""

from __future__ import annotations

import math

import pytest

from qa_checks.protocol import (
    Criterion,
    OutcomeLevel,
    evaluate,
    evaluate_criterion,
    worst_outcome,
)

DICE_PTV = Criterion("dice_ptv", "PTV", "dice", ">=", per_protocol=0.85, acceptable=0.70)
HD95_CORD = Criterion("hd95_cord", "SpinalCord", "hd95_mm", "<=", per_protocol=2.0, acceptable=4.0, unit="mm")
DICE_GTV = Criterion("dice_gtv", "GTV", "dice", ">=", per_protocol=0.80, acceptable=0.70)


class TestOutcomeLevel:
    def test_values_are_the_stored_snake_case_strings(self) -> None:
        assert [level.value for level in OutcomeLevel] == [
            "per_protocol",
            "acceptable_variation",
            "unacceptable_variation",
        ]
        assert OutcomeLevel("acceptable_variation") is OutcomeLevel.ACCEPTABLE_VARIATION

    def test_severity_orders_best_to_worst(self) -> None:
        levels = [OutcomeLevel.UNACCEPTABLE_VARIATION, OutcomeLevel.PER_PROTOCOL, OutcomeLevel.ACCEPTABLE_VARIATION]
        assert sorted(levels, key=lambda lvl: lvl.severity) == [
            OutcomeLevel.PER_PROTOCOL,
            OutcomeLevel.ACCEPTABLE_VARIATION,
            OutcomeLevel.UNACCEPTABLE_VARIATION,
        ]

    def test_label(self) -> None:
        assert OutcomeLevel.ACCEPTABLE_VARIATION.label == "acceptable variation"


class TestWorstOutcome:
    @pytest.mark.parametrize(
        ("outcomes", "expected"),
        [
            (["per_protocol"], OutcomeLevel.PER_PROTOCOL),
            (["per_protocol", "acceptable_variation"], OutcomeLevel.ACCEPTABLE_VARIATION),
            (["acceptable_variation", "per_protocol"], OutcomeLevel.ACCEPTABLE_VARIATION),
            (["per_protocol", "unacceptable_variation", "acceptable_variation"], OutcomeLevel.UNACCEPTABLE_VARIATION),
            ([OutcomeLevel.PER_PROTOCOL, OutcomeLevel.PER_PROTOCOL], OutcomeLevel.PER_PROTOCOL),
        ],
    )
    def test_worst_of(self, outcomes: list[str], expected: OutcomeLevel) -> None:
        assert worst_outcome(outcomes) is expected

    def test_empty_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="at least one outcome"):
            worst_outcome([])

    def test_unknown_value_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="'fine'"):
            worst_outcome(["fine"])


class TestCriterion:
    def test_key(self) -> None:
        assert DICE_PTV.key == ("PTV", "dice")

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"direction": ">"}, r"direction must be one of \('>=', '<='\), got '>'"),
            ({"per_protocol": 0.6, "acceptable": 0.7}, r"acceptable level \(0.7\) must not exceed"),
            ({"per_protocol": math.nan}, "per_protocol must be a finite number, got nan"),
            ({"acceptable": "0.7"}, "acceptable must be a finite number, got '0.7'"),
            ({"id": ""}, "id must be a non-empty string"),
            ({"structure": ""}, "structure must be non-empty"),
        ],
    )
    def test_invalid(self, kwargs: dict[str, object], message: str) -> None:
        fields: dict[str, object] = {
            "id": "c",
            "structure": "PTV",
            "metric": "dice",
            "direction": ">=",
            "per_protocol": 0.85,
            "acceptable": 0.7,
        }
        fields.update(kwargs)
        with pytest.raises(ValueError, match=message):
            Criterion(**fields)  # type: ignore[arg-type]

    def test_lower_is_better_levels_must_not_be_stricter(self) -> None:
        with pytest.raises(ValueError, match=r"must not be below the per-protocol level \(2.0\)"):
            Criterion("h", "PTV", "hd95_mm", "<=", per_protocol=2.0, acceptable=1.0, unit="mm")

    def test_equal_levels_are_allowed(self) -> None:
        # A protocol with no acceptable-variation band: both levels equal.
        c = Criterion("c", "PTV", "dice", ">=", per_protocol=0.8, acceptable=0.8)
        assert evaluate_criterion(c, 0.79).outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert evaluate_criterion(c, 0.8).outcome is OutcomeLevel.PER_PROTOCOL


class TestEvaluateCriterion:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0.95, OutcomeLevel.PER_PROTOCOL),
            # Boundary convention: a value exactly at a level meets it (no tolerance applied).
            (0.85, OutcomeLevel.PER_PROTOCOL),
            (0.8499999, OutcomeLevel.ACCEPTABLE_VARIATION),
            (0.78, OutcomeLevel.ACCEPTABLE_VARIATION),
            (0.70, OutcomeLevel.ACCEPTABLE_VARIATION),
            (0.6999999, OutcomeLevel.UNACCEPTABLE_VARIATION),
            (0.0, OutcomeLevel.UNACCEPTABLE_VARIATION),
        ],
    )
    def test_higher_is_better(self, value: float, expected: OutcomeLevel) -> None:
        assert evaluate_criterion(DICE_PTV, value).outcome is expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0.5, OutcomeLevel.PER_PROTOCOL),
            (2.0, OutcomeLevel.PER_PROTOCOL),
            (2.0000001, OutcomeLevel.ACCEPTABLE_VARIATION),
            (4.0, OutcomeLevel.ACCEPTABLE_VARIATION),
            (4.0000001, OutcomeLevel.UNACCEPTABLE_VARIATION),
        ],
    )
    def test_lower_is_better(self, value: float, expected: OutcomeLevel) -> None:
        assert evaluate_criterion(HD95_CORD, value).outcome is expected

    def test_reason_for_acceptable_variation(self) -> None:
        result = evaluate_criterion(DICE_PTV, 0.78)
        assert result.reason == (
            "Dice of PTV 0.78 is below the per-protocol level 0.85 but at or above the acceptable level 0.7"
        )
        assert result.value == 0.78

    def test_reason_names_unit_for_distances(self) -> None:
        result = evaluate_criterion(HD95_CORD, 5.5)
        assert result.reason == "HD95 of SpinalCord 5.5 mm is above the acceptable level 4 mm"

    def test_reason_for_per_protocol(self) -> None:
        assert evaluate_criterion(DICE_PTV, 0.9).reason == "Dice of PTV 0.9 is at or above the per-protocol level 0.85"

    def test_none_is_unacceptable(self) -> None:
        result = evaluate_criterion(DICE_PTV, None)
        assert result.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert result.value is None
        assert "not measured" in result.reason

    def test_nan_is_unacceptable(self) -> None:
        result = evaluate_criterion(DICE_PTV, math.nan)
        assert result.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert "could not be computed (NaN)" in result.reason


class TestEvaluate:
    def test_all_per_protocol(self) -> None:
        ev = evaluate([DICE_PTV, HD95_CORD], {("PTV", "dice"): 0.9, ("SpinalCord", "hd95_mm"): 1.0})
        assert ev.outcome is OutcomeLevel.PER_PROTOCOL
        assert ev.reasons == ()
        assert [r.outcome for r in ev.results] == [OutcomeLevel.PER_PROTOCOL, OutcomeLevel.PER_PROTOCOL]

    def test_worst_of_combination(self) -> None:
        measured = {("PTV", "dice"): 0.78, ("SpinalCord", "hd95_mm"): 1.0, ("GTV", "dice"): 0.5}
        ev = evaluate([DICE_PTV, HD95_CORD, DICE_GTV], measured)
        assert ev.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        # Reasons: worst first, then in criterion order; per-protocol criteria give no reason.
        assert ev.reasons == (
            "Dice of GTV 0.5 is below the acceptable level 0.7",
            "Dice of PTV 0.78 is below the per-protocol level 0.85 but at or above the acceptable level 0.7",
        )
        assert ev.result("dice_ptv").outcome is OutcomeLevel.ACCEPTABLE_VARIATION

    def test_one_acceptable_makes_the_whole_acceptable(self) -> None:
        ev = evaluate([DICE_PTV, HD95_CORD], {("PTV", "dice"): 0.9, ("SpinalCord", "hd95_mm"): 3.0})
        assert ev.outcome is OutcomeLevel.ACCEPTABLE_VARIATION

    def test_missing_structure_is_unacceptable(self) -> None:
        ev = evaluate([DICE_PTV, DICE_GTV], {("PTV", "dice"): 0.95})
        assert ev.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        gtv = ev.result("dice_gtv")
        assert gtv.value is None
        assert gtv.reason.startswith("no Dice was measured for GTV")

    def test_missing_structure_named_when_present_structures_given(self) -> None:
        ev = evaluate([DICE_PTV, DICE_GTV], {("PTV", "dice"): 0.95}, present_structures={"PTV", "Body"})
        assert ev.reasons == ("required structure GTV is missing from the submission, so Dice cannot be measured",)

    def test_measurement_for_another_metric_does_not_count(self) -> None:
        ev = evaluate([DICE_PTV], {("PTV", "hd95_mm"): 0.1})
        assert ev.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION

    def test_extra_measurements_are_ignored(self) -> None:
        ev = evaluate([DICE_PTV], {("PTV", "dice"): 0.9, ("Heart", "dice"): 0.1})
        assert ev.outcome is OutcomeLevel.PER_PROTOCOL
        assert len(ev.results) == 1

    def test_no_criteria_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="at least one criterion"):
            evaluate([], {})

    def test_duplicate_ids_are_an_error(self) -> None:
        with pytest.raises(ValueError, match="duplicate criterion id 'dice_ptv'"):
            evaluate([DICE_PTV, DICE_PTV], {("PTV", "dice"): 0.9})

    def test_unknown_result_id(self) -> None:
        ev = evaluate([DICE_PTV], {("PTV", "dice"): 0.9})
        with pytest.raises(KeyError, match="no criterion with id 'nope'; known ids: dice_ptv"):
            ev.result("nope")
