"""API routes of the QA stages a centre answers directly: the facility questionnaire."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlmodel import select

from benchmarks.questionnaires import QuestionnaireError, QuestionnaireFileError, load_questionnaire
from flows.questionnaire import QuestionnaireSubmissionError, submit_answers
from models.enums import Role
from models.tables import Provider
from portal.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/v1/questionnaires", tags=["questionnaires"])


class QuestionnaireAnswers(BaseModel):
    """A centre's answers to a technique's facility questionnaire."""

    answers: dict[str, Any] = Field(description="Question id -> answer, as the form's question types say.")
    provider: str | None = Field(
        default=None, description="Provider code; centre tokens answer for their own provider and may omit it."
    )


def _form(technique: str) -> Any:
    try:
        return load_questionnaire(technique)
    except QuestionnaireFileError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None


@router.get("/{technique}")
def questionnaire_form(technique: str, user: CurrentUser) -> dict[str, Any]:
    """The technique's current form: questions, answer types and the levels answers are judged against."""
    return dict(_form(technique).model_dump(mode="json"))


@router.post("/{technique}", status_code=status.HTTP_201_CREATED)
def submit_questionnaire(
    technique: str,
    body: QuestionnaireAnswers,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    response: Response,
) -> dict[str, Any]:
    """Submit answers: malformed ones get 422 naming every problem; otherwise the stage is decided at once (201; 200
    when the same answers were already submitted) and the provider's credentials are re-evaluated."""
    if user.role is Role.COMMISSIONER:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="commissioners cannot submit questionnaires")
    if user.role is Role.CENTRE:
        own = session.get(Provider, user.provider_id)
        assert own is not None
        if body.provider not in (None, own.code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a centre token may only answer for its own provider")
        provider_code = own.code
    elif body.provider is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail='say which provider the answers are for: "provider": CODE'
        )
    else:
        provider_code = body.provider
        if session.exec(select(Provider).where(Provider.code == provider_code)).first() is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown provider code {provider_code!r}")
    _form(technique)
    settings = request.app.state.settings
    try:
        result = submit_answers(
            provider_code,
            technique,
            body.answers,
            actor=user.email,
            database_url=settings.resolved_database_url,
            data_dir=settings.data_dir,
            validity_days=settings.credential_validity_days,
        )
    except QuestionnaireError as err:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"question": p.question_id, "expected": p.expected, "message": p.message} for p in err.problems],
        ) from None
    except QuestionnaireSubmissionError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return {**result.as_dict(), "url": f"/api/v1/submissions/{result.submission_id}"}
