"""The ``rtqa`` safety net: every user mistake ends in one line on standard error and a documented exit code.

Exit codes (also in the README):

* ``0``: success (for ``rtqa submit``: the submission was decided acceptable).
* ``1``: an internal error, i.e. a bug: one line ``internal error: ...; rerun with --debug and report it``
  (``rtqa --debug ...`` shows the traceback).
* ``2``: a usage or user mistake: unknown provider, case or user, a missing file, a bad option value, a database
  not initialised (``run `rtqa db init```), or any error class the project defines (``IngestError``,
  ``ProtocolError``, ``QAChecksError``, ``CaseError``, ...).
* ``3``: ``rtqa submit`` only: the submission was rejected or decided ``unacceptable_variation``.
"""

from __future__ import annotations

from typing import Any

import typer
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from typer._click.core import Context  # typer vendors click: its own Context and exception classes
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from models.db import database_initialised as database_initialised  # re-exported for the CLI modules
from models.db import masked_url as masked_url

EXIT_OK = 0
"""Success; for ``rtqa submit``, the submission was decided and is not an unacceptable variation."""

EXIT_INTERNAL = 1
"""An unexpected error (a bug)."""

EXIT_USER = 2
"""A usage or user mistake, described in one line on standard error."""

EXIT_NOT_ACCEPTED = 3
"""``rtqa submit``: the submission was rejected or decided unacceptable_variation."""

PROJECT_PACKAGES = frozenset({"qa_checks", "benchmarks", "models", "flows", "portal"})
"""Packages whose error classes describe a user's mistake (their messages say what to do)."""

DEBUG_KEY = "rtqa.debug"
"""Key in the click context's ``meta`` set by the global ``--debug`` option."""

_FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)


def _no_table(cause: str) -> bool:
    """Whether a database error says a table is missing (SQLite ``no such table``; PostgreSQL ``relation ... does
    not exist``), as opposed to, e.g., a missing database, which ``rtqa db init`` would not create."""
    text = cause.lower()
    return "no such table" in text or ("relation " in text and "does not exist" in text)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` (one line) on standard error and return the exit (status 2) to raise."""
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(EXIT_USER)


def one_line(text: str) -> str:
    """``text`` with its lines joined by ``; `` and runs of spaces collapsed."""
    return "; ".join(" ".join(line.split()) for line in str(text).splitlines() if line.strip())


def not_initialised_message(url: str) -> str:
    """What to say when the database at ``url`` has no rtqa schema."""
    return (
        f"the database {masked_url(url)} is not initialised; run `rtqa db init` "
        "(or set RTQA_DATABASE_URL to use another)"
    )


def require_initialised(url: str) -> None:
    """Refuse (one line, exit 2) when the database at ``url`` is not initialised or cannot be reached."""
    try:
        ready = database_initialised(url)
    except SQLAlchemyError as err:
        raise fail(describe_expected(err, url) or f"cannot use the database {masked_url(url)}") from None
    if not ready:
        raise fail(not_initialised_message(url))


def is_expected(err: BaseException) -> bool:
    """Whether ``err`` describes a user mistake: an error class defined by the project (or one of its bases is),
    a file error, or a database without the schema / out of reach."""
    if isinstance(err, (*_FILE_ERRORS, OperationalError, ProgrammingError)):
        return True
    return any(cls.__module__.split(".")[0] in PROJECT_PACKAGES for cls in type(err).__mro__)


def describe_expected(err: BaseException, url: str | None = None) -> str | None:
    """The one line for an expected error, or None if ``err`` is not one."""
    if isinstance(err, OperationalError | ProgrammingError):
        cause = one_line(str(err.orig)) if err.orig is not None else one_line(str(err)).split(" [SQL:")[0]
        if url is None:
            from models.settings import get_settings

            url = get_settings().resolved_database_url
        if _no_table(cause):
            return not_initialised_message(url)
        return f"cannot use the database {masked_url(url)}: {cause}; check RTQA_DATABASE_URL and that it is reachable"
    if isinstance(err, _FILE_ERRORS) and err.filename is not None:
        return f"{err.filename}: {err.strerror or type(err).__name__}; check the path"
    if is_expected(err):
        return one_line(str(err)) or type(err).__name__
    return None


class GuardedGroup(TyperGroup):
    """The root ``rtqa`` group: turns expected errors into one line and exit 2, usage errors into one line, and
    anything else into ``internal error: ...`` (exit 1) unless ``--debug`` was given."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, NoArgsIsHelpError):
            raise
        except UsageError as err:
            path = (err.ctx or ctx).command_path.split()
            where = " ".join(["rtqa", *path[1:]])  # the program name varies (`python -m`, test runners)
            raise fail(f"{err.format_message().rstrip('.')}; see `{where} --help`") from None
        except ClickException:
            raise
        except Exception as err:
            if ctx.meta.get(DEBUG_KEY):
                raise
            message = describe_expected(err)
            if message is not None:
                raise fail(message) from None
            typer.echo(
                f"internal error: {type(err).__name__}: {one_line(str(err))[:500]}; rerun with --debug and report it",
                err=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None
