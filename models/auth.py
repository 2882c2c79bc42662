"""API tokens: issued once in plain text, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, select

from models.audit import record_audit
from models.tables import ApiToken, User
from models.types import utcnow

TOKEN_PREFIX = "rtqa_"
"""Every token starts with this, so leaked tokens are easy to recognise and scan for."""

DEFAULT_TOKEN_DAYS = 90
"""Lifetime of a token issued from the command line when none is given, in days."""

MAX_TOKEN_DAYS = 365
"""Longest lifetime the command line issues a token for, in days (a year: tokens are renewed, not kept forever)."""


class TokenError(ValueError):
    """A token operation refused, or a token that does not work: unknown, revoked, expired, or a deactivated
    user's."""


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (tokens carry 256 random bits, so a fast hash is enough)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(
    session: Session, *, user: User, actor: str, label: str = "", expires_at: datetime | None = None
) -> str:
    """Create a token for ``user``; returns the plain token, which is not stored anywhere."""
    if user.id is None:
        raise ValueError("user must be saved before a token is issued")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_sha256=hash_token(token), label=label, expires_at=expires_at)
    session.add(row)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="token.issued",
        subject_type="app_user",
        subject_id=user.id,
        after={"token_id": row.id, "label": label, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token


LAST_USED_RESOLUTION = timedelta(minutes=1)
"""A token's ``last_used_at`` is written at most this often (a request does not always write to the database)."""


def user_for_token(session: Session, token: str, *, now: datetime | None = None, touch: bool = False) -> User | None:
    """The active user owning ``token``, or None if it is unknown, revoked or expired.

    With ``touch``, the token's ``last_used_at`` is brought up to date (to :data:`LAST_USED_RESOLUTION`) and the
    session committed: call it first in a request's session.
    """
    try:
        return token_user(session, token, now=now, touch=touch)
    except TokenError:
        return None


def token_user(session: Session, token: str, *, now: datetime | None = None, touch: bool = False) -> User:
    """The active user owning ``token`` (as :func:`user_for_token`), or a refusal saying why it does not work.

    Raises:
        TokenError: the token is unknown, revoked or expired, or its user is deactivated (the message says which).
    """
    now = now or utcnow()
    found = session.exec(
        select(ApiToken, User).where(ApiToken.token_sha256 == hash_token(token), User.id == ApiToken.user_id)
    ).first()  # one query: this runs on every request
    if found is None:
        raise TokenError("the API token is not known (mistyped, or from another database)")
    row, user = found
    if row.revoked_at is not None:
        raise TokenError(f"API token {row.id} was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC")
    if row.expires_at is not None and row.expires_at <= now:
        raise TokenError(f"API token {row.id} expired on {row.expires_at:%Y-%m-%d %H:%M} UTC")
    if not user.is_active:
        raise TokenError(f"API token {row.id} belongs to a deactivated user")
    if touch and (row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION):
        row.last_used_at = now
        session.add(row)
        session.commit()
    return user


def revoke_token(
    session: Session, *, token_id: int, actor: str, reason: str | None = None, now: datetime | None = None
) -> ApiToken:
    """Revoke token ``token_id`` at ``now`` (default: the current UTC time) and audit it as ``token.revoked``.

    Raises:
        TokenError: no token with that id, or it is already revoked (nothing is changed).
    """
    row = session.get(ApiToken, token_id)
    if row is None:
        raise TokenError(f"no API token with id {token_id}; `rtqa tokens list` shows the ids")
    if row.revoked_at is not None:
        raise TokenError(f"API token {token_id} was already revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC")
    row.revoked_at = now or utcnow()
    session.add(row)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="token.revoked",
        subject_type="app_user",
        subject_id=row.user_id,
        before={"token_id": row.id, "revoked_at": None},
        after={"token_id": row.id, "revoked_at": row.revoked_at.isoformat()},
        reason=reason,
    )
    return row


WEB_SESSION_LABEL = "web session"
"""Label of the short-lived tokens that back a page sign-in (a session cookie holds one)."""


def start_web_session(session: Session, *, user: User, expires_at: datetime) -> str:
    """Sign ``user`` in to the pages: a new short-lived token (label :data:`WEB_SESSION_LABEL`) for the cookie.

    The API token typed on the sign-in page is never put in the cookie, so signing out (which revokes the session
    token) leaves the user's API token working.
    """
    return issue_token(session, user=user, actor=user.email, label=WEB_SESSION_LABEL, expires_at=expires_at)


def end_web_session(session: Session, token: str) -> bool:
    """Revoke the session token behind a sign-out; False when it was unknown or already ended."""
    row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == hash_token(token))).first()
    if row is None or row.revoked_at is not None or row.label != WEB_SESSION_LABEL or row.id is None:
        return False
    user = session.get(User, row.user_id)
    revoke_token(session, token_id=row.id, actor=user.email if user else "unknown", reason="signed out")
    return True
