"""The audit log for QA staff: every recorded change, filtered by actor, action, subject and days, newest first,
paged, with a CSV export of what the filters select (``GET /api/v1/audit.csv``). The filters are parsed by the
same dependency as ``GET /api/v1/audit``."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from models.audit_log import audit_events, audit_vocabulary
from portal.api_audit import AuditFilterDep
from portal.deps import SessionDep, StaffOnly
from portal.pages import render
from portal.pages.staff_common import FORMATTERS, PAGE_SIZE, pager

router = APIRouter(include_in_schema=False)

FILTER_NAMES = ("actor", "action", "subject_type", "subject_id", "since", "until")


def subject_link(subject_type: str, subject_id: str) -> str | None:
    """The page of an audit event's subject, when there is one."""
    if subject_type == "submission" and subject_id.isdigit():
        return f"/submissions/{subject_id}/review"
    if subject_type == "app_user" and subject_id.isdigit():
        return f"/staff/users/{subject_id}"
    return None


def _compact(value: dict[str, object] | None) -> str:
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) if value else ""


@router.get("/staff/audit")
def audit(
    request: Request,
    user: StaffOnly,
    session: SessionDep,
    filters: AuditFilterDep,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    events, total = audit_events(session, filters, limit=PAGE_SIZE, offset=offset)
    values = {name: request.query_params.get(name, "") for name in FILTER_NAMES}
    chosen = urlencode([(k, v) for k, v in values.items() if v])
    return render(
        request,
        "staff/audit.html",
        user,
        events=events,
        values=values,
        vocabulary=audit_vocabulary(session),
        csv_url="/api/v1/audit.csv" + (f"?{chosen}" if chosen else ""),
        pager=pager(request, total=total, limit=PAGE_SIZE, offset=offset),
        subject_link=subject_link,
        compact=_compact,
        **FORMATTERS,
    )
