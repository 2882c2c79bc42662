"""API tokens: issued once in plain text, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, update
from sqlalchemy import select as core_select
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from models.audit import record_audit
from models.enums import Role
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
        raise TokenError(_UNKNOWN)
    row, user = found
    _refuse_unusable(row.id, row.revoked_at, row.expires_at, user.is_active, now)
    if touch and _stale(row.last_used_at, now):
        row.last_used_at = now
        session.add(row)
        session.commit()
    return user


_UNKNOWN = "the API token is not known (mistyped, or from another database)"


def _refuse_unusable(
    token_id: int | None, revoked_at: datetime | None, expires_at: datetime | None, user_active: bool, now: datetime
) -> None:
    """Raise :class:`TokenError` when a known token is revoked, expired or its user deactivated."""
    if revoked_at is not None:
        raise TokenError(f"API token {token_id} was revoked on {revoked_at:%Y-%m-%d %H:%M} UTC")
    if expires_at is not None and expires_at <= now:
        raise TokenError(f"API token {token_id} expired on {expires_at:%Y-%m-%d %H:%M} UTC")
    if not user_active:
        raise TokenError(f"API token {token_id} belongs to a deactivated user")


def _stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a token's ``last_used_at`` is due to be written (see :data:`LAST_USED_RESOLUTION`)."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


@dataclass(frozen=True)
class TokenHolder:
    """The user behind a working token, as the few columns a read-only request needs (no ORM object).

    Attributes:
        user_id: the ``app_user`` row's id.
        role: the user's role.
        provider_id: the centre user's provider (None for other roles).
    """

    user_id: int
    role: Role
    provider_id: int | None


_HOLDER_QUERY = (
    core_select(
        col(ApiToken.id),
        col(ApiToken.revoked_at),
        col(ApiToken.expires_at),
        col(ApiToken.last_used_at),
        col(User.id),
        col(User.role),
        col(User.provider_id),
        col(User.is_active),
    )
    .join_from(ApiToken, User, col(User.id) == col(ApiToken.user_id))
    .where(col(ApiToken.token_sha256) == bindparam("token_sha256"))
)  # built once: see models.credential_status._QUERY


def token_holder(
    connection: Connection, token: str, *, now: datetime | None = None, touch: bool = False
) -> TokenHolder:
    """The active user owning ``token``, checked as :func:`token_user` does, in one SQL statement on ``connection``
    (SQLAlchemy Core: no ORM entities are loaded).

    With ``touch``, a ``last_used_at`` older than :data:`LAST_USED_RESOLUTION` is written and the connection's
    transaction committed (so at most once a minute per token; otherwise nothing is written): call it first in a
    request's transaction.

    Raises:
        TokenError: the token is unknown, revoked or expired, or its user is deactivated (the message says which).
    """
    now = now or utcnow()
    found = connection.execute(_HOLDER_QUERY, {"token_sha256": hash_token(token)}).first()
    if found is None:
        raise TokenError(_UNKNOWN)
    token_id, revoked_at, expires_at, last_used_at, user_id, role, provider_id, active = found
    _refuse_unusable(token_id, revoked_at, expires_at, active, now)
    assert user_id is not None  # a primary key read from the database
    if touch and _stale(last_used_at, now):
        connection.execute(update(ApiToken).where(col(ApiToken.id) == token_id).values(last_used_at=now))
        connection.commit()
    return TokenHolder(user_id=user_id, role=role, provider_id=provider_id)


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
