"""``rtqa audit``: check the audit trail's hash chain."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlmodel import Session

from models.settings import get_settings
from portal.cli_errors import EXIT_NOT_ACCEPTED, require_initialised

audit_app = typer.Typer(help="The audit trail: verify its hash chain.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check every audit event's hash and link, in order; name the first broken one (exit 3 if any).

    Keep the printed head hash outside the database (a backup log, an e-mail): a later run that prints a chain
    which no longer passes through it shows the trail was rewritten.
    """
    from models.audit import verify_audit_chain
    from models.db import create_db_engine

    url = get_settings().resolved_database_url
    require_initialised(url)
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            report = verify_audit_chain(session)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "head_hash": report.head_hash,
                    "broken_event_id": report.broken_event_id,
                    "problem": report.problem,
                },
                indent=2,
            )
        )
    elif report.ok:
        typer.echo(f"audit chain intact: {report.checked} events, head {report.head_hash}")
    else:
        typer.echo(f"audit chain broken after {report.checked} good events: {report.problem}", err=True)
    if not report.ok:
        raise typer.Exit(EXIT_NOT_ACCEPTED)
