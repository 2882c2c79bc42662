"""The facility questionnaire pages: the forms of the centre's techniques (``/questionnaire``) and one form
(``/questionnaire/{technique}``), rendered from its definition (:mod:`benchmarks.questionnaire_forms`) and sent
through the API's own route (:func:`portal.api_stages.submit_questionnaire`, hence :func:`flows.questionnaire.
submit_answers`): malformed answers come back next to their fields; otherwise the page shows the outcome.

The form opens with the centre's latest answers to it, so a resubmission changes only what changed. Unanswered
fields are not sent (a missing required answer is judged, not refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, col, select

from benchmarks.questionnaire_forms import Question, Questionnaire, QuestionnaireFileError, load_questionnaire
from flows.questionnaire import ANSWERS_NAME, questionnaire_case_code
from models.tables import BenchmarkCase, Outcome, Provider, Submission, User
from portal.api_cases import offered_techniques
from portal.api_stages import QuestionnaireAnswers, submit_questionnaire
from portal.deps import CentreOnly, SessionDep
from portal.pages import render
from portal.pages.words import HELPERS

router = APIRouter(include_in_schema=False)

FIELD_PREFIX = "answer."
"""Form fields carrying answers are named ``answer.<question id>`` (apart from the CSRF field)."""


def _form(technique: str) -> Questionnaire:
    try:
        return load_questionnaire(technique)
    except QuestionnaireFileError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None


def questionnaire_submissions(session: Session, provider_id: int, technique: str) -> list[Submission]:
    """The provider's submissions of a technique's questionnaire (every form version), newest first."""
    return list(
        session.exec(
            select(Submission)
            .join(BenchmarkCase, col(BenchmarkCase.id) == col(Submission.case_id))
            .where(
                Submission.provider_id == provider_id,
                BenchmarkCase.case_code == questionnaire_case_code(technique),
            )
            .order_by(col(Submission.id).desc())
        ).all()
    )


def _result(session: Session, sub: Submission | None) -> dict[str, Any] | None:
    if sub is None:
        return None
    outcome = session.exec(
        select(Outcome).where(Outcome.submission_id == sub.id, col(Outcome.is_current).is_(True))
    ).first()
    return {
        "id": sub.id,
        "attempt": sub.attempt,
        "status": sub.status.value,
        "received_at": sub.received_at,
        "outcome": outcome.level.value if outcome else None,
        "reasons": list(outcome.reasons) if outcome else [],
        "justification": outcome.justification if outcome else None,
    }


def _as_field(value: Any) -> str:
    """A stored (normalised) answer as the form field shows it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def stored_answers(sub: Submission | None) -> dict[str, str]:
    """The answers stored with a questionnaire submission, as form field values (empty when unreadable)."""
    if sub is None:
        return {}
    path = Path(sub.storage_path) / ANSWERS_NAME
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): _as_field(v) for k, v in answers.items() if v is not None} if isinstance(answers, dict) else {}


def _condition_text(form: Questionnaire, question: Question) -> str:
    if question.only_if is None:
        return ""
    other = form.question(question.only_if.question)
    shown = [
        ("yes" if v else "no") if isinstance(v, bool) else other.option_label(str(v)) for v in question.only_if.one_of
    ]
    return f"Answer only if “{other.text}” is {' or '.join(shown)}."


@router.get("/questionnaire")
def questionnaire_index(request: Request, user: CentreOnly, session: SessionDep) -> Response:
    forms = []
    for technique in offered_techniques(session):
        try:
            form = load_questionnaire(technique.code)
        except QuestionnaireFileError:
            continue
        subs = questionnaire_submissions(session, user.provider_id or 0, technique.code)
        forms.append({"technique": technique, "form": form, "latest": _result(session, subs[0] if subs else None)})
    return render(request, "centre/questionnaire_index.html", user, forms=forms, **HELPERS)


def _page(
    request: Request,
    user: User,
    session: Session,
    form: Questionnaire,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    general_errors: list[str],
    result: dict[str, Any] | None,
    sent: str | None = None,
    status_code: int = 200,
) -> Response:
    provider = session.get(Provider, user.provider_id)
    return render(
        request,
        "centre/questionnaire.html",
        user,
        status_code=status_code,
        form=form,
        provider=provider,
        values=values,
        errors=errors,
        general_errors=general_errors,
        result=result,
        sent=sent,
        field_prefix=FIELD_PREFIX,
        condition_text=lambda q: _condition_text(form, q),
        **HELPERS,
    )


@router.get("/questionnaire/{technique}")
def questionnaire_page(
    technique: str,
    request: Request,
    user: CentreOnly,
    session: SessionDep,
    submission: int | None = None,
    created: bool | None = None,
) -> Response:
    form = _form(technique)
    subs = questionnaire_submissions(session, user.provider_id or 0, technique)
    shown = next((s for s in subs if s.id == submission), subs[0] if subs else None)
    sent = None
    if submission is not None and shown is not None and shown.id == submission:
        sent = "new" if created else "same"
    return _page(
        request,
        user,
        session,
        form,
        values=stored_answers(shown),
        errors={},
        general_errors=[],
        result=_result(session, shown),
        sent=sent,
    )


@router.post("/questionnaire/{technique}")
async def send_questionnaire(technique: str, request: Request, user: CentreOnly, session: SessionDep) -> Response:
    form = _form(technique)
    posted = await request.form()
    values = {
        key.removeprefix(FIELD_PREFIX): value.strip()
        for key, value in posted.items()
        if key.startswith(FIELD_PREFIX) and isinstance(value, str)
    }
    answers: dict[str, Any] = {qid: value for qid, value in values.items() if value}
    try:
        result = await run_in_threadpool(
            submit_questionnaire, technique, QuestionnaireAnswers(answers=answers), user, session, request, Response()
        )
    except HTTPException as err:
        if err.status_code != status.HTTP_422_UNPROCESSABLE_CONTENT or not isinstance(err.detail, list):
            raise
        errors: dict[str, str] = {}
        general: list[str] = []
        for problem in err.detail:
            qid, message = str(problem["question"]), str(problem["message"])
            if qid in form.question_ids:
                errors[qid] = message.removeprefix(f"{qid}: ")
            else:
                general.append(message)
        subs = questionnaire_submissions(session, user.provider_id or 0, technique)
        return _page(
            request,
            user,
            session,
            form,
            values=values,
            errors=errors,
            general_errors=general,
            result=_result(session, subs[0] if subs else None),
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    target = f"/questionnaire/{technique}?submission={result['submission_id']}&created={str(result['created']).lower()}"
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
