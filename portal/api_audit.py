"""API routes to read the audit trail (QA staff): filtered and paged as JSON, or every matching event as CSV.

Filters (all optional, combined with AND): ``actor``, ``action``, ``subject_type``, ``subject_id`` (each exact;
the actor ignoring letter case), ``since`` and ``until`` (days, YYYY-MM-DD, UTC, both included). Newest first.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import Response

from models.audit_log import AuditFilter, audit_events
from models.tables import AuditEvent
from portal.deps import SessionDep, StaffOnly

router = APIRouter(prefix="/api/v1", tags=["audit"])

CSV_COLUMNS = ("id", "at", "actor", "action", "subject_type", "subject_id", "before", "after", "reason")
"""Columns of the CSV export, in order; ``before`` and ``after`` are JSON objects."""

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is read as a formula by spreadsheet programs; such cells get a leading ``'``."""


def _day(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{name}: {value!r} is not a day; write it as YYYY-MM-DD"
        ) from None


def audit_filter(
    actor: Annotated[str | None, Query(description="Who acted, e.g. qa@rttqa.test or rtqa-flow.")] = None,
    action: Annotated[str | None, Query(description="e.g. outcome.overridden, token.issued.")] = None,
    subject_type: Annotated[str | None, Query(description="e.g. submission, app_user, provider.")] = None,
    subject_id: Annotated[str | None, Query(description="The subject's id, e.g. 12.")] = None,
    since: Annotated[str | None, Query(description="First day included, YYYY-MM-DD (UTC).")] = None,
    until: Annotated[str | None, Query(description="Last day included, YYYY-MM-DD (UTC).")] = None,
) -> AuditFilter:
    """The audit filters of a request (empty values do not filter, as a page's form sends them); 422 naming the
    parameter for a malformed day or an empty date range."""
    try:
        return AuditFilter(
            actor=actor or None,
            action=action or None,
            subject_type=subject_type or None,
            subject_id=subject_id or None,
            since=_day("since", since),
            until=_day("until", until),
        )
    except ValueError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"since/until: {err}") from None


AuditFilterDep = Annotated[AuditFilter, Depends(audit_filter)]


def event_json(e: AuditEvent) -> dict[str, Any]:
    """An audit event as JSON (time in ISO 8601 UTC)."""
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "actor": e.actor,
        "action": e.action,
        "subject_type": e.subject_type,
        "subject_id": e.subject_id,
        "before": e.before,
        "after": e.after,
        "reason": e.reason,
    }


@router.get("/audit")
def list_audit(
    user: StaffOnly,
    session: SessionDep,
    filters: AuditFilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Audit events, newest first, filtered and paged: ``{"items", "total", "limit", "offset"}``."""
    events, total = audit_events(session, filters, limit=limit, offset=offset)
    return {"items": [event_json(e) for e in events], "total": total, "limit": limit, "offset": offset}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def audit_csv(events: list[AuditEvent]) -> str:
    """The events as CSV with a header row (:data:`CSV_COLUMNS`); cells that a spreadsheet would run as a formula
    are prefixed with ``'``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        row = event_json(e)
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    return out.getvalue()


@router.get("/audit.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export_audit(user: StaffOnly, session: SessionDep, filters: AuditFilterDep) -> Response:
    """Every audit event matching the filters, newest first, as a CSV file."""
    events, _ = audit_events(session, filters, limit=None)
    return Response(
        audit_csv(events),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="rtqa-audit.csv"'},
    )
