"""Request dependencies shared by the API routers and the pages: a database session per request, the user behind
the bearer token or the page session cookie, and the role checks. One authorisation policy serves every route: a
page and its API twin use the same dependencies, so they cannot disagree about who may see what.

A request authenticated by the session cookie must carry the CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``) on every unsafe method; bearer-token requests need none (a browser never sends those by itself).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from models.auth import hash_token, user_for_token
from models.enums import Role
from models.settings import Settings
from models.tables import User

_bearer = HTTPBearer(auto_error=False, description="An rtqa API token (`rtqa tokens issue`).")

SESSION_COOKIE = "rtqa_session"
"""The cookie holding a page sign-in's session token (HttpOnly, SameSite=Lax, Secure behind https)."""

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request."""
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def csrf_token_for(settings: Settings, session_token: str) -> str:
    """The CSRF token of a page session: HMAC-SHA256 of the session token's hash under the app's secret key."""
    return hmac.new(settings.resolved_secret_key(), hash_token(session_token).encode(), hashlib.sha256).hexdigest()


async def _check_csrf(request: Request, session_token: str) -> None:
    expected = csrf_token_for(request.app.state.settings, session_token)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get(CSRF_FIELD)  # type: ignore[assignment]
    if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="the form is out of date or was not sent by rtqa; reload it and try again"
        )


async def current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user behind the bearer token, else behind the session cookie; 401 when neither names an active user."""
    if credentials is not None:
        user = user_for_token(session, credentials.credentials, touch=True)
        if user is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="invalid, revoked or expired token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return user
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        user = user_for_token(session, cookie, touch=True)
        if user is not None:
            if request.method not in _SAFE_METHODS:
                await _check_csrf(request, cookie)
            return user
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="missing bearer token: send 'Authorization: Bearer <token>' (or sign in on the pages)",
        headers={"WWW-Authenticate": "Bearer"},
    )


CurrentUser = Annotated[User, Depends(current_user)]


def staff_or_commissioner(user: CurrentUser) -> User:
    """The user, if they may see every provider (403 for centre tokens)."""
    if user.role is Role.CENTRE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="centre tokens may only read their own provider")
    return user


StaffOrCommissioner = Annotated[User, Depends(staff_or_commissioner)]


def staff_only(user: CurrentUser) -> User:
    """The user, if QA staff (403 otherwise)."""
    if user.role is not Role.STAFF:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"only QA staff may do this, not {user.role.value} users")
    return user


StaffOnly = Annotated[User, Depends(staff_only)]


def centre_only(user: CurrentUser) -> User:
    """The user, if a centre user with a provider (403 otherwise)."""
    if user.role is not Role.CENTRE or user.provider_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only centre users have this page")
    return user


CentreOnly = Annotated[User, Depends(centre_only)]
