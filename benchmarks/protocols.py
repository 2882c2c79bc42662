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
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from qa_checks.protocol import Criterion

__all__ = [
    "KNOWN_METRICS",
    "PROTOCOL_DIR",
    "Fractionation",
    "Protocol",
    "ProtocolError",
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

TG263_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_^~]{0,15}$")
"""A TG-263 primary name: starts with a letter, letters/digits/underscore (and TG-263's ``^``/``~``), at most
16 characters."""

QaStage = Literal[
    "facility_questionnaire",
    "beam_output_audit",
    "benchmark_case",
    "dummy_run",
    "complex_treatment_dosimetry_check",
    "virtual_phantom",
    "individual_case_review",
    "treatment_record_review",
    "protocol_compliance_visit",
]
"""Global Harmonisation Group QA stages (Melidis et al. 2014), snake case."""

QA_STAGES: Final = get_args(QaStage)
"""The :data:`QaStage` values as a tuple."""

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class ProtocolError(ValueError):
    """A protocol file is missing, unreadable or invalid; the message names the file, field and value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


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
    """A credential a centre must hold for the protocol: a QA ``stage`` for a ``technique``."""

    stage: QaStage
    technique: Slug
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
    planning: dict[str, Any] | None = None
    gamma: dict[str, Any] | None = None
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

    def fractionations_for_diameter(self, diameter_mm: float) -> list[Fractionation]:
        """The schedules allowed for a target of maximum diameter ``diameter_mm`` (see
        :meth:`Fractionation.applies_to_diameter`)."""
        return [f for f in self.fractionations if f.applies_to_diameter(diameter_mm)]

    def outlining_criteria(self) -> tuple[Criterion, ...]:
        """The outlining criteria as :class:`qa_checks.protocol.Criterion` objects (empty if none)."""
        if self.outlining is None:
            return ()
        return tuple(spec.to_criterion() for spec in self.outlining.criteria)


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
        own_path = not err["loc"] and _FIELD_PREFIX.match(msg)
        detail = f"{source}: {msg}" if own_path else f"{source}: {loc}: {msg}"
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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read protocol file: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProtocolError(f"{path}: invalid YAML{where}: {problem}") from None


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
    logger.debug("loaded protocol %s version %s from %s", protocol.id, protocol.version, path)
    return protocol


def list_protocols() -> list[Protocol]:
    """Load every shipped protocol, sorted by id.

    Raises:
        ProtocolError: if any shipped file is invalid.
    """
    return [load_protocol(path) for path in sorted(PROTOCOL_DIR.glob("*.yaml"))]
