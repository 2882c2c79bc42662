"""Facility questionnaire forms as data: YAML files in ``benchmarks/questionnaires/`` and a validating loader.

The facility questionnaire is the first QA stage (Global Harmonisation Group vocabulary) of a technique credential.
One form per technique code lives in ``benchmarks/questionnaires/<technique>.yaml``; questions shared by several
forms live in ``benchmarks/questionnaires/shared/<part>.yaml`` and are pulled in with ``include: [<part>, ...]``.
A form may set or replace the requirement of an included question with ``requirements: {<question id>: ...}``, so
a shared question (e.g. the dose-calculation algorithm) can carry a technique-specific requirement.

A question has an answer ``type``:

* ``yes_no``: answered ``yes``/``no`` (or a boolean); stored as a boolean.
* ``choice``: one of the question's ``options`` (by option value); stored as the option value.
* ``number``: a number in the question's ``unit``, optionally limited to ``[min, max]`` and to whole numbers
  (``integer: true``); stored as a number.
* ``text``: free text, stripped; blank text counts as unanswered.
* ``date``: an ISO date ``YYYY-MM-DD`` not after the evaluation date; stored as that string.

A ``requirement`` states two levels, like every other check in rtqa: ``per_protocol`` and the looser
``acceptable`` level (acceptable variation). Each level is one of: ``one_of`` (yes_no / choice answers that meet it),
``min``/``max`` (number, inclusive bounds), ``within_days`` (date: at most that many days before the evaluation
date). A requirement names its ``sources`` (ids from the form's ``sources:`` list) or is marked
``library_default: true`` with a ``rationale``. Reason sentences shown to the centre are written in the form:
``unacceptable_reason`` (unless every valid answer meets the acceptable level) and, when the levels differ,
``variation_reason``; they may use ``{answer}`` (the answer as
shown to a person) and, for dates, ``{age_days}``.

A question with ``only_if: {question: <id>, one_of: [...]}`` applies only when an earlier yes_no / choice question
was answered with one of those values (e.g. MLC questions only for C-arm linacs).

Errors name the file, the field path and the bad value, e.g.
``sabr_lung.yaml: questions[3].type: Input should be 'yes_no', 'choice', 'number', 'text' or 'date' (got 'bool')``.
"""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from benchmarks.yaml_files import read_yaml

__all__ = [
    "QUESTIONNAIRE_DIR",
    "SHARED_DIR",
    "AnswerType",
    "Condition",
    "Level",
    "Option",
    "Question",
    "Questionnaire",
    "QuestionnaireFileError",
    "Requirement",
    "SourceRef",
    "list_questionnaires",
    "load_questionnaire",
    "parse_questionnaire",
]

logger = logging.getLogger(__name__)

QUESTIONNAIRE_DIR: Final = Path(__file__).resolve().parent / "questionnaires"
"""Directory of the shipped forms (``<technique>.yaml``)."""

SHARED_DIR: Final = QUESTIONNAIRE_DIR / "shared"
"""Directory of the shared question files that forms ``include`` (``<part>.yaml``)."""

AnswerType = Literal["yes_no", "choice", "number", "text", "date"]
"""The kinds of answer a question takes."""

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
QuestionId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]

_TEMPLATE_FIELDS: Final = {"answer", "age_days"}

_M = TypeVar("_M", bound=BaseModel)


class QuestionnaireFileError(ValueError):
    """A questionnaire form or shared file is missing, unreadable or invalid; the message names the file, the field
    path and the value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SourceRef(_Model):
    """A published source a form cites: ``id`` (referenced by questions and requirements), ``citation``, ``url``."""

    id: Slug
    citation: str = Field(min_length=1)
    url: str = ""


class Option(_Model):
    """One option of a ``choice`` question: the stored ``value`` and the ``label`` shown to people."""

    value: Slug
    label: str = Field(min_length=1)


class Condition(_Model):
    """The question applies only when question ``question`` was answered with one of ``one_of``."""

    question: QuestionId
    one_of: list[bool | str] = Field(min_length=1)


class Level(_Model):
    """One level of a requirement; which fields are allowed depends on the question's answer type.

    Attributes:
        one_of: yes_no (booleans) or choice (option values) answers that meet the level.
        min, max: number answers meet the level when ``min <= answer <= max`` (either bound may be absent).
        within_days: date answers meet the level when at most this many days before the evaluation date.
    """

    one_of: list[bool | str] | None = Field(default=None, min_length=1)
    min: float | None = None
    max: float | None = None
    within_days: int | None = Field(default=None, ge=0)


class Requirement(_Model):
    """What the protocol needs of an answer, at two levels (see the module docstring)."""

    per_protocol: Level
    acceptable: Level
    unacceptable_reason: str = ""
    variation_reason: str = ""
    sources: list[Slug] = Field(default_factory=list)
    library_default: bool = False
    rationale: str = ""

    @model_validator(mode="after")
    def _sourced(self) -> Requirement:
        problems = []
        if not self.sources and not (self.library_default and self.rationale):
            problems.append("a requirement needs sources, or library_default: true with a rationale")
        if self.library_default and self.sources:
            problems.append("library_default: true and sources are exclusive: cite the source or call it a default")
        if self.acceptable != self.per_protocol and not self.variation_reason:
            problems.append("variation_reason is required when the acceptable level differs from per_protocol")
        for name in ("unacceptable_reason", "variation_reason"):
            text = getattr(self, name)
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                problems.append(f"{name}: malformed template {text!r}: {exc}")
                continue
            unknown = fields - _TEMPLATE_FIELDS
            if unknown:
                problems.append(
                    f"{name}: unknown placeholder(s) {sorted(unknown)} in {text!r}; use {{answer}} or {{age_days}}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _range_problem(per: Level, acc: Level) -> str | None:
    """A message when the acceptable number range does not contain the per-protocol range."""
    low_ok = acc.min is None or (per.min is not None and acc.min <= per.min)
    high_ok = acc.max is None or (per.max is not None and acc.max >= per.max)
    if low_ok and high_ok:
        return None
    return (
        f"acceptable range [{acc.min}, {acc.max}] must contain the per_protocol range [{per.min}, {per.max}] "
        "(the acceptable level is never stricter)"
    )


class Question(_Model):
    """One question of a form (see the module docstring for the answer types and requirement levels)."""

    id: QuestionId
    text: str = Field(min_length=1)
    type: AnswerType
    required: bool
    help: str = ""
    options: list[Option] | None = None
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    integer: bool = False
    only_if: Condition | None = None
    requirement: Requirement | None = None
    sources: list[Slug] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        problems = self._shape_problems()
        if self.requirement is not None and not problems:
            problems += self._requirement_problems(self.requirement)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _shape_problems(self) -> list[str]:
        problems: list[str] = []
        numeric = {"unit": self.unit, "min": self.min, "max": self.max}
        if self.type == "choice":
            values = [o.value for o in self.options or []]
            if len(values) < 2:
                problems.append(f"options: a choice question needs at least 2 options, got {len(values)}")
            if len(set(values)) != len(values):
                problems.append(f"options: duplicate option values in {values}")
        elif self.options is not None:
            problems.append(f"options: only choice questions have options (type is {self.type!r})")
        if self.type == "number":
            if not self.unit:
                problems.append("unit: a number question needs a unit (use '1' for a plain count)")
            if self.min is not None and self.max is not None and self.min > self.max:
                problems.append(f"min {self.min:g} exceeds max {self.max:g}")
        else:
            extra = [name for name, value in numeric.items() if value is not None] + (
                ["integer"] if self.integer else []
            )
            if extra:
                problems.append(f"{', '.join(extra)}: only number questions have these (type is {self.type!r})")
        return problems

    def _requirement_problems(self, req: Requirement) -> list[str]:
        problems: list[str] = []
        allowed = {
            "yes_no": {"one_of"},
            "choice": {"one_of"},
            "number": {"min", "max"},
            "date": {"within_days"},
            "text": set(),
        }[self.type]
        if self.type == "text":
            return ["requirement: text questions take no requirement (use required: true to demand an answer)"]
        for name, level in (("per_protocol", req.per_protocol), ("acceptable", req.acceptable)):
            used = {field for field in ("one_of", "min", "max", "within_days") if getattr(level, field) is not None}
            if not used:
                problems.append(f"requirement.{name}: empty level; a {self.type} question uses {sorted(allowed)}")
            elif used - allowed:
                problems.append(
                    f"requirement.{name}: {sorted(used - allowed)} do not apply to a {self.type} question "
                    f"(use {sorted(allowed)})"
                )
            for value in level.one_of or []:
                problem = self.check_value_problem(value)
                if problem:
                    problems.append(f"requirement.{name}.one_of: {problem}")
        if problems:
            return problems
        per, acc = req.per_protocol, req.acceptable
        if per.one_of is not None and acc.one_of is not None and not set(per.one_of) <= set(acc.one_of):
            problems.append(
                f"requirement: acceptable.one_of {acc.one_of} must include every per_protocol answer {per.one_of}"
            )
        if self.type == "number":
            problem = _range_problem(per, acc)
            if problem:
                problems.append(f"requirement: {problem}")
        if not req.unacceptable_reason and not self._admits_every_answer(acc):
            problems.append("requirement.unacceptable_reason: required, since some answers miss the acceptable level")
        if per.within_days is not None and acc.within_days is not None and acc.within_days < per.within_days:
            problems.append(
                f"requirement: acceptable.within_days {acc.within_days} is stricter than per_protocol {per.within_days}"
            )
        return problems

    def _admits_every_answer(self, level: Level) -> bool:
        """True when every valid answer meets ``level`` (so no answer can be unacceptable)."""
        if self.type == "yes_no":
            return set(level.one_of or []) >= {True, False}
        if self.type == "choice":
            return set(level.one_of or []) >= {o.value for o in self.options or []}
        if self.type == "number":
            low_ok = level.min is None or (self.min is not None and level.min <= self.min)
            high_ok = level.max is None or (self.max is not None and level.max >= self.max)
            return low_ok and high_ok
        return False

    def check_value_problem(self, value: bool | str) -> str | None:
        """A message when ``value`` (from a requirement or a condition) is not a possible answer, else ``None``."""
        if self.type == "yes_no":
            return None if isinstance(value, bool) else f"{value!r} is not true/false"
        if self.type == "choice":
            values = [o.value for o in self.options or []]
            return None if value in values else f"{value!r} is not an option value ({', '.join(values)})"
        return f"question {self.id!r} is a {self.type} question; only yes_no and choice answers can be listed"

    def option_label(self, value: str) -> str:
        """The label of option ``value`` (the value itself when unknown)."""
        for option in self.options or []:
            if option.value == value:
                return option.label
        return value


class Questionnaire(_Model):
    """A validated facility questionnaire form, with shared parts already included.

    Build with :func:`load_questionnaire` or :func:`parse_questionnaire`. ``form_id`` is the technique code.
    """

    technique: Slug
    version: str = Field(min_length=1, max_length=32)
    title: str = Field(min_length=1)
    include: list[Slug] = Field(default_factory=list)
    sources: list[SourceRef] = Field(default_factory=list)
    questions: list[Question] = Field(min_length=1)
    notes: str = ""

    @property
    def form_id(self) -> str:
        """The form's identifier: its technique code (one form per technique)."""
        return self.technique

    @property
    def question_ids(self) -> tuple[str, ...]:
        """Question ids in form order."""
        return tuple(q.id for q in self.questions)

    def question(self, question_id: str) -> Question:
        """The question with id ``question_id``.

        Raises:
            KeyError: naming the id and the form.
        """
        for q in self.questions:
            if q.id == question_id:
                return q
        raise KeyError(f"form {self.form_id!r} has no question {question_id!r}")


class _FormFile(_Model):
    """A form file as written: its own questions plus includes and requirement overrides."""

    technique: Slug
    version: str = Field(min_length=1, max_length=32)
    title: str = Field(min_length=1)
    include: list[Slug] = Field(default_factory=list)
    sources: list[SourceRef] = Field(default_factory=list)
    questions: list[Question] = Field(default_factory=list)
    requirements: dict[str, Requirement] = Field(default_factory=dict)
    notes: str = ""


class _SharedFile(_Model):
    """A shared part as written: sources and questions only."""

    sources: list[SourceRef] = Field(default_factory=list)
    questions: list[Question] = Field(min_length=1)
    notes: str = ""


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<top level>"


def _format_validation_error(source: str, error: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in error.errors():
        loc = _loc_to_path(tuple(err["loc"]))
        where = f"{prefix}.{loc}" if prefix and err["loc"] else (prefix or loc)
        msg = err["msg"].removeprefix("Value error, ")
        detail = f"{source}: {where}: {msg}"
        if err["type"] not in ("missing", "value_error"):
            detail += f" (got {err.get('input')!r})"
        lines.append(detail)
    return "\n".join(lines)


def _validate(model: type[_M], data: Any, source: str, prefix: str = "") -> _M:
    if not isinstance(data, dict):
        raise QuestionnaireFileError(f"{source}: <top level>: expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise QuestionnaireFileError(_format_validation_error(source, exc, prefix)) from None


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, error=QuestionnaireFileError, what="questionnaire file")


def _merge_sources(found: list[tuple[str, SourceRef]]) -> list[SourceRef]:
    merged: dict[str, tuple[str, SourceRef]] = {}
    for where, ref in found:
        if ref.id in merged and merged[ref.id][1] != ref:
            raise QuestionnaireFileError(
                f"{where}: sources: source id {ref.id!r} is already defined differently in {merged[ref.id][0]}"
            )
        merged.setdefault(ref.id, (where, ref))
    return [ref for _, ref in merged.values()]


def _cross_check(placed: list[tuple[str, str, Question]], source_ids: set[str]) -> None:
    """Check ids, conditions and source references across the merged questions; ``placed`` holds (file, field
    path, question) in form order."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for where, path, q in placed:
        if q.id in seen:
            problems.append(f"{where}: {path}.id: duplicate question id {q.id!r} (also in {seen[q.id]})")
        cond = q.only_if
        if cond is not None:
            target = next((p for _, _, p in placed if p.id == cond.question), None)
            if cond.question not in seen or target is None:
                problems.append(
                    f"{where}: {path}.only_if.question: {cond.question!r} is not an earlier question of the form"
                )
            else:
                for value in cond.one_of:
                    problem = target.check_value_problem(value)
                    if problem:
                        problems.append(f"{where}: {path}.only_if.one_of: {problem}")
        cited = [("sources", q.sources)] + ([("requirement.sources", q.requirement.sources)] if q.requirement else [])
        for field, ids in cited:
            for ref in ids:
                if ref not in source_ids:
                    problems.append(
                        f"{where}: {path}.{field}: {ref!r} is not a source id of the form "
                        f"({', '.join(sorted(source_ids)) or 'none defined'})"
                    )
        seen.setdefault(q.id, f"{where}: {path}")
    if problems:
        raise QuestionnaireFileError("\n".join(problems))


def parse_questionnaire(data: Any, *, source: str = "<questionnaire>", shared_dir: Path = SHARED_DIR) -> Questionnaire:
    """Validate already-parsed YAML/JSON form data, including its shared parts from ``shared_dir``.

    Raises:
        QuestionnaireFileError: one line per problem, each ``"{file}: {field.path}: {message} (got {value!r})"``.
    """
    form = _validate(_FormFile, data, source)
    placed: list[tuple[str, str, Question]] = []
    found_sources: list[tuple[str, SourceRef]] = []
    for i, part in enumerate(form.include):
        path = shared_dir / f"{part}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in shared_dir.glob("*.yaml"))) or "none"
            raise QuestionnaireFileError(
                f"{source}: include[{i}]: no shared part {part!r} in {shared_dir} (known parts: {known})"
            )
        shared = _validate(_SharedFile, _read_yaml(path), str(path))
        placed += [(str(path), f"questions[{j}]", q) for j, q in enumerate(shared.questions)]
        found_sources += [(str(path), ref) for ref in shared.sources]
    placed += [(source, f"questions[{j}]", q) for j, q in enumerate(form.questions)]
    found_sources += [(source, ref) for ref in form.sources]
    sources = _merge_sources(found_sources)

    by_id = {q.id: n for n, (_, _, q) in enumerate(placed)}
    for qid, requirement in form.requirements.items():
        if qid not in by_id:
            raise QuestionnaireFileError(f"{source}: requirements.{qid}: no question {qid!r} in the form or its parts")
        q = placed[by_id[qid]][2]
        updated = _validate(
            Question, q.model_dump(exclude_defaults=True) | {"requirement": requirement.model_dump()}, source,
            f"requirements.{qid}",
        )  # fmt: skip
        placed[by_id[qid]] = (source, f"requirements.{qid}", updated)
    _cross_check(placed, {ref.id for ref in sources})
    return Questionnaire(
        technique=form.technique,
        version=form.version,
        title=form.title,
        include=form.include,
        sources=sources,
        questions=[q for _, _, q in placed],
        notes=form.notes,
    )


def load_questionnaire(technique_or_path: str | Path) -> Questionnaire:
    """Load and validate the form of a technique (``<technique>.yaml`` in :data:`QUESTIONNAIRE_DIR`) or a path.

    A :class:`~pathlib.Path`, or a string containing ``/`` or ending in ``.yaml``/``.yml``, is read as a path; its
    shared parts are looked up in ``shared/`` beside it. The form's ``technique`` must equal the file name stem.

    Raises:
        QuestionnaireFileError: unknown technique (listing the known ones), unreadable file, invalid YAML or
            invalid content; the message names the file and the field path.
    """
    text = str(technique_or_path)
    if isinstance(technique_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(technique_or_path)
        if not path.is_file():
            raise QuestionnaireFileError(f"{path}: questionnaire file not found")
    else:
        path = QUESTIONNAIRE_DIR / f"{text}.yaml"
        if not re.fullmatch(r"[a-z0-9_]+", text) or not path.is_file():
            known = ", ".join(sorted(p.stem for p in QUESTIONNAIRE_DIR.glob("*.yaml"))) or "none"
            raise QuestionnaireFileError(f"no questionnaire for technique {text!r}; known techniques: {known}")
    form = parse_questionnaire(_read_yaml(path), source=str(path), shared_dir=path.parent / "shared")
    if form.technique != path.stem:
        raise QuestionnaireFileError(
            f"{path}: technique: {form.technique!r} does not match the file name (expected {path.stem!r})"
        )
    logger.debug("loaded questionnaire %s version %s from %s", form.form_id, form.version, path)
    return form


def list_questionnaires() -> list[Questionnaire]:
    """Load every shipped form, sorted by technique.

    Raises:
        QuestionnaireFileError: if any shipped file is invalid.
    """
    return [load_questionnaire(path) for path in sorted(QUESTIONNAIRE_DIR.glob("*.yaml"))]
