"""Sign-in (an API token becomes a session cookie), sign-out and the landing page."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from models.auth import end_web_session, start_web_session, user_for_token
from models.types import utcnow
from portal.deps import SESSION_COOKIE, CurrentUser, SessionDep
from portal.pages import home_path, render, signed_in_user

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> Response:
    return render(request, "sign_in.html", signed_in_user(request), next=_safe_next(next) or "")


@router.post("/sign-in")
def sign_in(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    user = user_for_token(session, token.strip()) if token.strip() else None
    if user is None:
        return render(
            request,
            "sign_in.html",
            None,
            status_code=401,
            next=_safe_next(next) or "",
            error="That token is unknown, revoked or expired. Ask the QA team for a new one (rtqa tokens issue).",
        )
    settings = request.app.state.settings
    session_token = start_web_session(session, user=user, expires_at=utcnow() + timedelta(hours=settings.session_hours))
    session.commit()
    response = RedirectResponse(_safe_next(next) or home_path(user), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        max_age=settings.session_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/sign-out")
def sign_out(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        end_web_session(session, cookie)
        session.commit()
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def landing(user: CurrentUser) -> Response:
    return RedirectResponse(home_path(user), status_code=303)
