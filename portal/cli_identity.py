"""Who runs an ``rtqa`` command: a named user, authenticated by API token or by the operating-system account.

* ``RTQA_TOKEN`` (or ``rtqa --token-file PATH ...``, which wins): an API token as ``rtqa tokens issue`` prints it,
  checked as the API checks one (active user, not expired, not revoked; ``last_used_at`` kept up to date).
* Otherwise the operating-system account the process runs under (the effective user id's login name, read from the
  password database, not from ``$USER`` or ``$LOGNAME``, which anyone can set), mapped to a user with
  ``rtqa users add ... --os-account NAME`` or ``rtqa users set EMAIL --os-account NAME``.

Commands that change state act as that user: their audit events name the user's e-mail, and staff-only commands
refuse other roles. Read-only commands do not ask who runs them.

Bootstrap: while the database has no active QA staff user, ``rtqa db init`` runs (its audit events name the
operating-system account, ``os:NAME``), and ``rtqa users add EMAIL --name N --role staff`` adds the first staff user,
mapped to the operating-system account that runs it (or ``--os-account``); ``rtqa demo`` adds one the same way
(``NAME@localhost``) when there is none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session
from typer._click.globals import get_current_context

from models.enums import Role
from portal.cli_errors import fail

TOKEN_ENV = "RTQA_TOKEN"
"""Environment variable holding the caller's API token."""

TOKEN_FILE_KEY = "rtqa.token_file"
"""Key in the root click context's ``meta`` set by the global ``--token-file`` option."""


@dataclass(frozen=True)
class Caller:
    """The user a command runs as, and how they were recognised (``"API token 3"``, ``"operating-system account
    alice"``)."""

    email: str
    role: Role
    provider_code: str | None
    how: str

    @property
    def is_staff(self) -> bool:
        return self.role is Role.STAFF


def os_account() -> str | None:
    """The login name of the account this process runs as (effective user id), or None when it has none."""
    if os.name == "posix":
        import pwd

        try:
            return pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            return None
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def setup_actor() -> str:
    """The audit actor of set-up done before any staff user exists: ``os:NAME`` (``os:uid-N`` without a name)."""
    account = os_account()
    if account is None and hasattr(os, "geteuid"):
        account = f"uid-{os.geteuid()}"
    return f"os:{account or 'unknown'}"


def _command() -> str:
    ctx = get_current_context(silent=True)
    path = ctx.command_path.split() if ctx is not None else []
    return " ".join(["rtqa", *path[1:]])


def _token_file() -> Path | None:
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    value = ctx.find_root().meta.get(TOKEN_FILE_KEY)
    return Path(value) if value else None


def supplied_token() -> tuple[str, str] | None:
    """The API token given to this command and where it came from, or None (then the OS account counts)."""
    path = _token_file()
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise fail(f"--token-file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise fail(f"--token-file {path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
        if not text:
            raise fail(f"--token-file {path} is empty; put the token `rtqa tokens issue` printed in it")
        return text.split()[0], f"--token-file {path}"
    token = os.environ.get(TOKEN_ENV, "").strip()
    return (token, TOKEN_ENV) if token else None


def not_mapped_message(account: str | None) -> str:
    name = account or "NAME"
    who = f"the operating-system account {account!r} is" if account else "this process's operating-system account is"
    return (
        f"{who} not mapped to an rtqa user; set RTQA_TOKEN or ask staff to run "
        f"`rtqa users set EMAIL --os-account {name}`"
    )


def identify(session: Session) -> Caller | None:
    """The caller: by token when one is given (refused in one line if it does not work), else by operating-system
    account; None when the account is mapped to nobody."""
    from models.auth import TokenError, token_user
    from models.tables import Provider
    from models.users import user_by_os_account

    given = supplied_token()
    try:
        if given is not None:
            token, where = given
            try:
                user = token_user(session, token, touch=True)
            except TokenError as err:
                raise fail(f"{where}: {err}; ask QA staff for a new token (`rtqa tokens issue EMAIL`)") from None
            how = f"the API token in {where}"
        else:
            account = os_account()
            found = user_by_os_account(session, account) if account else None
            if found is None:
                return None
            if not found.is_active:
                raise fail(f"{found.email} (operating-system account {account!r}) is deactivated; ask QA staff")
            user, how = found, f"operating-system account {account!r}"
    except (OperationalError, ProgrammingError) as err:
        if "os_account" in str(err.orig):  # the column is missing (not the table: that is `rtqa db init`)
            raise fail("the database schema is older than this rtqa; run `rtqa db upgrade`") from None
        raise
    provider = session.get(Provider, user.provider_id) if user.provider_id is not None else None
    return Caller(email=user.email, role=user.role, provider_code=provider.code if provider else None, how=how)


def require_caller(session: Session) -> Caller:
    """The caller, or a one-line refusal saying how to become one."""
    caller = identify(session)
    if caller is None:
        raise fail(not_mapped_message(os_account()))
    return caller


def staff_actor(session: Session) -> str:
    """The e-mail of the QA staff user running this command; other callers are refused in one line."""
    caller = require_caller(session)
    if not caller.is_staff:
        raise fail(f"{caller.email} is a {caller.role.value} user; `{_command()}` is for QA staff")
    return caller.email


def provider_actor(session: Session, provider_code: str) -> str:
    """The e-mail of the user submitting for ``provider_code``: QA staff, or a centre user of that provider."""
    caller = require_caller(session)
    if caller.is_staff or (caller.role is Role.CENTRE and caller.provider_code == provider_code):
        return caller.email
    if caller.role is Role.CENTRE:
        raise fail(f"{caller.email} is a centre user of {caller.provider_code}; they submit only for it")
    raise fail(f"{caller.email} is a {caller.role.value} user; `{_command()}` is for QA staff and the centre's users")


def staff_or_setup_actor(session: Session) -> str:
    """:func:`staff_actor`, or :func:`setup_actor` while the database has no active QA staff user."""
    from models.users import has_active_staff

    if not has_active_staff(session):
        return setup_actor()
    return staff_actor(session)


def demo_actor(session: Session) -> tuple[str, str | None]:
    """The staff user the demo acts as, and a line to print when it was just added.

    The caller when they are QA staff; when the database has no active staff user yet, a new one,
    ``NAME@localhost``, mapped to the operating-system account NAME (the caller commits).
    """
    from models.users import create_user, has_active_staff

    if has_active_staff(session):
        return staff_actor(session), None
    account = os_account()
    if account is None:
        raise fail("cannot tell this process's operating-system account; run the demo under a named account")
    email = f"{account}@localhost"
    create_user(
        session,
        email=email,
        name=f"QA staff ({account})",
        role=Role.STAFF,
        provider_code=None,
        actor=email,
        os_account=account,
        reason=f"first QA staff user, added by `rtqa demo` for operating-system account {account!r}",
    )
    return email, f"QA staff user {email} added for operating-system account {account!r}; the demo acts as them"
