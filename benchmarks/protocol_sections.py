"""The validated sections of a protocol file: planning (prescription, coverage, conformity, organ limits) and the
TPS-check gamma section, with the two-level thresholds every check uses.

Split from :mod:`benchmarks.protocols`, which assembles them into a :class:`~benchmarks.protocols.Protocol` and
re-exports the public names.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qa_checks.dvh import is_dvh_metric

__all__ = [
    "COVERAGE_METRIC",
    "ConformityRow",
    "ConformitySection",
    "CoverageSpec",
    "GammaSection",
    "Levels",
    "MaxDoseLevels",
    "OarLimit",
    "PlanningSection",
    "PrescriptionSection",
    "SourcedLevels",
    "dvh_metric_unit",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Levels(_Model):
    """The two levels of a check, in the check's unit: ``per_protocol`` (no deviation) and ``acceptable`` (minor
    deviation). Which is stricter depends on the check's direction; the section holding the levels checks it."""

    per_protocol: float
    acceptable: float

    def ordered_problem(self, direction: str, what: str) -> str | None:
        """A message when ``acceptable`` is stricter than ``per_protocol`` for ``direction``, else ``None``."""
        stricter = self.acceptable > self.per_protocol if direction == ">=" else self.acceptable < self.per_protocol
        if stricter:
            return (
                f"{what}: acceptable level {self.acceptable:g} is stricter than per_protocol {self.per_protocol:g} "
                f"for direction {direction!r}"
            )
        return None


class SourcedLevels(Levels):
    """:class:`Levels` with the ``source`` of the numbers."""

    source: str = ""


class MaxDoseLevels(SourcedLevels):
    """Upper levels on the target's maximum dose in % of the prescription (``"<="``) and, optionally, ``lower``
    levels (``">="``): a SABR plan is meant to be inhomogeneous, e.g. a maximum of 110-140 % of the prescription
    (UK SABR Consortium). ``lower.per_protocol`` must lie below ``per_protocol``."""

    lower: SourcedLevels | None = None

    def problems(self) -> list[str | None]:
        """Messages for upper or lower levels out of order, or a lower level not below the upper one."""
        problems = [self.ordered_problem("<=", "max_dose_percent")]
        if self.lower is not None:
            problems.append(self.lower.ordered_problem(">=", "max_dose_percent.lower"))
            if self.lower.per_protocol >= self.per_protocol:
                problems.append(
                    f"max_dose_percent.lower: per_protocol {self.lower.per_protocol:g} must lie below the upper "
                    f"per_protocol level {self.per_protocol:g}"
                )
        return problems


def _sourced(text: str, source: str) -> str:
    return f"{text} ({source})" if source else text


def _raise_if(problems: list[str | None]) -> None:
    found = [p for p in problems if p]
    if found:
        raise ValueError("; ".join(found))


COVERAGE_METRIC: Final = re.compile(r"^(?:V100%|D\d+(?:\.\d+)?%)$")
"""Coverage metrics of a prescription section: ``V100%`` (% of the target receiving the prescription) or
``D<x>%`` (minimum dose to the hottest x % of the target, levels in % of the prescription)."""


class CoverageSpec(_Model):
    """How target coverage is judged (direction ``">="``).

    ``metric`` ``"V100%"``: levels are the % of ``structure`` receiving at least the prescription, measured as
    :attr:`qa_checks.plan_indices.PlanIndices.ptv_coverage_percent` (``structure`` must be the prescription
    target). ``metric`` ``"D<x>%"``, e.g. ``"D95%"``: levels are in % of the prescription dose and become Gy
    levels on the :mod:`qa_checks.dvh` metric of that name.
    """

    structure: str
    metric: str
    per_protocol: float = Field(gt=0, le=200)
    acceptable: float = Field(gt=0, le=200)
    source: str = ""

    @field_validator("metric")
    @classmethod
    def _coverage_metric(cls, value: str) -> str:
        if not COVERAGE_METRIC.match(value):
            raise ValueError(f"unknown coverage metric {value!r}; use 'V100%' or a 'D<x>%' metric such as 'D95%'")
        return value

    @model_validator(mode="after")
    def _levels_ordered(self) -> CoverageSpec:
        _raise_if([Levels(per_protocol=self.per_protocol, acceptable=self.acceptable).ordered_problem(">=", "levels")])
        return self

    @property
    def extra_id(self) -> str:
        """Criterion id of this spec as an additional coverage check: ``"coverage_"`` and the metric in lower case
        without ``%``, ``.`` written ``_`` (``"D99%"`` -> ``"coverage_d99"``, ``"D99.5%"`` -> ``"coverage_d99_5"``).
        The main coverage spec keeps the id ``"coverage"``."""
        return "coverage_" + self.metric.lower().replace("%", "").replace(".", "_")


class PrescriptionSection(_Model):
    """The prescription target, how its coverage is judged and, optionally, its maximum dose in % of the
    prescription (``"<="``, measured as :attr:`~qa_checks.plan_indices.PlanIndices.hi_rtog` x 100, with optional
    lower levels, see :class:`MaxDoseLevels`).

    Attributes:
        target: the prescription target (a required structure).
        coverage: the main coverage check (criterion id ``"coverage"``).
        additional_coverage: further coverage checks with other metrics, e.g. ``D99%`` >= 90 % of the
            prescription next to ``V100%`` >= 95 %; criterion ids from :attr:`CoverageSpec.extra_id`.
        max_dose_percent: maximum-dose levels (criterion ids ``"max_dose"`` and, with a lower bound,
            ``"max_dose_min"``).
    """

    target: str
    coverage: CoverageSpec
    additional_coverage: list[CoverageSpec] = Field(default_factory=list)
    max_dose_percent: MaxDoseLevels | None = None

    @property
    def coverage_specs(self) -> tuple[tuple[str, CoverageSpec], ...]:
        """``(criterion id, spec)`` for the main coverage spec (``"coverage"``) then each additional one."""
        return (("coverage", self.coverage), *((spec.extra_id, spec) for spec in self.additional_coverage))

    @model_validator(mode="after")
    def _consistent(self) -> PrescriptionSection:
        problems: list[str | None] = []
        seen: set[tuple[str, str]] = set()
        for (_, spec), where in zip(
            self.coverage_specs,
            ["coverage", *(f"additional_coverage[{i}]" for i in range(len(self.additional_coverage)))],
            strict=True,
        ):
            if spec.metric == "V100%" and spec.structure != self.target:
                problems.append(
                    f"{where}.structure: 'V100%' is measured on the prescription target {self.target!r}, "
                    f"got {spec.structure!r}"
                )
            if (spec.structure, spec.metric) in seen:
                problems.append(f"{where}: a second coverage check of {spec.metric} on {spec.structure}")
            seen.add((spec.structure, spec.metric))
        if self.max_dose_percent is not None:
            problems.extend(self.max_dose_percent.problems())
        _raise_if(problems)
        return self


class ConformityRow(_Model):
    """One row of a conformity table: upper limits on R50% and D2cm (% of prescription) for a PTV volume."""

    ptv_cc: float = Field(gt=0)
    r50: Levels
    d2cm_percent: Levels

    @model_validator(mode="after")
    def _levels_ordered(self) -> ConformityRow:
        _raise_if([self.r50.ordered_problem("<=", "r50"), self.d2cm_percent.ordered_problem("<=", "d2cm_percent")])
        return self


class ConformitySection(_Model):
    """Conformity limits: upper levels on R100% (PIV / PTV) at every size (``r100_max``), optional lower levels
    (``r100_min``, e.g. the RTOG 90-05 PITV ratio >= 1.0), and, where the protocol has one, a table of R50% and
    D2cm by PTV volume (RTOG 0813 / 0915 style), interpolated linearly in PTV volume between rows."""

    r100_max: Levels
    r100_min: Levels | None = None
    by_ptv_cc: list[ConformityRow] | None = Field(default=None, min_length=2)
    source: str = ""

    @model_validator(mode="after")
    def _table_valid(self) -> ConformitySection:
        problems = [self.r100_max.ordered_problem("<=", "r100_max")]
        if self.r100_min is not None:
            problems.append(self.r100_min.ordered_problem(">=", "r100_min"))
            if self.r100_min.per_protocol >= self.r100_max.per_protocol:
                problems.append(
                    f"r100_min: per_protocol {self.r100_min.per_protocol:g} must lie below r100_max per_protocol "
                    f"{self.r100_max.per_protocol:g}"
                )
        rows = self.by_ptv_cc or []
        for i in range(1, len(rows)):
            if rows[i].ptv_cc <= rows[i - 1].ptv_cc:
                problems.append(
                    f"by_ptv_cc[{i}].ptv_cc: PTV volumes must strictly increase; {rows[i].ptv_cc:g} cc follows "
                    f"{rows[i - 1].ptv_cc:g} cc"
                )
        _raise_if(problems)
        return self


def dvh_metric_unit(metric: str) -> str:
    """Unit of a :mod:`qa_checks.dvh` metric's value: ``"Gy"`` for ``D...``, ``"%"`` for ``V<x>Gy%``, ``"cc"`` for
    ``V<x>Gy`` / ``V<x>Gycc``.

    Raises:
        ValueError: not a DVH metric name.
    """
    name = metric.strip()
    if not is_dvh_metric(name):
        raise ValueError(
            f"unknown DVH metric {metric!r}; use D<x>%, D<x>cc, V<x>Gy (cc), V<x>Gycc, V<x>Gy%, Dmean, Dmax or Dmin"
        )
    if name.startswith("D"):
        return "Gy"
    return "%" if name.endswith("%") else "cc"


class OarLimit(_Model):
    """A dose-volume limit on an organ at risk for one fractionation.

    Attributes:
        structure: TG-263 name (a required structure, or a composite of :attr:`PlanningSection.composite_structures`).
        metric: a :mod:`qa_checks.dvh` metric name, e.g. ``"D0.35cc"`` (Gy), ``"V20Gy%"``, ``"V39Gy"`` (cc).
        fractions: the number of fractions the limit applies to.
        optimal: the per-protocol level; ``mandatory``: the acceptable level (never stricter).
        direction: ``"<="`` (default) or ``">="``.
        unit: the levels' unit; checked against the metric when given.
        source: where the numbers come from.
    """

    structure: str
    metric: str
    fractions: int = Field(ge=1, le=40)
    optimal: float
    mandatory: float
    direction: Literal["<=", ">="] = "<="
    unit: str | None = None
    source: str = ""

    @field_validator("metric")
    @classmethod
    def _dvh_metric(cls, value: str) -> str:
        dvh_metric_unit(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OarLimit:
        expected = dvh_metric_unit(self.metric)
        problems: list[str | None] = []
        if self.unit is not None and self.unit != expected:
            problems.append(f"unit {self.unit!r} does not match metric {self.metric!r} (levels are in {expected!r})")
        stricter = self.mandatory > self.optimal if self.direction == ">=" else self.mandatory < self.optimal
        if stricter:
            problems.append(
                f"mandatory level {self.mandatory:g} is stricter than optimal {self.optimal:g} "
                f"for direction {self.direction!r}"
            )
        _raise_if(problems)
        return self

    @property
    def criterion_id(self) -> str:
        """Criterion id, e.g. ``"oar_spinalcord_d0_35cc_3fx"``."""
        slug = re.sub(r"[^a-z0-9]+", "_", f"{self.structure}_{self.metric}".lower().replace("%", "pct")).strip("_")
        return f"oar_{slug}_{self.fractions}fx"


class PlanningSection(_Model):
    """Planning benchmark criteria.

    Attributes:
        prescription: target, coverage and maximum dose.
        conformity: R100% limits and an optional R50% / D2cm table (omitted where the RTOG table does not apply).
        oar_limits: organ-at-risk limits, each for one fraction number.
        composite_structures: structures built as the union of required structures, e.g. ``Lungs: [Lung_L,
            Lung_R]``, that OAR limits may name.
        verified: false when the numbers come from a secondary source and must be checked against the trial
            protocol before use (a warning is logged when such a protocol is loaded).
        notes: free text.
    """

    prescription: PrescriptionSection
    conformity: ConformitySection | None = None
    oar_limits: list[OarLimit] = Field(default_factory=list)
    composite_structures: dict[str, list[str]] = Field(default_factory=dict)
    verified: bool = True
    notes: str = ""


class GammaSection(_Model):
    """TPS-check (virtual phantom) gamma comparison; defaults are the AAPM TG-218 universal tolerance
    (3 % / 2 mm, global normalisation, 10 % low-dose threshold, pass rate >= 95 %, action limit 90 %)."""

    dose_percent: float = Field(default=3.0, gt=0, le=20)
    distance_mm: float = Field(default=2.0, gt=0, le=10)
    normalisation: Literal["global", "local"] = "global"
    low_dose_threshold_percent: float = Field(default=10.0, ge=0, le=100)
    pass_rate_percent: Levels = Field(default_factory=lambda: Levels(per_protocol=95.0, acceptable=90.0))
    source: str = "AAPM TG-218 (Miften et al. 2018)"

    @model_validator(mode="after")
    def _levels_valid(self) -> GammaSection:
        levels = self.pass_rate_percent
        problems = [levels.ordered_problem(">=", "pass_rate_percent")]
        for name in ("per_protocol", "acceptable"):
            value = getattr(levels, name)
            if not 0.0 <= value <= 100.0:
                problems.append(f"pass_rate_percent.{name}: {value:g} is not a percentage in [0, 100]")
        _raise_if(problems)
        return self

    @property
    def label(self) -> str:
        """E.g. ``"3%/2 mm global, 10% threshold"``."""
        return (
            f"{self.dose_percent:g}%/{self.distance_mm:g} mm {self.normalisation}, "
            f"{self.low_dose_threshold_percent:g}% threshold"
        )
