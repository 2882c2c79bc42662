"""Submission pages: the list (``/submissions``, a centre's own; everyone's for staff and commissioners) and one
submission (``/submissions/{id}``) whose steps update themselves by polling ``GET /api/v1/submissions/{id}``.

Both read through the API's own functions and policy: centres see only their own provider's submissions (403 for
another's), staff and commissioners see any.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response
from sqlmodel import Session

from flows.questionnaire import questionnaire_case_code
from models.enums import QAStage, Role, SubmissionStatus
from models.tables import Provider, Submission, User
from portal.api_submissions import list_submissions
from portal.deps import CurrentUser, SessionDep
from portal.pages import render
from portal.pages.words import FINAL_STATUSES, HELPERS, SUBMISSION_STEPS

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
"""Submissions per page of the list."""

QUESTIONNAIRE_PREFIX = questionnaire_case_code("")
"""Case codes of facility questionnaires start with this (``questionnaire-<technique>``)."""


@router.get("/submissions")
def submissions_page(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    status_: Annotated[SubmissionStatus | None, Query(alias="status")] = None,
    case: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    listing = list_submissions(
        user=user,
        session=session,
        provider=None,
        status_=status_,
        stage=None,
        case=case or None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    return render(
        request,
        "centre/submissions.html",
        user,
        listing=listing,
        status_filter=status_.value if status_ else "",
        case_filter=case or "",
        statuses=[s.value for s in SubmissionStatus],
        show_provider=user.role is not Role.CENTRE,
        page_size=PAGE_SIZE,
        **HELPERS,
    )


def readable_submission(session: Session, user: User, submission_id: int) -> Submission:
    """The submission if ``user`` may read it: the policy of ``GET /api/v1/submissions/{id}`` (centres only their
    own provider's, 403 otherwise; 404 when it does not exist)."""
    sub = session.get(Submission, submission_id)
    if user.role is Role.CENTRE and (sub is None or sub.provider_id != user.provider_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a centre token may only read its own submissions")
    if sub is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no submission with id {submission_id}")
    return sub


def step_states(current: str) -> list[dict[str, str]]:
    """Each step of :data:`SUBMISSION_STEPS` with its state for a submission in status ``current``: ``done``,
    ``current`` (running now), ``todo``, or ``skipped`` (not reached: the submission was rejected)."""
    order = [value for value, _, _ in SUBMISSION_STEPS]
    steps = []
    for n, (value, name, meaning) in enumerate(SUBMISSION_STEPS):
        if current == SubmissionStatus.REJECTED.value:
            state = "done" if n == 0 else "skipped"
        else:
            reached = order.index(current)
            state = "done" if n <= reached else "current" if n == reached + 1 else "todo"
        steps.append({"step": value, "name": name, "meaning": meaning, "state": state})
    return steps


def again_url(case_label: str) -> str:
    """Where to submit again for a case ``code@version``: the questionnaire page, or the upload page."""
    code = case_label.split("@")[0]
    if code.startswith(QUESTIONNAIRE_PREFIX):
        return f"/questionnaire/{code.removeprefix(QUESTIONNAIRE_PREFIX)}"
    return f"/upload?case={code}"


@router.get("/submissions/{submission_id}")
def submission_page(submission_id: int, request: Request, user: CurrentUser, session: SessionDep) -> Response:
    from portal.app import _submission_json  # the API's own JSON, so the page and the API cannot disagree

    sub = readable_submission(session, user, submission_id)
    detail: dict[str, Any] = _submission_json(session, sub)
    provider = session.get(Provider, sub.provider_id)
    outcomes = detail["outcomes"]
    current = next((o for o in outcomes if o["current"]), None)
    return render(
        request,
        "centre/submission.html",
        user,
        sub=detail,
        provider=provider,
        steps=step_states(detail["status"]),
        final=detail["status"] in FINAL_STATUSES,
        current=current,
        earlier=[o for o in outcomes if not o["current"]],
        is_owner=user.role is Role.CENTRE,
        again_url=again_url(detail["case"]),
        stage_label=QAStage(detail["stage"]).label,
        **HELPERS,
    )
