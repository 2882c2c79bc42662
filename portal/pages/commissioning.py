"""Pages for commissioners and trial units (QA staff see them too): the network matrix, trials and who may recruit,
credentials expiring soon, and one provider's credentials and submissions.

Each table has a CSV and a JSON export (:mod:`portal.api_commissioning`) built from the same rows.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response

from models.types import utcnow
from portal.credential_cells import words, ymd
from portal.deps import SessionDep, StaffOrCommissioner
from portal.eligibility import UnknownTrialError, trial_eligibility, trial_summaries
from portal.expiry import MAX_DAYS, WindowError, expiring_rows, parse_days
from portal.exports import export_links
from portal.matrix import UnknownNetworkError, credential_matrix, network_choices
from portal.pages import render, templates
from portal.provider_view import UnknownProviderError, provider_page

router = APIRouter(include_in_schema=False)

templates.env.filters.setdefault("ymd", ymd)
templates.env.filters.setdefault("words", words)


@router.get("/network")
def network_page(
    request: Request, user: StaffOrCommissioner, session: SessionDep, network: str | None = None
) -> Response:
    """Every provider by network against every technique, filtered to one network on request."""
    networks = network_choices(session)
    selected = network or None
    try:
        matrix = credential_matrix(session, network=selected)
    except UnknownNetworkError as err:
        return render(
            request,
            "commissioning/network.html",
            user,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            error=str(err),
            matrix=None,
            networks=networks,
            selected=None,
            now=utcnow(),
        )
    return render(
        request,
        "commissioning/network.html",
        user,
        matrix=matrix,
        networks=networks,
        selected=selected,
        now=utcnow(),
        exports=export_links("/api/v1/credentials/matrix", [("network", selected or "")]),
    )


@router.get("/trials")
def trials_page(request: Request, user: StaffOrCommissioner, session: SessionDep) -> Response:
    """Every trial with the techniques it requires and how many providers may recruit."""
    return render(request, "commissioning/trials.html", user, trials=trial_summaries(session))


@router.get("/trials/{trial_code}")
def trial_page(request: Request, trial_code: str, user: StaffOrCommissioner, session: SessionDep) -> Response:
    """Who may recruit to one trial, with the stage evidence, and what every other provider lacks."""
    try:
        table = trial_eligibility(session, trial_code)
    except UnknownTrialError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    return render(
        request,
        "commissioning/trial.html",
        user,
        table=table,
        exports=export_links(f"/api/v1/trials/{table.trial.code}/providers"),
    )


@router.get("/expiring")
def expiring_page(
    request: Request, user: StaffOrCommissioner, session: SessionDep, days: str | None = None
) -> Response:
    """Credentials ending within ``days`` (default ``RTQA_EXPIRY_WARNING_DAYS``), soonest first."""
    default = request.app.state.settings.expiry_warning_days
    now = utcnow()
    try:
        window = parse_days(days, default=default)
    except WindowError as err:
        return render(
            request,
            "commissioning/expiring.html",
            user,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            error=str(err),
            days=days,
            rows=None,
            default=default,
            max_days=MAX_DAYS,
            now=now,
        )
    return render(
        request,
        "commissioning/expiring.html",
        user,
        days=window,
        rows=expiring_rows(session, within_days=window, now=now),
        until=now + timedelta(days=window),
        default=default,
        max_days=MAX_DAYS,
        now=now,
        exports=export_links("/api/v1/credentials/expiring/export", [("within_days", str(window))]),
    )


@router.get("/providers/{provider_code}")
def provider_detail_page(
    request: Request, provider_code: str, user: StaffOrCommissioner, session: SessionDep
) -> Response:
    """One provider's credentials with their stages, and its recent submissions."""
    try:
        detail = provider_page(session, provider_code)
    except UnknownProviderError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    return render(request, "commissioning/provider.html", user, provider=detail, now=utcnow())


__all__ = ["router"]
