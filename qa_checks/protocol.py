"""Protocol outcome evaluation: turn measured values into per protocol / acceptable / unacceptable.

A trial protocol states, for each check, two levels: the *per-protocol* level and the looser *acceptable
variation* level (RTTQA and NRG vocabulary). A measured value that meets the per-protocol level is
``per_protocol``; one that misses it but meets the acceptable level is ``acceptable_variation``; anything else is
``unacceptable_variation``. The outcome of a whole evaluation is the worst outcome of its criteria.

Boundary convention: a value *exactly at* a threshold meets it. For a ``">="`` criterion with per-protocol
level 0.85, a Dice of 0.85 is per protocol; for a ``"<="`` criterion with per-protocol level 2.0 mm, an HD95 of
2.0 mm is per protocol. No tolerance is applied to the comparison: the thresholds are the protocol's own
numbers, and any rounding of the measured value is the caller's decision (and should be recorded).

This module is pure (stdlib + numpy only) and reads no files: protocol files are parsed elsewhere and handed in
as :class:`Criterion` objects.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "DIRECTIONS",
    "Criterion",
    "CriterionResult",
    "Evaluation",
    "OutcomeLevel",
    "evaluate",
    "evaluate_criterion",
    "worst_outcome",
]

DIRECTIONS: Final = (">=", "<=")
"""Allowed comparison directions: ``">="`` (higher is better, e.g. Dice) and ``"<="`` (lower is better, e.g.
HD95 in mm)."""


class OutcomeLevel(StrEnum):
    """Outcome of a check, ordered from best to worst by :attr:`severity`.

    The string values are the stored, snake-case forms. Do not compare members with ``<``: a ``StrEnum``
    compares as text. Use :attr:`severity` or :func:`worst_outcome`.
    """

    PER_PROTOCOL = "per_protocol"
    ACCEPTABLE_VARIATION = "acceptable_variation"
    UNACCEPTABLE_VARIATION = "unacceptable_variation"

    @property
    def severity(self) -> int:
        """0 for per protocol, 1 for acceptable variation, 2 for unacceptable variation."""
        return _SEVERITY[self]

    @property
    def label(self) -> str:
        """Human-readable form, e.g. ``"acceptable variation"``."""
        return self.value.replace("_", " ")


_SEVERITY: Final[dict[OutcomeLevel, int]] = {
    OutcomeLevel.PER_PROTOCOL: 0,
    OutcomeLevel.ACCEPTABLE_VARIATION: 1,
    OutcomeLevel.UNACCEPTABLE_VARIATION: 2,
}


def worst_outcome(outcomes: Iterable[OutcomeLevel | str]) -> OutcomeLevel:
    """Return the worst of ``outcomes`` (strings are normalised to :class:`OutcomeLevel`).

    Raises:
        ValueError: if ``outcomes`` is empty (there is no neutral outcome to return) or holds an unknown value.
    """
    levels = [OutcomeLevel(o) for o in outcomes]
    if not levels:
        raise ValueError("worst_outcome() needs at least one outcome, got none")
    return max(levels, key=lambda level: level.severity)


@dataclass(frozen=True)
class Criterion:
    """One check of a protocol.

    Attributes:
        id: identifier unique within a protocol, e.g. ``"dice_ptv"``.
        structure: TG-263 structure name the check applies to, e.g. ``"PTV"``.
        metric: metric name, e.g. ``"dice"``, ``"hd95_mm"``, ``"surface_dice"``.
        direction: ``">="`` when higher values are better, ``"<="`` when lower values are better.
        per_protocol: level that must be met for a per-protocol outcome (in ``unit``).
        acceptable: level that must be met for an acceptable-variation outcome (in ``unit``); never stricter
            than ``per_protocol``.
        unit: unit of the levels and of the measured value (``"1"`` for dimensionless).
        description: free text shown to reviewers (the rationale or source of the levels).
    """

    id: str
    structure: str
    metric: str
    direction: str
    per_protocol: float
    acceptable: float
    unit: str = "1"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError(f"Criterion id must be a non-empty string, got {self.id!r}")
        if not self.structure:
            raise ValueError(f"Criterion {self.id!r}: structure must be non-empty, got {self.structure!r}")
        if not self.metric:
            raise ValueError(f"Criterion {self.id!r}: metric must be non-empty, got {self.metric!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Criterion {self.id!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        for field_name in ("per_protocol", "acceptable"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"Criterion {self.id!r}: {field_name} must be a finite number, got {value!r}")
        if self.direction == ">=" and self.acceptable > self.per_protocol:
            raise ValueError(
                f"Criterion {self.id!r}: with direction '>=' the acceptable level ({self.acceptable}) must not "
                f"exceed the per-protocol level ({self.per_protocol})"
            )
        if self.direction == "<=" and self.acceptable < self.per_protocol:
            raise ValueError(
                f"Criterion {self.id!r}: with direction '<=' the acceptable level ({self.acceptable}) must not "
                f"be below the per-protocol level ({self.per_protocol})"
            )

    @property
    def key(self) -> tuple[str, str]:
        """The ``(structure, metric)`` key under which the measured value is looked up."""
        return (self.structure, self.metric)

    def meets(self, value: float, level: float) -> bool:
        """True when ``value`` meets ``level`` in this criterion's direction (equality meets it)."""
        return value >= level if self.direction == ">=" else value <= level


@dataclass(frozen=True)
class CriterionResult:
    """Outcome of one criterion.

    ``value`` is ``None`` when nothing was measured (e.g. the structure is missing), in which case the outcome is
    unacceptable variation and ``reason`` says why.
    """

    criterion: Criterion
    value: float | None
    outcome: OutcomeLevel
    reason: str


@dataclass(frozen=True)
class Evaluation:
    """Outcome of a set of criteria: the worst criterion outcome, every result, and the reasons.

    ``reasons`` lists the reason of every criterion that is not per protocol, worst first (then in criterion
    order); it is empty when everything is per protocol.
    """

    outcome: OutcomeLevel
    results: tuple[CriterionResult, ...]
    reasons: tuple[str, ...]

    def result(self, criterion_id: str) -> CriterionResult:
        """Return the result of the criterion with id ``criterion_id``.

        Raises:
            KeyError: naming the id and the ids that exist.
        """
        for res in self.results:
            if res.criterion.id == criterion_id:
                return res
        known = ", ".join(r.criterion.id for r in self.results)
        raise KeyError(f"no criterion with id {criterion_id!r}; known ids: {known}")


def _metric_label(metric: str) -> str:
    labels = {
        "dice": "Dice",
        "jaccard": "Jaccard",
        "hd95_mm": "HD95",
        "hausdorff_mm": "Hausdorff distance",
        "msd_mm": "mean surface distance",
        "surface_dice": "surface Dice",
        "volume_ratio": "volume ratio",
        "centroid_distance_mm": "centroid distance",
    }
    return labels.get(metric, metric)


def _format_value(value: float, unit: str) -> str:
    text = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.6g}"
    if unit in ("", "1"):
        return text
    return f"{text} {unit}"


def evaluate_criterion(
    criterion: Criterion, value: float | None, *, missing_reason: str | None = None
) -> CriterionResult:
    """Evaluate one criterion against one measured value.

    Args:
        criterion: the criterion.
        value: the measured value in ``criterion.unit``; ``None`` or NaN when it could not be measured.
        missing_reason: reason to report when ``value`` is ``None`` (defaults to a generic message).

    Returns:
        The result. A value exactly at a level meets that level (see the module docstring).
    """
    what = f"{_metric_label(criterion.metric)} of {criterion.structure}"
    if value is None:
        reason = missing_reason or f"{what} was not measured (no value supplied), so the criterion is not met"
        return CriterionResult(criterion, None, OutcomeLevel.UNACCEPTABLE_VARIATION, reason)
    value = float(value)
    if math.isnan(value):
        reason = f"{what} could not be computed (NaN), so the criterion is not met"
        return CriterionResult(criterion, value, OutcomeLevel.UNACCEPTABLE_VARIATION, reason)

    shown = _format_value(value, criterion.unit)
    pp = _format_value(criterion.per_protocol, criterion.unit)
    acc = _format_value(criterion.acceptable, criterion.unit)
    better, worse = ("at or above", "below") if criterion.direction == ">=" else ("at or below", "above")
    if criterion.meets(value, criterion.per_protocol):
        outcome = OutcomeLevel.PER_PROTOCOL
        reason = f"{what} {shown} is {better} the per-protocol level {pp}"
    elif criterion.meets(value, criterion.acceptable):
        outcome = OutcomeLevel.ACCEPTABLE_VARIATION
        reason = f"{what} {shown} is {worse} the per-protocol level {pp} but {better} the acceptable level {acc}"
    else:
        outcome = OutcomeLevel.UNACCEPTABLE_VARIATION
        reason = f"{what} {shown} is {worse} the acceptable level {acc}"
    return CriterionResult(criterion, value, outcome, reason)


def evaluate(
    criteria: Sequence[Criterion],
    measured: Mapping[tuple[str, str], float],
    *,
    present_structures: Collection[str] | None = None,
    missing_reasons: Mapping[tuple[str, str], str] | None = None,
) -> Evaluation:
    """Evaluate ``criteria`` against measured values and combine them worst-of.

    Args:
        criteria: the protocol's criteria; ids must be unique.
        measured: measured values keyed by ``(structure, metric)``, e.g. ``{("PTV", "dice"): 0.91}``. A criterion
            whose key is absent is unacceptable variation (a required structure that was not submitted cannot
            be credited).
        present_structures: optional TG-263 names of the structures found in the submission; when given, a
            criterion on a structure not in it reports "structure ... is missing from the submission".
        missing_reasons: optional reasons, keyed like ``measured``, why a value could not be measured (e.g. "the
            50% isodose reaches the dose-grid edge"); reported for a criterion whose key is absent from
            ``measured``, in preference to the generic reasons.

    Returns:
        An :class:`Evaluation` whose outcome is the worst criterion outcome.

    Raises:
        ValueError: if ``criteria`` is empty or holds duplicate ids.
    """
    if not criteria:
        raise ValueError("evaluate() needs at least one criterion, got none")
    seen: set[str] = set()
    for criterion in criteria:
        if criterion.id in seen:
            raise ValueError(f"duplicate criterion id {criterion.id!r}")
        seen.add(criterion.id)

    results: list[CriterionResult] = []
    for criterion in criteria:
        value = measured.get(criterion.key)
        missing_reason = None
        if value is None:
            if missing_reasons is not None and criterion.key in missing_reasons:
                missing_reason = f"{missing_reasons[criterion.key]}, so the criterion is not met"
            elif present_structures is not None and criterion.structure not in present_structures:
                missing_reason = (
                    f"required structure {criterion.structure} is missing from the submission, "
                    f"so {_metric_label(criterion.metric)} cannot be measured"
                )
            else:
                missing_reason = (
                    f"no {_metric_label(criterion.metric)} was measured for {criterion.structure} "
                    "(structure missing from the submission or not mapped to its TG-263 name)"
                )
        results.append(evaluate_criterion(criterion, value, missing_reason=missing_reason))

    outcome = worst_outcome(r.outcome for r in results)
    failing = [r for r in results if r.outcome is not OutcomeLevel.PER_PROTOCOL]
    failing.sort(key=lambda r: -r.outcome.severity)  # stable: criterion order within a level
    return Evaluation(outcome=outcome, results=tuple(results), reasons=tuple(r.reason for r in failing))
