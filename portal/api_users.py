"""API routes for QA staff to manage users and their API tokens (the rules are in :mod:`models.users`).

A token is returned in plain text once, in the answer that issues it (sent with ``Cache-Control: no-store``);
only its SHA-256 is stored, so no listing can show it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, Field
from sqlmodel import Session

from models.auth import MAX_TOKEN_DAYS, TokenError, revoke_token
from models.enums import Role
from models.tables import ApiToken, User
from models.users import (
    DuplicateUserError,
    TokenRow,
    UnknownUserError,
    UserError,
    UserRow,
    create_user,
    deactivate_user,
    issue_token_for_days,
    reactivate_user,
    token_rows,
    user_rows,
)
from portal.deps import SessionDep, StaffOnly

router = APIRouter(prefix="/api/v1", tags=["users"])


class NewUser(BaseModel):
    """A user to add; ``provider`` (a provider code) for centre users only."""

    email: str = Field(min_length=3, max_length=320, examples=["physicist@christie.nhs.uk"])
    name: str = Field(min_length=1, max_length=200)
    role: Role
    provider: str | None = Field(default=None, description="Provider code; required for centre users only.")


class Deactivation(BaseModel):
    reason: str | None = Field(default=None, max_length=4000, description="Why (kept in the audit trail).")


class NewToken(BaseModel):
    """A token to issue: for whom, what for, and how many days it lives."""

    user_id: int
    label: str = Field(default="", max_length=200, description="What the token is for.")
    days: int = Field(ge=1, le=MAX_TOKEN_DAYS, description=f"Expire after this many days, 1 to {MAX_TOKEN_DAYS}.")


class Revocation(BaseModel):
    reason: str | None = Field(default=None, max_length=4000, description="Why (kept in the audit trail).")


def user_json(u: UserRow) -> dict[str, Any]:
    return {
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": u.role.value,
        "provider": u.provider,
        "active": u.active,
        "created_at": u.created_at.isoformat(),
    }


def token_json(t: TokenRow) -> dict[str, Any]:
    """A token's record, never the token."""
    return {
        "id": t.id,
        "user_id": t.user_id,
        "user": t.user,
        "label": t.label,
        "created_at": t.created_at.isoformat(),
        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
        "state": t.state(),
    }


def _one_user(session: SessionDep, user_id: int) -> UserRow:
    rows = user_rows(session, user_id=user_id)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {user_id}")
    return rows[0]


@router.get("/users")
def list_users(user: StaffOnly, session: SessionDep) -> list[dict[str, Any]]:
    """Every user: e-mail, name, role, provider (centre users), active."""
    return [user_json(u) for u in user_rows(session)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def add_user(body: NewUser, user: StaffOnly, session: SessionDep) -> dict[str, Any]:
    """Add a user: 409 when the e-mail address is taken, 422 naming the field otherwise."""
    try:
        new = create_user(
            session, email=body.email, name=body.name, role=body.role, provider_code=body.provider, actor=user.email
        )
    except DuplicateUserError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"email: {err}") from None
    except UserError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{err.field}: {err}") from None
    session.commit()
    return user_json(_one_user(session, new.id or 0))


@router.post("/users/{user_id}/deactivate")
def deactivate(user_id: int, user: StaffOnly, session: SessionDep, body: Deactivation | None = None) -> dict[str, Any]:
    """Deactivate a user (their tokens stop working at once): 404 unknown, 409 already inactive or oneself."""
    return _set_active(session, user, user_id, body, deactivate_user)


@router.post("/users/{user_id}/reactivate")
def reactivate(user_id: int, user: StaffOnly, session: SessionDep, body: Deactivation | None = None) -> dict[str, Any]:
    """Make a deactivated user active again: 404 unknown, 409 already active."""
    return _set_active(session, user, user_id, body, reactivate_user)


def _set_active(
    session: Session, user: User, user_id: int, body: Deactivation | None, change: Callable[..., User]
) -> dict[str, Any]:
    try:
        change(session, user_id=user_id, actor=user.email, reason=body.reason if body else None)
    except UnknownUserError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    except UserError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    session.commit()
    return user_json(_one_user(session, user_id))


@router.get("/tokens")
def list_tokens(
    user: StaffOnly,
    session: SessionDep,
    user_id: Annotated[int | None, Query(description="Only this user's tokens.")] = None,
) -> list[dict[str, Any]]:
    """API tokens (label, created, expires, revoked, last used, state), oldest first; never the tokens themselves."""
    return [token_json(t) for t in token_rows(session, user_id=user_id)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def issue(body: NewToken, user: StaffOnly, session: SessionDep, response: Response) -> dict[str, Any]:
    """Issue a token: the answer holds it in ``token``, the only time it is shown."""
    owner = session.get(User, body.user_id)
    if owner is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {body.user_id}")
    try:
        issued = issue_token_for_days(session, user=owner, actor=user.email, label=body.label, days=body.days)
    except TokenError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    session.commit()
    response.headers["Cache-Control"] = "no-store"
    return {"token": issued.token, **token_json(issued.row)}


@router.post("/tokens/{token_id}/revoke")
def revoke(token_id: int, user: StaffOnly, session: SessionDep, body: Revocation | None = None) -> dict[str, Any]:
    """Revoke a token at once (audited): 404 unknown, 409 already revoked."""
    if session.get(ApiToken, token_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no API token with id {token_id}")
    try:
        revoke_token(session, token_id=token_id, actor=user.email, reason=body.reason if body else None)
    except TokenError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    session.commit()
    return token_json(token_rows(session, token_id=token_id)[0])
