"""Trial protocols as data: YAML files in ``benchmarks/protocols/`` and a validating loader.

A protocol file states the techniques and fractionations a trial allows, the structures (TG-263 names) every
submission must contain, the outlining criteria (per-protocol and acceptable levels per structure and metric),
optional planning and gamma sections, and the credentials a centre needs before recruiting. Every threshold
lives in these files, never in code.

Errors name the file, the field path and the bad value, e.g.
``uk-lung-sabr.yaml: outlining.criteria[2].per_protocol: Input should be a valid number (got 'high')``.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from benchmarks.protocol_sections import (
    ConformityRow,
    ConformitySection,
    CoverageSpec,
    GammaSection,
    Levels,
    MaxDoseLevels,
    OarLimit,
    PlanningSection,
    PrescriptionSection,
    SourcedLevels,
    _Model,
    _sourced,
    dvh_metric_unit,
)
from benchmarks.yaml_files import read_yaml
from qa_checks.plan_indices import ConformityLimits
from qa_checks.protocol import Criterion

__all__ = [
    "GAMMA_METRIC",
    "GAMMA_STRUCTURE",
    "KNOWN_METRICS",
    "PLAN_INDEX_METRICS",
    "PROTOCOL_DIR",
    "ConformityRow",
    "ConformitySection",
    "CoverageSpec",
    "Fractionation",
    "GammaSection",
    "Levels",
    "MaxDoseLevels",
    "OarLimit",
    "PlanningSection",
    "PrescriptionSection",
    "Protocol",
    "ProtocolError",
    "SourcedLevels",
    "dvh_metric_unit",
    "list_protocols",
    "load_protocol",
    "parse_protocol",
]

logger = logging.getLogger(__name__)

PROTOCOL_DIR: Final = Path(__file__).resolve().parent / "protocols"
"""Directory of the shipped protocol files (``<protocol id>.yaml``)."""

KNOWN_METRICS: Final[dict[str, str]] = {
    "dice": "1",
    "jaccard": "1",
    "surface_dice": "1",
    "volume_ratio": "1",
    "hd95_mm": "mm",
    "hausdorff_mm": "mm",
    "msd_mm": "mm",
    "centroid_distance_mm": "mm",
}
"""Contour metric names allowed in outlining criteria, with the unit their levels are in."""

PLAN_INDEX_METRICS: Final[dict[str, tuple[str, float, str]]] = {
    "V100%": ("ptv_coverage_percent", 1.0, "%"),
    "Dmax%": ("hi_rtog", 100.0, "%"),
    "R100%": ("r100", 1.0, "1"),
    "R50%": ("r50", 1.0, "1"),
    "D2cm%": ("d2cm_percent", 1.0, "%"),
}
"""Planning-index metric names used in criteria and stored results -> (the
:class:`qa_checks.plan_indices.PlanIndices` field that measures it, the factor from that field to the metric, the
unit). ``V100%``: % of the target receiving at least its prescription; ``Dmax%``: the target's maximum dose in % of
its prescription; ``R100%``: prescription isodose volume / target volume; ``R50%``: 50% isodose volume / target
volume; ``D2cm%``: maximum dose 2 cm from the target, % of the prescription."""

GAMMA_STRUCTURE: Final = "dose_grid"
"""Structure name of the gamma criterion: gamma is evaluated over the whole dose grid above the low-dose threshold,
not over one structure."""

GAMMA_METRIC: Final = "gamma_pass_rate_percent"
"""Metric name of the gamma criterion (the % of evaluated points with gamma <= 1)."""

TG263_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_^~]{0,15}$")
"""A TG-263 primary name: starts with a letter, letters/digits/underscore (and TG-263's ``^``/``~``), at most
16 characters."""

QaStage = Literal[
    "facility_questionnaire",
    "beam_output_audit",
    "outlining_benchmark",
    "planning_benchmark",
    "dummy_run",
    "complex_treatment_dosimetry_check",
    "virtual_phantom",
    "individual_case_review",
    "treatment_record_review",
    "protocol_compliance_visit",
]
"""Global Harmonisation Group QA stages (Melidis et al. 2014), snake case, with the benchmark case split into the
outlining and the planning benchmark (as :class:`models.enums.QAStage`)."""

QA_STAGES: Final = get_args(QaStage)
"""The :data:`QaStage` values as a tuple."""

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class ProtocolError(ValueError):
    """A protocol file is missing, unreadable or invalid; the message names the file, field and value."""


class Fractionation(_Model):
    """One allowed dose schedule: ``dose_gy`` in ``fractions`` fractions, for an ``indication``.

    A range of schedules is written with ``dose_max_gy`` (doses from ``dose_gy`` to ``dose_max_gy``) and/or
    ``fractions_max``. A size-dependent prescription (e.g. SRS) restricts the schedule to targets whose maximum
    diameter lies in ``(min_target_diameter_mm, max_target_diameter_mm]``.
    """

    dose_gy: float = Field(gt=0, le=100)
    fractions: int = Field(ge=1, le=40)
    dose_max_gy: float | None = Field(default=None, gt=0, le=100)
    fractions_max: int | None = Field(default=None, ge=1, le=40)
    min_target_diameter_mm: float | None = Field(default=None, ge=0)
    max_target_diameter_mm: float | None = Field(default=None, gt=0)
    indication: str = ""

    @model_validator(mode="after")
    def _ranges_ordered(self) -> Fractionation:
        if self.dose_max_gy is not None and self.dose_max_gy <= self.dose_gy:
            raise ValueError(f"dose_max_gy {self.dose_max_gy} must exceed dose_gy {self.dose_gy}")
        if self.fractions_max is not None and self.fractions_max <= self.fractions:
            raise ValueError(f"fractions_max {self.fractions_max} must exceed fractions {self.fractions}")
        low, high = self.min_target_diameter_mm, self.max_target_diameter_mm
        if low is not None and high is not None and high <= low:
            raise ValueError(f"max_target_diameter_mm {high} must exceed min_target_diameter_mm {low}")
        return self

    @property
    def dose_per_fraction_gy(self) -> float:
        """Dose per fraction in Gy (of the lowest dose and fewest fractions of a range)."""
        return self.dose_gy / self.fractions

    def applies_to_diameter(self, diameter_mm: float) -> bool:
        """True when a target of maximum diameter ``diameter_mm`` is in this schedule's size band (a band
        includes its upper bound and excludes its lower bound; no band means every size)."""
        low, high = self.min_target_diameter_mm, self.max_target_diameter_mm
        return (low is None or diameter_mm > low) and (high is None or diameter_mm <= high)


class CriterionSpec(_Model):
    """An outlining criterion as written in a protocol file (see :class:`qa_checks.protocol.Criterion`)."""

    id: Slug
    structure: str
    metric: str
    direction: Literal[">=", "<="]
    per_protocol: float
    acceptable: float
    unit: str | None = None
    description: str = ""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in KNOWN_METRICS:
            raise ValueError(f"unknown metric {value!r}; known metrics: {', '.join(sorted(KNOWN_METRICS))}")
        return value

    @model_validator(mode="after")
    def _levels_ordered(self) -> CriterionSpec:
        expected_unit = KNOWN_METRICS[self.metric]
        if self.unit is not None and self.unit != expected_unit:
            raise ValueError(
                f"unit {self.unit!r} does not match metric {self.metric!r} (levels are in {expected_unit!r})"
            )
        if self.direction == ">=" and self.acceptable > self.per_protocol:
            raise ValueError(
                f"acceptable level {self.acceptable} is stricter than per_protocol {self.per_protocol} "
                "for direction '>='"
            )
        if self.direction == "<=" and self.acceptable < self.per_protocol:
            raise ValueError(
                f"acceptable level {self.acceptable} is stricter than per_protocol {self.per_protocol} "
                "for direction '<='"
            )
        return self

    def to_criterion(self) -> Criterion:
        """Convert to the pure :class:`qa_checks.protocol.Criterion`."""
        return Criterion(
            id=self.id,
            structure=self.structure,
            metric=self.metric,
            direction=self.direction,
            per_protocol=self.per_protocol,
            acceptable=self.acceptable,
            unit=self.unit or KNOWN_METRICS[self.metric],
            description=self.description,
        )


class OutliningSection(_Model):
    """Outlining benchmark criteria."""

    criteria: list[CriterionSpec] = Field(min_length=1)
    rationale: str = ""


class CredentialRequirement(_Model):
    """A credential a centre must hold for the protocol: a QA ``stage`` for a ``technique``.

    ``scope`` ``"technique"`` (default): the stage is part of the technique credential, which carries over to
    every trial needing the technique. ``"trial"``: only this protocol's trial needs it (e.g. an individual case
    review of the first patient).
    """

    stage: QaStage
    technique: Slug
    scope: Literal["technique", "trial"] = "technique"
    description: str = ""


class Protocol(_Model):
    """A validated trial protocol. Build with :func:`load_protocol` or :func:`parse_protocol`."""

    id: Slug
    version: str = Field(min_length=1, max_length=32)
    title: str = Field(min_length=1)
    techniques: list[Slug] = Field(min_length=1)
    fractionations: list[Fractionation] = Field(min_length=1)
    required_structures: list[str] = Field(min_length=1)
    outlining: OutliningSection | None = None
    planning: PlanningSection | None = None
    gamma: GammaSection | None = None
    required_credentials: list[CredentialRequirement] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    notes: str = ""

    @field_validator("required_structures")
    @classmethod
    def _tg263_names(cls, names: list[str]) -> list[str]:
        for i, name in enumerate(names):
            if not TG263_NAME.match(name):
                raise ValueError(f"[{i}] {name!r} is not a TG-263 name (letter first, <= 16 characters)")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate names in {names}")
        return names

    @model_validator(mode="after")
    def _criteria_consistent(self) -> Protocol:
        if self.outlining is None:
            return self
        seen: set[str] = set()
        for i, spec in enumerate(self.outlining.criteria):
            if spec.id in seen:
                raise ValueError(f"outlining.criteria[{i}].id: duplicate criterion id {spec.id!r}")
            seen.add(spec.id)
            if spec.structure not in self.required_structures:
                raise ValueError(
                    f"outlining.criteria[{i}].structure: {spec.structure!r} is not in required_structures "
                    f"{self.required_structures}"
                )
        return self

    @model_validator(mode="after")
    def _planning_consistent(self) -> Protocol:
        planning = self.planning
        if planning is None:
            return self
        required = self.required_structures
        problems: list[str] = []
        for name, parts in planning.composite_structures.items():
            if not TG263_NAME.match(name):
                problems.append(f"planning.composite_structures: {name!r} is not a TG-263 name")
            if name in required:
                problems.append(f"planning.composite_structures.{name}: {name!r} is already a required structure")
            missing = [p for p in parts if p not in required]
            if not parts or missing:
                problems.append(
                    f"planning.composite_structures.{name}: parts {missing or parts} must be non-empty required "
                    f"structures {required}"
                )
        rx = planning.prescription
        if rx.target not in required:
            problems.append(f"planning.prescription.target: {rx.target!r} is not in required_structures {required}")
        for i, spec in enumerate([rx.coverage, *rx.additional_coverage]):
            where = "coverage" if i == 0 else f"additional_coverage[{i - 1}]"
            if spec.structure not in required:
                problems.append(
                    f"planning.prescription.{where}.structure: {spec.structure!r} is not in required_structures "
                    f"{required}"
                )
        numbers = self.fraction_numbers
        known = [*required, *planning.composite_structures]
        seen: set[str] = set()
        for i, limit in enumerate(planning.oar_limits):
            where = f"planning.oar_limits[{i}]"
            if limit.structure not in known:
                problems.append(
                    f"{where}.structure: {limit.structure!r} is neither a required structure nor a composite "
                    f"structure ({', '.join(known)})"
                )
            if limit.fractions not in numbers:
                problems.append(
                    f"{where}.fractions: {limit.fractions} is not a fraction number of the protocol's "
                    f"fractionations {sorted(numbers)}"
                )
            if limit.criterion_id in seen:
                problems.append(
                    f"{where}: duplicate limit on {limit.structure} {limit.metric} for {limit.fractions} fx"
                )
            seen.add(limit.criterion_id)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def fraction_numbers(self) -> frozenset[int]:
        """Every number of fractions the protocol's fractionations allow (ranges included)."""
        numbers: set[int] = set()
        for f in self.fractionations:
            numbers.update(range(f.fractions, (f.fractions_max or f.fractions) + 1))
        return frozenset(numbers)

    @property
    def planning_verified(self) -> bool:
        """False when the planning section is marked ``verified: false`` (numbers to be checked against the trial
        protocol before use); True when verified or when there is no planning section."""
        return self.planning is None or self.planning.verified

    def fractionations_for_diameter(self, diameter_mm: float) -> list[Fractionation]:
        """The schedules allowed for a target of maximum diameter ``diameter_mm`` (see
        :meth:`Fractionation.applies_to_diameter`)."""
        return [f for f in self.fractionations if f.applies_to_diameter(diameter_mm)]

    def outlining_criteria(self) -> tuple[Criterion, ...]:
        """The outlining criteria as :class:`qa_checks.protocol.Criterion` objects (empty if none)."""
        if self.outlining is None:
            return ()
        return tuple(spec.to_criterion() for spec in self.outlining.criteria)

    def _require_planning(self) -> PlanningSection:
        if self.planning is None:
            raise ProtocolError(f"protocol {self.id!r} has no planning section")
        return self.planning

    def _require_gamma(self) -> GammaSection:
        if self.gamma is None:
            raise ProtocolError(f"protocol {self.id!r} has no gamma section")
        return self.gamma

    def conformity_limits(self, ptv_volume_cc: float) -> ConformityLimits:
        """The protocol's own R50% / D2cm limits for a PTV of ``ptv_volume_cc`` cc, interpolated linearly in PTV
        volume between the rows of ``planning.conformity.by_ptv_cc`` (as
        :func:`qa_checks.plan_indices.rtog_conformity_limits` does for the RTOG table), with its R100% limits.

        Outside the table the nearest row is used, with ``clamped=True`` and a logged warning.

        Raises:
            ProtocolError: no planning section, no conformity table, or a PTV volume that is not a positive
                finite number of cc.
        """
        conformity = self._require_planning().conformity
        if conformity is None or not conformity.by_ptv_cc:
            raise ProtocolError(f"protocol {self.id!r}: planning.conformity has no by_ptv_cc table")
        v = float(ptv_volume_cc)
        if not math.isfinite(v) or v <= 0:
            raise ProtocolError(
                f"protocol {self.id!r}: ptv_volume_cc must be a positive number of cc, got {ptv_volume_cc!r}"
            )
        rows = conformity.by_ptv_cc
        volumes = [row.ptv_cc for row in rows]
        clamped = v < volumes[0] or v > volumes[-1]
        if clamped:
            logger.warning(
                "protocol %s: PTV volume %.4g cc is outside the conformity table (%.4g-%.4g cc): using the nearest row",
                self.id,
                v,
                volumes[0],
                volumes[-1],
            )

        def at(values: list[float]) -> float:
            return float(np.interp(v, volumes, values))

        return ConformityLimits(
            ptv_volume_cc=v,
            r50_no_deviation=at([row.r50.per_protocol for row in rows]),
            r50_minor_deviation=at([row.r50.acceptable for row in rows]),
            d2cm_no_deviation_percent=at([row.d2cm_percent.per_protocol for row in rows]),
            d2cm_minor_deviation_percent=at([row.d2cm_percent.acceptable for row in rows]),
            r100_no_deviation=conformity.r100_max.per_protocol,
            r100_minor_deviation=conformity.r100_max.acceptable,
            clamped=clamped,
        )

    def _prescription_gy(self, fractions: int) -> float:
        doses = {f.dose_gy for f in self.fractionations if f.dose_max_gy is None and f.fractions == fractions}
        ranged = [f for f in self.fractionations if f.dose_max_gy is not None and f.fractions <= fractions]
        if len(doses) != 1 or ranged:
            raise ProtocolError(
                f"protocol {self.id!r}: the prescription dose for {fractions} fractions is not unique "
                f"({sorted(doses)}{' and dose ranges' if ranged else ''}); pass prescription_gy"
            )
        return doses.pop()

    def planning_criteria(
        self,
        *,
        fractions: int,
        ptv_volume_cc: float | None,
        prescription_gy: float | None = None,
        target: str | None = None,
        include_oars: bool = True,
    ) -> tuple[Criterion, ...]:
        """The planning criteria for a plan in ``fractions`` fractions on a PTV of ``ptv_volume_cc`` cc.

        In order: target coverage, id ``"coverage"`` (``(target, "V100%")`` in %, or the DVH metric, e.g.
        ``(target, "D95%")`` in Gy), then any additional coverage checks (ids from
        :attr:`CoverageSpec.extra_id`, e.g. ``"coverage_d99"`` on ``(target, "D99%")`` in Gy); the target's
        maximum dose as ``(target, "Dmax%")`` (% of the prescription) when the protocol limits it, ``"<="``
        (``"max_dose"``) and, with a lower bound, ``">="`` (``"max_dose_min"``); ``(target, "R100%")``
        ``"<="`` (``"r100"``) and, with a lower bound, ``">="`` (``"r100_min"``); ``(target, "R50%")`` and
        ``(target, "D2cm%")`` from the protocol's table interpolated at ``ptv_volume_cc`` (see
        :meth:`conformity_limits`); then the organ-at-risk limits for ``fractions``, keyed by their
        :mod:`qa_checks.dvh` metric names. Metric names are those of
        :data:`PLAN_INDEX_METRICS` or DVH metric names: the keys a pipeline measures and stores.

        Args:
            fractions: number of fractions of the plan; must be allowed by the protocol.
            ptv_volume_cc: PTV volume in cc; needed when the protocol has a conformity table.
            prescription_gy: total prescription dose, Gy; needed only for a ``D<x>%`` coverage metric when the
                protocol does not fix a single dose for ``fractions``.
            target: the target these criteria are for, when a plan has several (e.g. ``"PTV_2"``); its criteria
                name it as their structure and their ids end in ``@<target>``. ``None``: the protocol's
                prescription target.
            include_oars: False to leave out the organ-at-risk limits (they are shared by every target).

        Raises:
            ProtocolError: no planning section; ``fractions`` not allowed; the protocol has organ-at-risk limits
                but none for ``fractions``; a conformity table but no ``ptv_volume_cc``; an undetermined
                prescription dose.
        """
        planning = self._require_planning()
        if fractions not in self.fraction_numbers:
            raise ProtocolError(
                f"protocol {self.id!r}: {fractions} fractions is not one of its fractionations "
                f"{sorted(self.fraction_numbers)}"
            )
        rx = planning.prescription
        own = target is None or target == rx.target
        target = rx.target if target is None else target
        suffix = "" if own else f"@{target}"
        criteria = [
            self._coverage_criterion(cov_id + suffix, cov, rx.target, target, fractions, prescription_gy)
            for cov_id, cov in rx.coverage_specs
        ]
        if rx.max_dose_percent is not None:
            levels = rx.max_dose_percent
            criteria.append(
                Criterion(
                    "max_dose" + suffix, target, "Dmax%", "<=", levels.per_protocol, levels.acceptable, "%",
                    _sourced(
                        f"maximum dose of {target} <= {levels.per_protocol:g}% / {levels.acceptable:g}% of the "
                        "prescription",
                        levels.source,
                    ),
                )
            )  # fmt: skip
            if levels.lower is not None:
                low = levels.lower
                criteria.append(
                    Criterion(
                        "max_dose_min" + suffix, target, "Dmax%", ">=", low.per_protocol, low.acceptable, "%",
                        _sourced(
                            f"maximum dose of {target} >= {low.per_protocol:g}% / {low.acceptable:g}% of the "
                            "prescription",
                            low.source,
                        ),
                    )
                )  # fmt: skip
        conformity = planning.conformity
        if conformity is not None:
            source = conformity.source or self.id
            r100 = conformity.r100_max
            criteria.append(
                Criterion("r100" + suffix, target, "R100%", "<=", r100.per_protocol, r100.acceptable, "1", source)
            )
            if conformity.r100_min is not None:
                r100_min = conformity.r100_min
                criteria.append(
                    Criterion(
                        "r100_min" + suffix, target, "R100%", ">=", r100_min.per_protocol, r100_min.acceptable, "1",
                        source,
                    )
                )  # fmt: skip
            if conformity.by_ptv_cc:
                if ptv_volume_cc is None:
                    raise ProtocolError(
                        f"protocol {self.id!r}: its conformity table needs the PTV volume (ptv_volume_cc), got None"
                    )
                limits = self.conformity_limits(ptv_volume_cc)
                where = f"{source}, interpolated for a {limits.ptv_volume_cc:.4g} cc PTV"
                if limits.clamped:
                    where += " (outside the table: nearest row)"
                criteria.append(
                    Criterion(
                        "r50" + suffix,
                        target,
                        "R50%",
                        "<=",
                        limits.r50_no_deviation,
                        limits.r50_minor_deviation,
                        "1",
                        where,
                    )
                )
                criteria.append(
                    Criterion(
                        "d2cm" + suffix, target, "D2cm%", "<=", limits.d2cm_no_deviation_percent,
                        limits.d2cm_minor_deviation_percent, "%", where,
                    )
                )  # fmt: skip
        if planning.oar_limits and include_oars:
            chosen = [limit for limit in planning.oar_limits if limit.fractions == fractions]
            if not chosen:
                have = sorted({limit.fractions for limit in planning.oar_limits})
                raise ProtocolError(
                    f"protocol {self.id!r}: planning.oar_limits has no limits for {fractions} fractions "
                    f"(limits exist for {', '.join(str(n) for n in have)} fractions)"
                )
            for limit in chosen:
                criteria.append(
                    Criterion(
                        limit.criterion_id, limit.structure, limit.metric, limit.direction, limit.optimal,
                        limit.mandatory, limit.unit or dvh_metric_unit(limit.metric),
                        _sourced(f"{limit.metric} of {limit.structure}, {limit.fractions} fx", limit.source),
                    )
                )  # fmt: skip
        return tuple(criteria)

    def _coverage_criterion(
        self,
        criterion_id: str,
        cov: CoverageSpec,
        rx_target: str,
        target: str,
        fractions: int,
        prescription_gy: float | None,
    ) -> Criterion:
        """One coverage criterion for ``target`` (a spec on the prescription target is moved to ``target``)."""
        structure = target if cov.structure == rx_target else cov.structure
        text = f"{cov.metric} of {structure} >= {cov.per_protocol:g}% / {cov.acceptable:g}%"
        if cov.metric == "V100%":
            return Criterion(
                criterion_id, structure, "V100%", ">=", cov.per_protocol, cov.acceptable, "%",
                _sourced(f"{text} of the volume receiving the prescription", cov.source),
            )  # fmt: skip
        dose_gy = self._prescription_gy(fractions) if prescription_gy is None else float(prescription_gy)
        return Criterion(
            criterion_id, structure, cov.metric, ">=", cov.per_protocol / 100 * dose_gy, cov.acceptable / 100 * dose_gy,
            "Gy", _sourced(f"{text} of the prescription {dose_gy:g} Gy", cov.source),
        )  # fmt: skip

    def composite_structures(self) -> dict[str, tuple[str, ...]]:
        """Composite structure name -> the required structures whose union it is (empty without planning)."""
        if self.planning is None:
            return {}
        return {name: tuple(parts) for name, parts in self.planning.composite_structures.items()}

    def gamma_criterion(self) -> Criterion:
        """The TPS-check criterion: ``(GAMMA_STRUCTURE, "gamma_pass_rate_percent")`` ``">="`` the protocol's
        pass-rate levels, in %.

        Raises:
            ProtocolError: the protocol has no gamma section.
        """
        gamma = self._require_gamma()
        levels = gamma.pass_rate_percent
        description = _sourced(f"gamma pass rate at {gamma.label}", gamma.source)
        return Criterion(
            "gamma_pass_rate", GAMMA_STRUCTURE, GAMMA_METRIC, ">=", levels.per_protocol, levels.acceptable, "%",
            description,
        )  # fmt: skip

    def gamma_parameters(self) -> dict[str, Any]:
        """Keyword arguments of :func:`qa_checks.gamma.gamma_3d` for the protocol's gamma section:
        ``dose_percent``, ``distance_mm``, ``lower_cutoff_percent`` and ``local``.

        Raises:
            ProtocolError: the protocol has no gamma section.
        """
        gamma = self._require_gamma()
        return {
            "dose_percent": gamma.dose_percent,
            "distance_mm": gamma.distance_mm,
            "lower_cutoff_percent": gamma.low_dose_threshold_percent,
            "local": gamma.normalisation == "local",
        }


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<top level>"


_FIELD_PREFIX: Final = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        loc = _loc_to_path(tuple(err["loc"]))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        # A model-level check names its own field path in the message.
        for part in msg.split("\n"):
            own_path = not err["loc"] and _FIELD_PREFIX.match(part)
            detail = f"{source}: {part}" if own_path else f"{source}: {loc}: {part}"
            if err["type"] not in ("missing", "value_error"):
                detail += f" (got {err.get('input')!r})"
            lines.append(detail)
    return "\n".join(lines)


def parse_protocol(data: Any, *, source: str = "<protocol>") -> Protocol:
    """Validate already-parsed YAML/JSON data as a :class:`Protocol`.

    Raises:
        ProtocolError: one line per problem, each ``"{source}: {field.path}: {message} (got {value!r})"``.
    """
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: <top level>: expected a mapping of protocol fields, got {type(data).__name__}")
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(_format_validation_error(source, exc)) from None


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, error=ProtocolError, what="protocol file")


def load_protocol(protocol_id_or_path: str | Path) -> Protocol:
    """Load and validate a protocol by id (a file ``<id>.yaml`` in :data:`PROTOCOL_DIR`) or by path.

    A :class:`~pathlib.Path`, or a string containing a path separator or ending in ``.yaml``/``.yml``, is read as
    a path. The protocol's ``id`` must equal the file name stem.

    Raises:
        ProtocolError: unknown id (listing the known ones), unreadable file, invalid YAML, or invalid content;
            the message names the file and the field path.
    """
    text = str(protocol_id_or_path)
    is_path = isinstance(protocol_id_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml"))
    if is_path:
        path = Path(protocol_id_or_path)
        if not path.is_file():
            raise ProtocolError(f"{path}: protocol file not found")
    else:
        path = PROTOCOL_DIR / f"{text}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml"))) or "none"
            raise ProtocolError(f"unknown protocol id {text!r}; known protocols: {known}")
    protocol = parse_protocol(_read_yaml(path), source=str(path))
    if protocol.id != path.stem:
        raise ProtocolError(f"{path}: id: {protocol.id!r} does not match the file name (expected {path.stem!r})")
    if not protocol.planning_verified:
        logger.warning(
            "%s: planning section of protocol %s is marked 'verified: false': check its numbers against the trial "
            "protocol before relying on them",
            path,
            protocol.id,
        )
    logger.debug("loaded protocol %s version %s from %s", protocol.id, protocol.version, path)
    return protocol


def list_protocols() -> list[Protocol]:
    """Load every shipped protocol, sorted by id.

    Raises:
        ProtocolError: if any shipped file is invalid.
    """
    return [load_protocol(path) for path in sorted(PROTOCOL_DIR.glob("*.yaml"))]
