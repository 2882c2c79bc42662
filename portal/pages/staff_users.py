"""Users and API tokens for QA staff: list, add and deactivate users; per user, list tokens (never the tokens
themselves), issue one for 1 to 365 days (shown once, on the page answering the form) and revoke one.

The rules are :mod:`models.users`' (the same as ``rtqa users`` / ``rtqa tokens`` and ``/api/v1/users``,
``/api/v1/tokens``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, select

from models.auth import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS, TokenError, revoke_token
from models.enums import Role
from models.tables import ApiToken, Provider, User
from models.users import (
    DuplicateUserError,
    UserError,
    check_token_days,
    create_user,
    deactivate_user,
    issue_token_for_days,
    reactivate_user,
    token_rows,
    user_rows,
)
from portal.deps import SessionDep, StaffOnly
from portal.pages import render
from portal.pages.staff_common import FORMATTERS

router = APIRouter(include_in_schema=False)

DONE = {
    "added": "The user was added. Issue them a token below.",
    "deactivated": "The user was deactivated; their tokens no longer work.",
    "reactivated": "The user was reactivated; their tokens that are neither revoked nor expired work again.",
    "revoked": "The token was revoked; it no longer works.",
}
"""What the pages say after each write (``?done=...``)."""


def _users_page(
    request: Request,
    session: Session,
    user: User,
    *,
    status_code: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    return render(
        request,
        "staff/users.html",
        user,
        status_code=status_code,
        users=user_rows(session),
        roles=list(Role),
        providers=session.exec(select(Provider).order_by(Provider.name)).all(),
        error=error,
        form=form or {},
        done=DONE.get(request.query_params.get("done") or ""),
        **FORMATTERS,
    )


def _user_page(
    request: Request,
    session: Session,
    user: User,
    user_id: int,
    *,
    status_code: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    rows = user_rows(session, user_id=user_id)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {user_id}")
    return render(
        request,
        "staff/user.html",
        user,
        status_code=status_code,
        person=rows[0],
        tokens=list(reversed(token_rows(session, user_id=user_id))),
        default_days=DEFAULT_TOKEN_DAYS,
        max_days=MAX_TOKEN_DAYS,
        error=error,
        form=form or {},
        done=DONE.get(request.query_params.get("done") or ""),
        **FORMATTERS,
    )


@router.get("/staff/users")
def users(request: Request, user: StaffOnly, session: SessionDep) -> Response:
    return _users_page(request, session, user)


@router.post("/staff/users")
def add_user(
    request: Request,
    user: StaffOnly,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    provider: Annotated[str, Form()] = "",
) -> Response:
    form = {"email": email, "name": name, "role": role, "provider": provider}
    try:
        role_value = Role(role)
    except ValueError:
        return _users_page(request, session, user, status_code=422, error="Choose a role.", form=form)
    try:
        new = create_user(
            session,
            email=email,
            name=name,
            role=role_value,
            provider_code=provider or None,
            actor=user.email,
        )
    except UserError as err:
        session.rollback()
        code = 409 if isinstance(err, DuplicateUserError) else 422
        return _users_page(request, session, user, status_code=code, error=f"Not added: {err}.", form=form)
    session.commit()
    return RedirectResponse(f"/staff/users/{new.id}?done=added", status_code=303)


@router.post("/staff/users/{user_id}/deactivate")
def deactivate(
    request: Request,
    user_id: int,
    user: StaffOnly,
    session: SessionDep,
    reason: Annotated[str, Form()] = "",
) -> Response:
    return _set_active(request, session, user, user_id, reason, deactivate_user, "deactivated")


@router.post("/staff/users/{user_id}/reactivate")
def reactivate(
    request: Request,
    user_id: int,
    user: StaffOnly,
    session: SessionDep,
    reason: Annotated[str, Form()] = "",
) -> Response:
    return _set_active(request, session, user, user_id, reason, reactivate_user, "reactivated")


def _set_active(
    request: Request,
    session: Session,
    user: User,
    user_id: int,
    reason: str,
    change: Callable[..., User],
    done: str,
) -> Response:
    try:
        change(session, user_id=user_id, actor=user.email, reason=reason)
    except UserError as err:
        session.rollback()
        if isinstance(err, LookupError):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
        return _users_page(request, session, user, status_code=409, error=f"Not {done}: {err}.")
    session.commit()
    return RedirectResponse(f"/staff/users?done={done}", status_code=303)


@router.get("/staff/users/{user_id}")
def user_tokens(request: Request, user_id: int, user: StaffOnly, session: SessionDep) -> Response:
    return _user_page(request, session, user, user_id)


@router.post("/staff/users/{user_id}/tokens")
def issue(
    request: Request,
    user_id: int,
    user: StaffOnly,
    session: SessionDep,
    label: Annotated[str, Form()] = "",
    days: Annotated[str, Form()] = "",
) -> Response:
    owner = session.get(User, user_id)
    if owner is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {user_id}")
    form = {"label": label, "days": days}
    try:
        if not days.strip().lstrip("-").isdigit():
            raise TokenError(f"write the expiry as a whole number of days from 1 to {MAX_TOKEN_DAYS}")
        issued = issue_token_for_days(
            session, user=owner, actor=user.email, label=label, days=check_token_days(int(days))
        )
    except TokenError as err:
        session.rollback()
        message = f"No token issued: expiry {err}." if "out of range" in str(err) else f"No token issued: {err}."
        return _user_page(request, session, user, user_id, status_code=422, error=message, form=form)
    session.commit()
    response = render(request, "staff/token_issued.html", user, person=owner, issued=issued, **FORMATTERS)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/staff/tokens/{token_id}/revoke")
def revoke(
    request: Request,
    token_id: int,
    user: StaffOnly,
    session: SessionDep,
    reason: Annotated[str, Form()] = "",
) -> Response:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no API token with id {token_id}")
    owner_id = token.user_id
    try:
        revoke_token(session, token_id=token_id, actor=user.email, reason=reason.strip() or None)
    except TokenError as err:
        session.rollback()
        return _user_page(request, session, user, owner_id, status_code=409, error=f"Not revoked: {err}.")
    session.commit()
    return RedirectResponse(f"/staff/users/{owner_id}?done=revoked", status_code=303)
