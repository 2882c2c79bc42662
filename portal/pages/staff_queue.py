"""The QA staff queue: submissions filtered by status, QA stage, technique and network, newest first, paged; each
links to its review page. The rows come from the same query as ``GET /api/v1/submissions``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import select

from models.enums import QAStage, SubmissionStatus
from models.tables import Network, Provider, Technique
from portal.api_submissions import submission_list
from portal.deps import SessionDep, StaffOnly
from portal.pages import render
from portal.pages.staff_common import FORMATTERS, PAGE_SIZE, choice, pager

router = APIRouter(include_in_schema=False)


@router.get("/staff/queue")
def queue(
    request: Request,
    user: StaffOnly,
    session: SessionDep,
    status: str | None = None,
    stage: str | None = None,
    technique: str | None = None,
    network: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    body = submission_list(
        session,
        user,
        status_=choice(SubmissionStatus, "status", status),
        stage=choice(QAStage, "stage", stage),
        technique=technique or None,
        network=network or None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    names = {p.code: p.name for p in session.exec(select(Provider)).all()}
    return render(
        request,
        "staff/queue.html",
        user,
        items=body["items"],
        provider_names=names,
        pager=pager(request, total=body["total"], limit=PAGE_SIZE, offset=offset),
        filters={"status": status or "", "stage": stage or "", "technique": technique or "", "network": network or ""},
        statuses=list(SubmissionStatus),
        stages=list(QAStage),
        techniques=session.exec(select(Technique).order_by(Technique.name)).all(),
        networks=session.exec(select(Network).order_by(Network.name)).all(),
        **FORMATTERS,
    )
