"""``rtqa`` commands for administration: users, API tokens and submissions.

* ``rtqa users add EMAIL --name N --role R [--provider P] [--os-account NAME]``, ``rtqa users set EMAIL
  --os-account NAME | --no-os-account`` and ``rtqa users list [--json]``.
* ``rtqa tokens issue EMAIL [--label L] [--days N]`` (N from 1 to 365, default 90; the token is printed once),
  ``rtqa tokens list [EMAIL] [--json]`` (never the token itself) and ``rtqa tokens revoke ID`` (audited).
* ``rtqa submissions list [--provider P] [--status S] [--stage S] [--json]``.

Changes are made as the user running the command (:mod:`portal.cli_identity`) and need QA staff.

``--json`` prints a list of objects with stable keys; times are ISO 8601 UTC, absent values ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from sqlmodel import Session, col, select

from models.settings import get_settings
from portal.cli_errors import database_initialised, fail, masked_url
from portal.cli_identity import provider_actor, staff_actor
from portal.cli_stages import console

users_app = typer.Typer(help="Users (staff, centre, commissioner).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: issue, list, revoke.", no_args_is_help=True)
submissions_app = typer.Typer(help="Submissions and their outcomes.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output: a JSON list of objects.")]

E = TypeVar("E", bound=StrEnum)


@contextmanager
def _session() -> Iterator[Session]:
    from models.db import create_db_engine, session_scope

    engine = create_db_engine(get_settings().resolved_database_url)
    try:
        with session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _choice(kind: type[E], value: str, option: str) -> E:
    """``value`` as a member of ``kind``, or one line naming the option, the value and the allowed values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise fail(f"{option} {value!r} is not one of: {allowed}") from None


def _provider_id(session: Session, code: str) -> int:
    from models.tables import Provider

    row = session.exec(select(Provider).where(Provider.code == code)).first()
    if row is None or row.id is None:
        raise fail(f"no provider with code {code!r}; `rtqa providers` lists them")
    return row.id


def require_provider(code: str) -> None:
    """Refuse (one line, exit 2) a provider code not in the registry."""
    with _session() as session:
        _provider_id(session, code)


def require_submission_target(provider: str, case: str, version: str | None) -> None:
    """Refuse (one line, exit 2) an unknown provider code, or a case (version) not published, before a flow runs."""
    from models.tables import BenchmarkCase

    with _session() as session:
        _provider_id(session, provider)
        query = select(BenchmarkCase).where(BenchmarkCase.case_code == case)
        if version is not None:
            query = query.where(BenchmarkCase.version == version)
        if session.exec(query).first() is None:
            which = repr(case) if version is None else f"{case!r} version {version!r}"
            raise fail(
                f"no published benchmark case {which}; publish it first (`rtqa cases publish {case}`) "
                "or see `rtqa cases list`"
            )


def check_provider_if_possible(provider: str) -> None:
    """Refuse (one line, exit 2) a provider that is neither a code nor a name in the registry; when the database is
    not initialised or out of reach, warn on standard error that it could not be checked and carry on."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.tables import Provider

    url = get_settings().resolved_database_url
    try:
        ready = database_initialised(url)
    except SQLAlchemyError:
        ready = False
    if not ready:
        typer.echo(
            f"warning: provider {provider!r} not checked: the database {masked_url(url)} is not initialised "
            "(`rtqa db init` loads the provider registry)",
            err=True,
        )
        return
    with _session() as session:
        found = session.exec(select(Provider).where((Provider.code == provider) | (Provider.name == provider))).first()
    if found is None:
        raise fail(f"no provider with code or name {provider!r}; `rtqa providers` lists them")


def _user(session: Session, email: str) -> Any:
    from models.users import user_by_email

    user = user_by_email(session, email)
    if user is None:
        raise fail(f"no user with e-mail {email!r}; `rtqa users list` shows them, `rtqa users add` adds one")
    return user


def _print(rows: list[dict[str, Any]], columns: list[str], *, as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    if not rows:
        table.caption = "none"
    console.print(table)


def staff_session_actor() -> str:
    """The e-mail of the QA staff user running this command (see :mod:`portal.cli_identity`); others refused."""
    with _session() as session:
        return staff_actor(session)


def acting_for_provider(provider: str) -> str:
    """The e-mail of the user running a submission for ``provider``: QA staff or one of its centre users."""
    with _session() as session:
        return provider_actor(session, provider)


OsAccountOption = Annotated[
    str | None,
    typer.Option(
        "--os-account", help="Operating-system account whose `rtqa` commands act as this user (see `rtqa --help`)."
    ),
]


@users_app.command("add")
def users_add(
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[str, typer.Option(help="staff, centre or commissioner.")],
    provider: Annotated[str | None, typer.Option(help="Provider code (centre users only).")] = None,
    os_account: OsAccountOption = None,
) -> None:
    """Add a user (QA staff; the first staff user may be added by anyone and is mapped to their operating-system
    account)."""
    from models.enums import Role
    from models.users import DuplicateUserError, UnknownProviderError, UserError, create_user, has_active_staff
    from portal.cli_identity import os_account as own_account

    role_value = _choice(Role, role, "role")
    if (role_value is Role.CENTRE) != (provider is not None):
        raise fail("--provider is required for centre users and only for them")
    reason = None
    with _session() as session:
        if has_active_staff(session):
            actor = staff_actor(session)
        elif role_value is not Role.STAFF:
            raise fail(
                "there is no QA staff user yet; add one first with `rtqa users add EMAIL --name NAME --role staff` "
                "(it is mapped to your operating-system account)"
            )
        else:
            os_account = os_account or own_account()
            if os_account is None:
                raise fail("cannot tell your operating-system account; give --os-account NAME")
            actor = email.strip()
            reason = f"first QA staff user, mapped to operating-system account {os_account!r}"
        try:
            create_user(
                session,
                email=email,
                name=name,
                role=role_value,
                provider_code=provider,
                actor=actor,
                os_account=os_account,
                reason=reason,
            )
        except UnknownProviderError as err:
            raise fail(f"{err}; `rtqa providers` lists them") from None
        except DuplicateUserError as err:
            raise fail(f"{err}; `rtqa users list` shows them") from None
        except UserError as err:
            raise fail(str(err)) from None
    mapped = f" (operating-system account {os_account})" if os_account else ""
    console.print(f"added {role_value.value} user {email}{mapped}")


@users_app.command("set")
def users_set(
    email: str,
    os_account: OsAccountOption = None,
    no_os_account: Annotated[
        bool, typer.Option("--no-os-account", help="Remove the user's operating-system account.")
    ] = False,
) -> None:
    """Change a user (QA staff): map them to an operating-system account, or remove the mapping (audited)."""
    from models.users import UserError, set_os_account

    if (os_account is None) == (not no_os_account):
        raise fail("give one of --os-account NAME or --no-os-account")
    with _session() as session:
        actor = staff_actor(session)
        user = _user(session, email)
        try:
            set_os_account(session, user=user, os_account=os_account, actor=actor)
        except UserError as err:
            raise fail(str(err)) from None
        shown = f"operating-system account {user.os_account}" if user.os_account else "no operating-system account"
    console.print(f"{user.email}: {shown}")


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """List users: e-mail, name, role, provider (centre users), whether active, operating-system account."""
    from models.users import user_rows

    with _session() as session:
        rows = [
            {
                "email": u.email,
                "name": u.name,
                "role": u.role.value,
                "provider": u.provider,
                "active": u.active,
                "os_account": u.os_account,
            }
            for u in user_rows(session)
        ]
    _print(rows, ["email", "name", "role", "provider", "active", "os_account"], as_json=as_json, title="Users")


@tokens_app.command("issue")
def tokens_issue(
    email: str,
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    days: Annotated[int | None, typer.Option(help="Expire after this many days, 1 to 365 (default 90).")] = None,
) -> None:
    """Issue an API token for a user and print it (QA staff; it is shown only once, only its SHA-256 is stored)."""
    from models.auth import TokenError
    from models.users import check_token_days, issue_token_for_days

    try:
        lifetime = check_token_days(days)
    except TokenError as err:
        raise fail(f"--days {err}") from None
    with _session() as session:
        actor = staff_actor(session)
        user = _user(session, email)
        try:
            issued = issue_token_for_days(session, user=user, actor=actor, label=label, days=lifetime)
        except TokenError as err:
            raise fail(str(err)) from None
    typer.echo(issued.token)


@tokens_app.command("list")
def tokens_list(
    email: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None, as_json: JsonOption = False
) -> None:
    """List API tokens: id, user, label, created, expires, revoked, last used (the tokens are never stored)."""
    from models.users import token_rows

    with _session() as session:
        user_id = _user(session, email).id if email is not None else None
        rows = [
            {
                "id": t.id,
                "user": t.user,
                "label": t.label,
                "created": _iso(t.created_at),
                "expires": _iso(t.expires_at),
                "revoked": _iso(t.revoked_at),
                "last_used": _iso(t.last_used_at),
            }
            for t in token_rows(session, user_id=user_id)
        ]
    columns = ["id", "user", "label", "created", "expires", "revoked", "last_used"]
    _print(rows, columns, as_json=as_json, title="API tokens")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="Token id (see `rtqa tokens list`).")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
) -> None:
    """Revoke an API token at once (QA staff; audited)."""
    from models.auth import TokenError, revoke_token

    with _session() as session:
        actor = staff_actor(session)
        try:
            revoke_token(session, token_id=token_id, actor=actor, reason=reason)
        except TokenError as err:
            raise fail(str(err)) from None
    console.print(f"revoked API token {token_id}")


@submissions_app.command("list")
def submissions_list(
    provider: Annotated[str | None, typer.Option(help="Only this provider's submissions.")] = None,
    status: Annotated[str | None, typer.Option(help="received, validated, scored, decided or rejected.")] = None,
    stage: Annotated[str | None, typer.Option(help="QA stage, e.g. outlining_benchmark.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List submissions: id, provider, case, stage, attempt, status, outcome in force, received."""
    from models.enums import QAStage, SubmissionStatus
    from models.outcomes import current_outcome
    from models.tables import BenchmarkCase, Provider, Submission

    status_value = _choice(SubmissionStatus, status, "--status") if status is not None else None
    stage_value = _choice(QAStage, stage, "--stage") if stage is not None else None
    with _session() as session:
        query = select(Submission, Provider, BenchmarkCase).where(
            Submission.provider_id == Provider.id, Submission.case_id == BenchmarkCase.id
        )
        if provider is not None:
            query = query.where(Provider.id == _provider_id(session, provider))
        if status_value is not None:
            query = query.where(Submission.status == status_value)
        if stage_value is not None:
            query = query.where(BenchmarkCase.stage == stage_value)
        rows = []
        for s, p, c in session.exec(query.order_by(col(Submission.id))).all():
            outcome = current_outcome(session, s.id) if s.id is not None else None
            rows.append(
                {
                    "id": s.id,
                    "provider": p.code,
                    "case": c.case_code,
                    "version": c.version,
                    "stage": c.stage.value,
                    "attempt": s.attempt,
                    "status": s.status.value,
                    "outcome": outcome.level.value if outcome else None,
                    "received": _iso(s.received_at),
                }
            )
    columns = ["id", "provider", "case", "version", "stage", "attempt", "status", "outcome", "received"]
    _print(rows, columns, as_json=as_json, title="Submissions")
