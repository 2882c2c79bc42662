"""Exports of the commissioners' pages as CSV or JSON (``format=csv|json``, default JSON): the same rows the pages
show. Staff and commissioners only; a centre token gets 403.

* ``GET /api/v1/credentials/matrix?network=``: one row per provider (52 without a filter) with each technique's
  status, valid-until date, stages passed and what is outstanding (the ``/network`` page);
* ``GET /api/v1/trials/{code}/providers``: one row per provider, eligible to recruit or not, with the trial
  credential, the stage evidence and what is outstanding (the ``/trials/{code}`` page);
* ``GET /api/v1/credentials/expiring/export?within_days=``: one row per credential ending within the window, with
  the days left (the ``/expiring`` page).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response

from models.types import utcnow
from portal.deps import SessionDep, StaffOrCommissioner
from portal.eligibility import UnknownTrialError, trial_eligibility
from portal.expiry import MAX_DAYS, WindowError, expiring_export, expiring_rows, parse_days
from portal.exports import export_response, parse_format
from portal.matrix import UnknownNetworkError, credential_matrix

router = APIRouter(prefix="/api/v1", tags=["commissioning"])

FormatQuery = Annotated[str | None, Query(description="csv (a download) or json (default).")]


@router.get("/credentials/matrix")
def matrix_export(
    user: StaffOrCommissioner,
    session: SessionDep,
    network: Annotated[str | None, Query(description="A network code; every network when absent.")] = None,
    format: FormatQuery = None,
) -> Response:
    """Providers × techniques as on the ``/network`` page: one row per provider."""
    fmt = parse_format(format)
    try:
        matrix = credential_matrix(session, network=network or None)
    except UnknownNetworkError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from None
    return export_response(matrix.export(utcnow()), fmt)


@router.get("/trials/{trial_code}/providers")
def trial_providers_export(
    trial_code: str, user: StaffOrCommissioner, session: SessionDep, format: FormatQuery = None
) -> Response:
    """Every provider against the trial, as on the ``/trials/{code}`` page: eligible (the same providers as
    ``eligible-providers``) with their stage evidence, or what they lack."""
    fmt = parse_format(format)
    try:
        table = trial_eligibility(session, trial_code)
    except UnknownTrialError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    return export_response(table.export(utcnow()), fmt)


@router.get("/credentials/expiring/export")
def expiring_credentials_export(
    request: Request,
    user: StaffOrCommissioner,
    session: SessionDep,
    within_days: Annotated[
        str | None, Query(description=f"0 to {MAX_DAYS}; default RTQA_EXPIRY_WARNING_DAYS (60).")
    ] = None,
    format: FormatQuery = None,
) -> Response:
    """Credentials ending within the window, as on the ``/expiring`` page, soonest first."""
    fmt = parse_format(format)
    try:
        days = parse_days(within_days, default=request.app.state.settings.expiry_warning_days, name="within_days")
    except WindowError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from None
    now = utcnow()
    rows = expiring_rows(session, within_days=days, now=now)
    return export_response(expiring_export(rows, within_days=days, now=now), fmt)


__all__ = ["router"]
