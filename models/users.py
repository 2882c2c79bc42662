"""Users and their API tokens, as QA staff manage them from the command line, the pages and the API.

Rules (one place for every interface):

* an e-mail address names one user; two addresses differing only in letter case are the same address;
* a centre user is bound to exactly one provider, and only centre users are;
* a token lives from 1 to :data:`~models.auth.MAX_TOKEN_DAYS` days (default :data:`~models.auth.DEFAULT_TOKEN_DAYS`);
  the plain token is returned once and never stored (only its SHA-256);
* an operating-system account maps to at most one user (the ``rtqa`` command line acts as that user when no token
  is given);
* a deactivated user's tokens stop working at once (:func:`models.auth.user_for_token`); nobody deactivates
  themselves.

Every change is audited with the actor who made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, func, select

from models.audit import record_audit
from models.auth import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS, TokenError, hash_token, issue_token
from models.enums import Role
from models.tables import ApiToken, Provider, User
from models.types import utcnow

__all__ = [
    "DuplicateUserError",
    "IssuedToken",
    "TokenRow",
    "UnknownProviderError",
    "UnknownUserError",
    "UserError",
    "UserRow",
    "check_token_days",
    "create_user",
    "deactivate_user",
    "has_active_staff",
    "issue_token_for_days",
    "reactivate_user",
    "set_os_account",
    "token_rows",
    "user_by_email",
    "user_by_os_account",
    "user_rows",
]


class UserError(ValueError):
    """A user operation refused; the message says what is wrong. ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class DuplicateUserError(UserError):
    """A user with that e-mail address (ignoring letter case) already exists."""


class UnknownProviderError(UserError):
    """No provider has the given code."""


class UnknownUserError(UserError, LookupError):
    """No user has the given id or e-mail address."""


@dataclass(frozen=True)
class UserRow:
    """A user as listed: ``provider`` is the provider code of a centre user, else None."""

    id: int
    email: str
    name: str
    role: Role
    provider: str | None
    active: bool
    created_at: datetime
    os_account: str | None = None


@dataclass(frozen=True)
class TokenRow:
    """An API token as listed; never the token itself (it is not stored)."""

    id: int
    user_id: int
    user: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = None

    def state(self, now: datetime | None = None) -> str:
        """``"revoked"``, ``"expired"`` or ``"active"`` at ``now`` (default: the current UTC time)."""
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: ``token`` is the plain text, shown once and stored nowhere."""

    token: str
    row: TokenRow


def user_by_email(session: Session, email: str) -> User | None:
    """The user with ``email``, ignoring letter case and surrounding spaces."""
    return session.exec(select(User).where(func.lower(User.email) == email.strip().lower())).first()


def user_by_os_account(session: Session, account: str) -> User | None:
    """The user mapped to operating-system account ``account``."""
    return session.exec(select(User).where(User.os_account == account)).first()


def has_active_staff(session: Session) -> bool:
    """Whether any active QA staff user exists (until one does, the command line may add the first)."""
    query = select(User.id).where(User.role == Role.STAFF, col(User.is_active).is_(True))
    return session.exec(query.limit(1)).first() is not None


def _check_os_account(session: Session, account: str | None, *, user_id: int | None = None) -> str | None:
    account = (account or "").strip() or None
    if account is None:
        return None
    if len(account) > 64 or any(c.isspace() or not c.isprintable() for c in account):
        raise UserError(f"{account!r} is not an operating-system account name", field="os_account")
    holder = user_by_os_account(session, account)
    if holder is not None and holder.id != user_id:
        raise UserError(f"operating-system account {account!r} is already mapped to {holder.email}", field="os_account")
    return account


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: Role,
    provider_code: str | None,
    actor: str,
    os_account: str | None = None,
    reason: str | None = None,
) -> User:
    """Add a user (flushed, so it has an id) and audit it as ``user.added``; the caller commits.

    ``os_account``: the operating-system account the command line acts as this user for (see :func:`set_os_account`).

    Raises:
        UserError: a blank or malformed e-mail address or name, or a provider given for a non-centre user or
            missing for a centre user (``field`` says which).
        UnknownProviderError: no provider has ``provider_code``.
        DuplicateUserError: the e-mail address is taken.
        UserError: ``os_account`` is malformed or mapped to another user.
    """
    email = email.strip()
    name = name.strip()
    provider_code = (provider_code or "").strip() or None
    local, _, domain = email.partition("@")
    if not local or not domain or " " in email or len(email) > 320:
        raise UserError(f"{email!r} is not an e-mail address (name@example.nhs.uk)", field="email")
    if not name:
        raise UserError("a user needs a name", field="name")
    if role is Role.CENTRE and provider_code is None:
        raise UserError("a centre user needs a provider", field="provider")
    if role is not Role.CENTRE and provider_code is not None:
        raise UserError(f"only centre users have a provider, not {role.value} users", field="provider")
    provider_id: int | None = None
    if provider_code is not None:
        provider = session.exec(select(Provider).where(Provider.code == provider_code)).first()
        if provider is None:
            raise UnknownProviderError(f"no provider with code {provider_code!r}", field="provider")
        provider_id = provider.id
    existing = user_by_email(session, email)
    if existing is not None:
        raise DuplicateUserError(f"a user with e-mail {existing.email!r} already exists", field="email")
    account = _check_os_account(session, os_account)
    user = User(email=email, name=name, role=role, provider_id=provider_id, os_account=account)
    session.add(user)
    session.flush()
    after: dict[str, str | None] = {"email": email, "role": role.value, "provider": provider_code}
    if account is not None:
        after["os_account"] = account
    record_audit(
        session,
        actor=actor,
        action="user.added",
        subject_type="app_user",
        subject_id=user.id or 0,
        after=after,
        reason=reason,
    )
    return user


def set_os_account(session: Session, *, user: User, os_account: str | None, actor: str) -> User:
    """Map ``user`` to operating-system account ``os_account`` (None: no account), audited as ``user.os_account``.

    Raises:
        UserError: the name is malformed, or mapped to another user.
    """
    account = _check_os_account(session, os_account, user_id=user.id)
    before = user.os_account
    user.os_account = account
    session.add(user)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="user.os_account",
        subject_type="app_user",
        subject_id=user.id or 0,
        before={"email": user.email, "os_account": before},
        after={"email": user.email, "os_account": account},
    )
    return user


def deactivate_user(session: Session, *, user_id: int, actor: str, reason: str | None = None) -> User:
    """Deactivate user ``user_id`` (their tokens stop working at once) and audit it as ``user.deactivated``.

    Raises:
        UnknownUserError: no user has that id.
        UserError: the user is already inactive, or is the actor (nobody locks themselves out).
    """
    return _set_active(session, user_id=user_id, active=False, actor=actor, reason=reason)


def reactivate_user(session: Session, *, user_id: int, actor: str, reason: str | None = None) -> User:
    """Make a deactivated user active again (their unrevoked, unexpired tokens work again); audited as
    ``user.reactivated``.

    Raises:
        UnknownUserError: no user has that id.
        UserError: the user is active.
    """
    return _set_active(session, user_id=user_id, active=True, actor=actor, reason=reason)


def _set_active(session: Session, *, user_id: int, active: bool, actor: str, reason: str | None) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UnknownUserError(f"no user with id {user_id}")
    if user.is_active == active:
        raise UserError(f"{user.email} is already {'active' if active else 'deactivated'}")
    if not active and user.email.lower() == actor.lower():
        raise UserError("you cannot deactivate your own account; ask another member of QA staff")
    user.is_active = active
    session.add(user)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="user.reactivated" if active else "user.deactivated",
        subject_type="app_user",
        subject_id=user_id,
        before={"email": user.email, "active": not active},
        after={"email": user.email, "active": active},
        reason=reason.strip() if reason and reason.strip() else None,
    )
    return user


def user_rows(session: Session, *, user_id: int | None = None) -> list[UserRow]:
    """Every user (or the one with ``user_id``), by e-mail address."""
    codes = {p.id: p.code for p in session.exec(select(Provider)).all()}
    query = select(User).order_by(User.email)
    if user_id is not None:
        query = query.where(User.id == user_id)
    return [
        UserRow(
            id=u.id or 0,
            email=u.email,
            name=u.name,
            role=u.role,
            provider=codes.get(u.provider_id) if u.provider_id is not None else None,
            active=u.is_active,
            created_at=u.created_at,
            os_account=u.os_account,
        )
        for u in session.exec(query).all()
    ]


def token_rows(session: Session, *, user_id: int | None = None, token_id: int | None = None) -> list[TokenRow]:
    """API tokens (of one user when ``user_id`` is given; the one with ``token_id``), oldest first; never the
    tokens themselves."""
    query = select(ApiToken, User).where(ApiToken.user_id == User.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    if token_id is not None:
        query = query.where(ApiToken.id == token_id)
    return [_token_row(t, u) for t, u in session.exec(query.order_by(col(ApiToken.id))).all()]


def _token_row(token: ApiToken, user: User) -> TokenRow:
    return TokenRow(
        id=token.id or 0,
        user_id=user.id or 0,
        user=user.email,
        label=token.label,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        last_used_at=token.last_used_at,
    )


def check_token_days(days: int | None) -> int:
    """A token lifetime in days: ``days``, or :data:`~models.auth.DEFAULT_TOKEN_DAYS` when None.

    Raises:
        TokenError: ``days`` is outside 1 to :data:`~models.auth.MAX_TOKEN_DAYS`.
    """
    lifetime = DEFAULT_TOKEN_DAYS if days is None else days
    if not 1 <= lifetime <= MAX_TOKEN_DAYS:
        raise TokenError(f"{lifetime} is out of range; tokens expire after 1 to {MAX_TOKEN_DAYS} days")
    return lifetime


def issue_token_for_days(
    session: Session, *, user: User, actor: str, label: str = "", days: int | None = None
) -> IssuedToken:
    """Issue a token for ``user`` expiring after ``days`` days (see :func:`check_token_days`); audited.

    Raises:
        TokenError: ``days`` is out of range, or the user is deactivated.
    """
    lifetime = check_token_days(days)
    if not user.is_active:
        raise TokenError(f"{user.email} is deactivated: a token for them would not work")
    token = issue_token(
        session, user=user, actor=actor, label=label.strip(), expires_at=utcnow() + timedelta(days=lifetime)
    )
    row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == hash_token(token))).one()
    return IssuedToken(token=token, row=_token_row(row, user))
