"""``rtqa backup DIR`` and ``rtqa restore DIR``: the database and the submission store, with a manifest of hashes.

See :mod:`portal.backup` for what a backup holds. ``backup`` reads only; ``restore`` writes into a new, empty
database and data directory (``RTQA_DATABASE_URL``, ``RTQA_DATA_DIR``) and is recorded in the restored audit trail
as ``backup.restored`` by ``os:NAME``, the operating-system account that ran it (the users of a fresh database are
the ones being restored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.settings import get_settings
from portal.cli_errors import fail, masked_url, require_initialised
from portal.cli_stages import console


def backup_command(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A new (or empty) folder for the backup.")],
) -> None:
    """Back up the database (pg_dump -Fc, or SQLite's backup API) and the submission store, with a manifest of
    SHA-256 hashes."""
    from portal.backup import BackupError, backup

    settings = get_settings()
    require_initialised(settings.resolved_database_url)
    try:
        summary = backup(settings, directory)
    except BackupError as err:
        raise fail(str(err)) from None
    console.print(
        f"backed up {masked_url(settings.resolved_database_url)} ({summary.kind}, revision {summary.revision}, "
        f"{summary.audit_events} audit events) and {summary.files} stored files to {summary.directory}"
    )
    if summary.outside_store:
        typer.echo(
            f"warning: {summary.outside_store} stored paths in the database lie outside the data directory "
            f"{settings.data_dir.resolve()} and are not in the backup",
            err=True,
        )


def restore_command(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A folder written by `rtqa backup`.")],
) -> None:
    """Restore a backup into an empty database and data directory, after checking every file's SHA-256."""
    from portal.backup import BackupError, restore
    from portal.cli_identity import setup_actor

    settings = get_settings()
    try:
        summary = restore(settings, directory, actor=setup_actor())
    except BackupError as err:
        raise fail(str(err)) from None
    moved = f"; {summary.relocated} stored paths moved to {settings.data_dir.resolve()}" if summary.relocated else ""
    then = f"; schema upgraded from {summary.revision} to {summary.upgraded_to}" if summary.upgraded_to else ""
    console.print(
        f"restored {directory} into {masked_url(settings.resolved_database_url)} ({summary.kind}, revision "
        f"{summary.revision}) and {summary.files} stored files{moved}{then}; check it with `rtqa audit verify`"
    )


def register(app: typer.Typer) -> None:
    """Add ``backup`` and ``restore`` to the ``rtqa`` command line."""
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
