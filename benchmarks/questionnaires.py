"""Facility questionnaire: load a technique's form and evaluate a centre's answers.

The facility questionnaire is the first QA stage of every SABR/SRS technique credential. Forms are data
(``benchmarks/questionnaires/<technique>.yaml``, see :mod:`benchmarks.questionnaire_forms` for the format); this
module checks a centre's answers against a form and decides the outcome with the vocabulary of every other stage
(:class:`qa_checks.protocol.OutcomeLevel`, combined with :func:`qa_checks.protocol.worst_outcome`):

* a malformed answer set (unknown question id, wrong type, number out of range, option not offered, a date after
  the evaluation date) raises :class:`QuestionnaireError` listing every problem; nothing is evaluated;
* otherwise each applicable question is judged: a missing required answer, or an answer that misses the
  requirement's acceptable level, is *unacceptable variation*; an answer that misses the per-protocol level but
  meets the acceptable one is *acceptable variation*; anything else is *per protocol*;
* the outcome is the worst question outcome, and ``reasons`` are plain sentences for the centre, worst first.

Answers are accepted as JSON types: yes/no as a boolean or ``"yes"``/``"no"``/``"y"``/``"n"``/``"true"``/``"false"``
(any case), choices by option value (any case), numbers as numbers or numeric strings, dates as ``"YYYY-MM-DD"`` or
:class:`datetime.date`; ``None`` and blank text count as unanswered. They are normalised for storage to booleans,
option values, numbers (``int`` for whole-number questions), ISO date strings and stripped text. See also
``docs/questionnaire.md``.

Typical use::

    form = load_questionnaire("sabr_lung")
    evaluation = evaluate_answers(form, answers, as_of=date(2026, 12, 1))
    store(evaluation.as_dict())  # JSON-able: outcome, reasons, normalised answers, form id and version
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.questionnaire_forms import (
    QUESTIONNAIRE_DIR,
    SHARED_DIR,
    Level,
    Question,
    Questionnaire,
    QuestionnaireFileError,
    Requirement,
    list_questionnaires,
    load_questionnaire,
    parse_questionnaire,
)
from qa_checks.protocol import OutcomeLevel, worst_outcome

__all__ = [
    "EXAMPLES_DIR",
    "QUESTIONNAIRE_DIR",
    "SHARED_DIR",
    "AnswerProblem",
    "QuestionResult",
    "Questionnaire",
    "QuestionnaireError",
    "QuestionnaireEvaluation",
    "QuestionnaireFileError",
    "evaluate_answers",
    "example_answers",
    "list_questionnaires",
    "load_questionnaire",
    "normalise_answers",
    "parse_questionnaire",
]

EXAMPLES_DIR: Final = QUESTIONNAIRE_DIR / "examples"
"""Directory of example answer files (``<technique>.json``), each answering its form per protocol."""

_YES: Final = {"yes", "y", "true"}
_NO: Final = {"no", "n", "false"}


@dataclass(frozen=True)
class AnswerProblem:
    """One problem with a submitted answer.

    Attributes:
        question_id: the question (or the unknown id) the problem concerns.
        expected: what the question takes, e.g. ``"a number in mm from 1 to 20"``.
        given: the value submitted, as given.
        message: a sentence naming the question id, what was expected and the value given.
    """

    question_id: str
    expected: str
    given: Any
    message: str


class QuestionnaireError(ValueError):
    """The answers do not fit the form. ``problems`` lists every problem; the message has one line per problem."""

    def __init__(self, form_id: str, problems: list[AnswerProblem]) -> None:
        self.form_id = form_id
        self.problems: tuple[AnswerProblem, ...] = tuple(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} with the answers to questionnaire {form_id!r}:"
        super().__init__("\n".join([header, *(f"  {p.message}" for p in self.problems)]))


@dataclass(frozen=True)
class QuestionResult:
    """Outcome of one applicable question: the normalised ``answer`` (``None`` when unanswered), the ``outcome``,
    and a ``reason`` sentence (empty when per protocol)."""

    question_id: str
    answer: Any
    outcome: OutcomeLevel
    reason: str


@dataclass(frozen=True)
class QuestionnaireEvaluation:
    """Outcome of a questionnaire.

    Attributes:
        form_id: the form's id (its technique code); ``form_version``: the form's version.
        technique: the technique code the credential is for.
        outcome: the worst question outcome.
        reasons: the reasons of every question that is not per protocol, worst first, then in form order.
        answers: the normalised answers (question id -> bool, str, int/float or ISO date string), JSON-able.
        results: one result per applicable question, in form order (questions whose ``only_if`` condition is not
            met are left out).
        evaluated_on: the date the answers were judged against (date answers count back from it).
    """

    form_id: str
    form_version: str
    technique: str
    outcome: OutcomeLevel
    reasons: tuple[str, ...]
    answers: Mapping[str, Any]
    results: tuple[QuestionResult, ...]
    evaluated_on: dt.date

    def result(self, question_id: str) -> QuestionResult:
        """The result of question ``question_id``.

        Raises:
            KeyError: the question was not evaluated (unknown, or not applicable to these answers).
        """
        for res in self.results:
            if res.question_id == question_id:
                return res
        raise KeyError(f"question {question_id!r} was not evaluated (unknown id, or its only_if condition is unmet)")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict: ``form_id``, ``form_version``, ``technique``, ``outcome`` (snake-case string),
        ``reasons``, ``answers``, ``results`` (list of ``question_id``/``answer``/``outcome``/``reason``) and
        ``evaluated_on`` (ISO date)."""
        return {
            "form_id": self.form_id,
            "form_version": self.form_version,
            "technique": self.technique,
            "outcome": self.outcome.value,
            "reasons": list(self.reasons),
            "answers": dict(self.answers),
            "results": [
                {"question_id": r.question_id, "answer": r.answer, "outcome": r.outcome.value, "reason": r.reason}
                for r in self.results
            ],
            "evaluated_on": self.evaluated_on.isoformat(),
        }


def _expected(q: Question) -> str:
    if q.type == "yes_no":
        return "yes or no"
    if q.type == "choice":
        return "one of the options " + ", ".join(repr(o.value) for o in q.options or [])
    if q.type == "text":
        return "text"
    if q.type == "date":
        return "a date as YYYY-MM-DD"
    kind = "a whole number" if q.integer else "a number"
    bounds = ""
    if q.min is not None and q.max is not None:
        bounds = f" from {q.min:g} to {q.max:g}"
    elif q.min is not None:
        bounds = f" of at least {q.min:g}"
    elif q.max is not None:
        bounds = f" of at most {q.max:g}"
    return f"{kind} in {q.unit}{bounds}"


def _problem(q: Question, value: Any, what: str) -> AnswerProblem:
    expected = _expected(q)
    message = f"{q.id}: expected {expected}, got {value!r}"
    if what:
        message += f" ({what})"
    return AnswerProblem(q.id, expected, value, message)


def _normalise(q: Question, value: Any, as_of: dt.date) -> Any:
    """The normalised answer, ``None`` for unanswered, or an :class:`AnswerProblem`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if q.type == "yes_no":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _YES | _NO:
            return value.strip().lower() in _YES
        return _problem(q, value, f"wrong type {type(value).__name__}")
    if q.type == "choice":
        if not isinstance(value, str):
            return _problem(q, value, f"wrong type {type(value).__name__}")
        values = {o.value.lower(): o.value for o in q.options or []}
        chosen = values.get(value.strip().lower())
        return chosen if chosen is not None else _problem(q, value, "option not offered")
    if q.type == "text":
        return value.strip() if isinstance(value, str) else _problem(q, value, f"wrong type {type(value).__name__}")
    if q.type == "date":
        return _normalise_date(q, value, as_of)
    return _normalise_number(q, value)


def _normalise_date(q: Question, value: Any, as_of: dt.date) -> Any:
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    elif isinstance(value, str):
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            return _problem(q, value, "not an ISO date")
    else:
        return _problem(q, value, f"wrong type {type(value).__name__}")
    if day > as_of:
        return _problem(q, value, f"date is after the evaluation date {as_of.isoformat()}")
    return day.isoformat()


def _normalise_number(q: Question, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return _problem(q, value, f"wrong type {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        return _problem(q, value, "not a number")
    if not math.isfinite(number):
        return _problem(q, value, "not a finite number")
    if q.integer and number != int(number):
        return _problem(q, value, "not a whole number")
    if (q.min is not None and number < q.min) or (q.max is not None and number > q.max):
        return _problem(q, value, "out of range")
    return int(number) if q.integer or (isinstance(value, int) and not isinstance(value, bool)) else number


def normalise_answers(
    form: Questionnaire, answers: Mapping[str, Any], *, as_of: dt.date | None = None
) -> dict[str, Any]:
    """Check ``answers`` against ``form`` and return them normalised (unanswered questions left out).

    Raises:
        QuestionnaireError: listing every malformed answer (see the module docstring).
    """
    as_of = as_of or dt.date.today()
    problems: list[AnswerProblem] = []
    if not isinstance(answers, Mapping):
        expected = "a mapping of question id to answer"
        raise QuestionnaireError(
            form.form_id, [AnswerProblem("<answers>", expected, answers, f"expected {expected}, got {answers!r}")]
        )
    known = form.question_ids
    normalised: dict[str, Any] = {}
    for qid, value in answers.items():
        if qid not in known:
            close = difflib.get_close_matches(str(qid), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known ids: {', '.join(known)}"
            expected = f"a question id of form {form.form_id!r}"
            problems.append(AnswerProblem(str(qid), expected, value, f"{qid}: unknown question id; {hint}"))
            continue
        result = _normalise(form.question(qid), value, as_of)
        if isinstance(result, AnswerProblem):
            problems.append(result)
        elif result is not None:
            normalised[qid] = result
    if problems:
        raise QuestionnaireError(form.form_id, problems)
    return {qid: normalised[qid] for qid in known if qid in normalised}


def _display(q: Question, answer: Any) -> str:
    if q.type == "yes_no":
        return "yes" if answer else "no"
    if q.type == "choice":
        return q.option_label(answer)
    if q.type == "number":
        return f"{answer:g}" if q.unit in ("1", "") else f"{answer:g} {q.unit}"
    return str(answer)


def _meets(level: Level, answer: Any, age_days: int | None) -> bool:
    if level.one_of is not None:
        return answer in level.one_of
    if level.within_days is not None:
        return age_days is not None and age_days <= level.within_days
    return (level.min is None or answer >= level.min) and (level.max is None or answer <= level.max)


def _judge(q: Question, req: Requirement, answer: Any, as_of: dt.date) -> tuple[OutcomeLevel, str]:
    age_days = (as_of - dt.date.fromisoformat(answer)).days if q.type == "date" else None
    fields = {"answer": _display(q, answer), "age_days": age_days}
    if _meets(req.per_protocol, answer, age_days):
        return OutcomeLevel.PER_PROTOCOL, ""
    if _meets(req.acceptable, answer, age_days):
        return OutcomeLevel.ACCEPTABLE_VARIATION, req.variation_reason.format(**fields)
    return OutcomeLevel.UNACCEPTABLE_VARIATION, req.unacceptable_reason.format(**fields)


def _applies(q: Question, answers: Mapping[str, Any]) -> bool:
    cond = q.only_if
    return cond is None or (cond.question in answers and answers[cond.question] in cond.one_of)


def evaluate_answers(
    form: Questionnaire, answers: Mapping[str, Any], *, as_of: dt.date | None = None
) -> QuestionnaireEvaluation:
    """Evaluate a centre's ``answers`` (question id -> answer) to ``form``.

    Args:
        form: the form, from :func:`load_questionnaire`.
        answers: the answers as submitted (JSON types, or ``datetime.date`` for dates). ``None`` or blank text
            counts as unanswered.
        as_of: the evaluation date: date answers must not be after it, and ``within_days`` levels count back
            from it. Defaults to today (local clock); pass it for reproducible results.

    Returns:
        The evaluation; see :class:`QuestionnaireEvaluation`.

    Raises:
        QuestionnaireError: the answers are malformed; ``problems`` lists each problem.
    """
    as_of = as_of or dt.date.today()
    normalised = normalise_answers(form, answers, as_of=as_of)
    results: list[QuestionResult] = []
    for q in form.questions:
        if not _applies(q, normalised):
            continue
        answer = normalised.get(q.id)
        if answer is None:
            if q.required:
                reason = f"The required question '{q.text}' ({q.id}) was not answered."
                results.append(QuestionResult(q.id, None, OutcomeLevel.UNACCEPTABLE_VARIATION, reason))
            else:
                results.append(QuestionResult(q.id, None, OutcomeLevel.PER_PROTOCOL, ""))
            continue
        if q.requirement is None:
            results.append(QuestionResult(q.id, answer, OutcomeLevel.PER_PROTOCOL, ""))
            continue
        outcome, reason = _judge(q, q.requirement, answer, as_of)
        results.append(QuestionResult(q.id, answer, outcome, reason))

    failing = sorted(
        (r for r in results if r.outcome is not OutcomeLevel.PER_PROTOCOL), key=lambda r: -r.outcome.severity
    )
    return QuestionnaireEvaluation(
        form_id=form.form_id,
        form_version=form.version,
        technique=form.technique,
        outcome=worst_outcome(r.outcome for r in results),
        reasons=tuple(r.reason for r in failing),
        answers=normalised,
        results=tuple(results),
        evaluated_on=as_of,
    )


def example_answers(technique: str) -> dict[str, Any]:
    """The shipped example answers of a technique's form (``examples/<technique>.json``), which pass per protocol
    when evaluated on a date within a year of their end-to-end test date.

    Raises:
        QuestionnaireFileError: no example for ``technique``, or the file is not a JSON object.
    """
    path: Path = EXAMPLES_DIR / f"{technique}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in EXAMPLES_DIR.glob("*.json"))) or "none"
        raise QuestionnaireFileError(f"no example answers for technique {technique!r}; known: {known}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise QuestionnaireFileError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise QuestionnaireFileError(
            f"{path}: <top level>: expected a JSON object of answers, got {type(data).__name__}"
        )
    return data
