"""The centre's pages: its credentials and stages (``/centre``), the benchmark cases it may take (``/cases``) and
the upload page (``/upload``). Each reads the same data as its API twin (``/api/v1/providers/{code}/techniques``,
``/api/v1/cases``); uploads go to ``POST /api/v1/submissions`` from the page's script."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session, col, select

from models.enums import QAStage, Role, StageStatus
from models.stages import StageState
from models.tables import BenchmarkCase, Outcome, Provider, Submission, User
from portal.api_cases import CaseOffer, offered_cases
from portal.api_centre import technique_standings, trial_credentials
from portal.deps import CentreOnly, CurrentUser, SessionDep
from portal.pages import render
from portal.pages.words import HELPERS

router = APIRouter(include_in_schema=False)


def own_provider(session: Session, user: User) -> Provider:
    """The signed-in centre user's provider."""
    provider = session.get(Provider, user.provider_id)
    assert provider is not None
    return provider


def next_step(state: StageState, technique: str) -> tuple[str, str] | None:
    """What the centre can do about a stage: (link text, url), or ``None``."""
    case_code = state.case.split("@")[0] if state.case else None
    if state.stage is QAStage.FACILITY_QUESTIONNAIRE:
        if state.status is StageStatus.IN_PROGRESS and state.submission_id:
            return ("Follow it", f"/submissions/{state.submission_id}")
        text = "Answer again" if state.status is not StageStatus.MISSING else "Answer the questionnaire"
        return (text, f"/questionnaire/{technique}")
    if state.status is StageStatus.MISSING:
        return ("Download a case", f"/cases#{technique}")
    if state.status is StageStatus.IN_PROGRESS and state.submission_id:
        return ("Follow it", f"/submissions/{state.submission_id}")
    if state.status in (StageStatus.FAILED, StageStatus.LAPSED) and case_code:
        return ("Submit again", f"/upload?case={case_code}")
    return None


@router.get("/centre")
def centre_home(request: Request, user: CentreOnly, session: SessionDep) -> Response:
    provider = own_provider(session, user)
    settings = request.app.state.settings
    standings = technique_standings(session, provider, validity_days=settings.credential_validity_days)
    return render(
        request,
        "centre/home.html",
        user,
        provider=provider,
        standings=standings,
        trials=trial_credentials(session, provider),
        next_step=next_step,
        **HELPERS,
    )


def latest_own_submissions(session: Session, provider_id: int) -> dict[str, dict[str, Any]]:
    """Case code -> the provider's latest submission to it (id, attempt, status, current outcome)."""
    rows = session.exec(
        select(Submission, BenchmarkCase)
        .where(Submission.provider_id == provider_id, Submission.case_id == BenchmarkCase.id)
        .order_by(col(Submission.id).desc())
    ).all()
    latest: dict[str, dict[str, Any]] = {}
    for sub, case in rows:
        if case.case_code in latest:
            continue
        outcome = session.exec(
            select(Outcome).where(Outcome.submission_id == sub.id, col(Outcome.is_current).is_(True))
        ).first()
        latest[case.case_code] = {
            "id": sub.id,
            "attempt": sub.attempt,
            "status": sub.status.value,
            "outcome": outcome.level.value if outcome else None,
        }
    return latest


def _by_technique(offers: list[CaseOffer]) -> list[tuple[str, str, list[CaseOffer]]]:
    groups: dict[str, tuple[str, str, list[CaseOffer]]] = {}
    for offer in offers:
        groups.setdefault(offer.technique, (offer.technique, offer.technique_name, []))[2].append(offer)
    return list(groups.values())


@router.get("/cases")
def cases_page(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    offers = offered_cases(session)
    latest = latest_own_submissions(session, user.provider_id) if user.role is Role.CENTRE and user.provider_id else {}
    return render(
        request,
        "centre/cases.html",
        user,
        groups=_by_technique(offers),
        latest=latest,
        is_centre=user.role is Role.CENTRE,
        **HELPERS,
    )


@router.get("/upload")
def upload_page(request: Request, user: CentreOnly, session: SessionDep, case: str | None = None) -> Response:
    offers = offered_cases(session)
    chosen = case if any(o.code == case for o in offers) else None
    return render(
        request,
        "centre/upload.html",
        user,
        groups=_by_technique(offers),
        chosen=chosen,
        unknown_case=case if case and chosen is None else None,
        max_upload_bytes=request.app.state.settings.max_upload_bytes,
        **HELPERS,
    )
