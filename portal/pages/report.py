"""A submission's report: the HTML page, its PDF and its cached figure files.

Who may read a report is who may read the submission (``GET /api/v1/submissions/{id}``): the centre that sent it,
QA staff and commissioners; another centre gets 403 (whether or not the submission exists), nobody signed in is sent
to the sign-in page. The figures are drawn on the first view and cached (:mod:`portal.reporting.cache`); the routes
are plain functions, run in FastAPI's thread pool, so drawing one report holds up no other request.
"""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, Response

from models.enums import Role
from models.tables import Submission, User
from portal.deps import CurrentUser, SessionDep
from portal.pages import render
from portal.reporting.build import build_report
from portal.reporting.cache import figure_file
from portal.reporting.pdf import cached_report_pdf

router = APIRouter(include_in_schema=False)

_CACHE_FOREVER = "private, max-age=31536000, immutable"
"""A figure's URL holds the report's key, so a URL always names the same bytes."""


def readable_submission(session: SessionDep, user: User, submission_id: int) -> Submission:
    """The submission, if ``user`` may read it (the policy of ``GET /api/v1/submissions/{id}``).

    Raises:
        HTTPException: 403 for a centre and another provider's (or no) submission; 404 when there is none.
    """
    sub = session.get(Submission, submission_id)
    if user.role is Role.CENTRE and (sub is None or sub.provider_id != user.provider_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a centre may only read its own submissions' reports")
    if sub is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no submission with id {submission_id}")
    return sub


def _data_dir(request: Request) -> Path:
    return Path(request.app.state.settings.data_dir)


def words(value: str) -> str:
    """``per_protocol`` → ``per protocol``; the gamma criterion's ``dose_grid`` → ``dose grid``."""
    return value.replace("_", " ")


def number(value: float | None, unit: str = "") -> str:
    """A measured value for people: 4 significant figures and its unit."""
    if value is None:
        return "not measured"
    text = f"{value:.4g}"
    return text if unit in ("", "1") else f"{text} {unit}"


@router.get("/submissions/{submission_id}/report")
def report_page(submission_id: int, request: Request, user: CurrentUser, session: SessionDep) -> Response:
    readable_submission(session, user, submission_id)
    report = build_report(session, submission_id, data_dir=_data_dir(request))
    national_uri = None
    if report.national is not None and report.national.svg is not None:
        national_uri = "data:image/svg+xml;base64," + base64.b64encode(report.national.svg).decode()
    return render(
        request,
        "report/submission.html",
        user,
        report=report,
        f=report.facts,
        national_uri=national_uri,
        figure_base=f"/submissions/{submission_id}/report/figures/{report.facts.key}",
        words=words,
        number=number,
    )


@router.get("/submissions/{submission_id}/report.pdf")
def report_pdf(submission_id: int, request: Request, user: CurrentUser, session: SessionDep) -> Response:
    readable_submission(session, user, submission_id)
    report = build_report(session, submission_id, data_dir=_data_dir(request))
    return Response(
        cached_report_pdf(report),
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="rtqa-submission-{submission_id}-report.pdf"',
            "Cache-Control": "private, no-cache",
        },
    )


@router.get("/submissions/{submission_id}/report/figures/{key}/{name}")
def report_figure(
    submission_id: int, key: str, name: str, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    readable_submission(session, user, submission_id)
    path = figure_file(_data_dir(request), submission_id, key, name)
    if path is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail="no such figure: the report has changed since; reload the report"
        )
    return FileResponse(path, headers={"Cache-Control": _CACHE_FOREVER})
