"""The ``rtqa`` command line: database set-up, users and tokens, submissions, the demo and the web service."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from models.settings import Settings, get_settings
from portal.cli_admin import (
    acting_for_provider,
    check_provider_if_possible,
    require_submission_target,
    submissions_app,
    tokens_app,
    users_app,
)
from portal.cli_audit import audit_app
from portal.cli_backup import register as register_backup
from portal.cli_dicom import dicom_app
from portal.cli_errors import DEBUG_KEY, EXIT_NOT_ACCEPTED, GuardedGroup, fail, masked_url, require_initialised
from portal.cli_identity import TOKEN_FILE_KEY

app = typer.Typer(
    help="rtqa: radiotherapy trials QA credentialing.",
    no_args_is_help=True,
    add_completion=False,
    cls=GuardedGroup,
    epilog="Commands that change something run as the user of the API token in RTQA_TOKEN (or --token-file), else "
    "as the user mapped to your operating-system account (`rtqa users set EMAIL --os-account NAME`). "
    "Exit codes: 0 success, 1 internal error, 2 usage or user mistake, 3 submission not accepted.",
)
db_app = typer.Typer(help="Database schema and reference data.", no_args_is_help=True)
outcomes_app = typer.Typer(help="Review outcomes.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(submissions_app, name="submissions")
app.add_typer(outcomes_app, name="outcomes")
app.add_typer(audit_app, name="audit")
app.add_typer(dicom_app, name="dicom")

console = Console(width=None if sys.stdout.isatty() else 180)
"""Wide enough for the credential table when output goes to a file or a pipe."""


def configure_prefect(settings: Settings) -> None:
    """Defaults for running flows without a Prefect server: a local PREFECT_HOME, no telemetry, a patient start-up.

    Values already in the environment win. Must run before Prefect is imported.
    """
    home = Path(os.environ.setdefault("PREFECT_HOME", str((settings.data_dir / "prefect").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an internal error.")] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding your API token (else RTQA_TOKEN, else your operating-system account's user).",
        ),
    ] = None,
) -> None:
    ctx.meta[DEBUG_KEY] = debug
    ctx.meta[TOKEN_FILE_KEY] = token_file
    configure_prefect(get_settings())


def _checking_provider(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` (a simulation taking ``provider=``) preceded by a check that the provider is in the registry."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> None:
        check_provider_if_possible(kwargs["provider"])
        command(*args, **kwargs)

    return checked


def _attach_benchmark_commands() -> None:
    from benchmarks.cli import cases_app, simulate
    from portal.cli_catalogue import cases_import, cases_publish, protocols_app
    from portal.cli_rescore import rescore
    from portal.cli_stages import questionnaire_app

    app.command("rescore")(rescore)
    app.add_typer(questionnaire_app, name="questionnaire")
    app.add_typer(protocols_app, name="protocols")
    cases_app.command("publish")(cases_publish)
    cases_app.command("import")(cases_import)
    for info in cases_app.registered_commands:
        if info.name == "simulate-plan" and info.callback is not None:
            info.callback = _checking_provider(info.callback)

    app.add_typer(cases_app, name="cases", help="Benchmark cases: list and build.")
    app.command("simulate", help="Simulate a centre's submission for a case.")(_checking_provider(simulate))


_attach_benchmark_commands()
register_backup(app)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations up to the latest schema."""
    from models.migrate import upgrade

    settings = get_settings()
    upgrade(settings.resolved_database_url)
    console.print(f"schema at head: {masked_url(settings.resolved_database_url)}")


@db_app.command("init")
def db_init() -> None:
    """Create or upgrade the schema and load the provider registry and techniques (idempotent; QA staff, or anyone
    before the first staff user is added)."""
    from flows.catalogue import register_shipped_protocols
    from models.credentials import refresh_all
    from models.db import create_db_engine, session_scope
    from models.migrate import upgrade
    from models.registry import load_reference_data
    from portal.cli_identity import staff_or_setup_actor

    settings = get_settings()
    upgrade(settings.resolved_database_url)
    engine = create_db_engine(settings.resolved_database_url)
    with session_scope(engine) as session:
        actor = staff_or_setup_actor(session)
        summary = load_reference_data(session, actor=actor)
        protocols = register_shipped_protocols(session, actor=actor)
        changed = refresh_all(session, actor=actor, validity_days=settings.credential_validity_days)
    engine.dispose()
    console.print(
        f"database ready: {summary.providers} providers in {summary.networks} networks "
        f"({summary.cancer_alliances} cancer alliances), {summary.techniques} techniques; {summary.added} rows added; "
        f"QA stages required by {len(protocols)} protocols ({', '.join(protocols)}); "
        f"{changed} credentials re-evaluated with a change"
    )


@app.command("providers")
def providers(network: Annotated[str | None, typer.Option(help="Only this network code.")] = None) -> None:
    """List the provider registry."""
    from rich.table import Table
    from sqlmodel import Session, select

    from models.db import create_db_engine
    from models.tables import Network, Provider

    engine = create_db_engine(get_settings().resolved_database_url)
    table = Table("code", "provider", "network")
    with Session(engine) as session:
        query = select(Provider, Network).where(Provider.network_id == Network.id)
        if network:
            query = query.where(Network.code == network)
        for p, n in session.exec(query.order_by(Network.name, Provider.name)).all():
            table.add_row(p.code, p.name, n.code)
    console.print(table)


@outcomes_app.command("override")
def outcomes_override(
    submission: Annotated[int, typer.Argument(help="Submission id.")],
    level: Annotated[
        str, typer.Option(help="per_protocol, acceptable_variation, unacceptable_variation or justified_variation.")
    ],
    justification: Annotated[
        str, typer.Option(help="Why the automatic outcome is replaced (kept in the audit trail).")
    ],
    confirm_not_latest: Annotated[
        bool, typer.Option(help="Confirm overriding an attempt that is not the provider's latest at the case.")
    ] = False,
) -> None:
    """Replace a decided submission's outcome (QA staff) and update the credentials it affects."""
    from models.db import create_db_engine, session_scope
    from models.enums import OutcomeLevel
    from models.outcomes import NotLatestAttemptError, OverrideError, override_outcome
    from portal.cli_identity import staff_actor

    try:
        level_value = OutcomeLevel(level)
    except ValueError:
        raise fail(f"--level {level!r} is not one of: {', '.join(v.value for v in OutcomeLevel)}") from None
    settings = get_settings()
    engine = create_db_engine(settings.resolved_database_url)
    with session_scope(engine) as session:
        actor = staff_actor(session)
        try:
            outcome = override_outcome(
                session,
                submission_id=submission,
                level=level_value,
                justification=justification,
                actor=actor,
                validity_days=settings.credential_validity_days,
                confirm_not_latest=confirm_not_latest,
            )
        except NotLatestAttemptError as err:
            raise fail(f"{err}; add --confirm-not-latest to override it") from None
        except OverrideError as err:
            raise fail(str(err)) from None
        console.print(
            f"submission {submission}: outcome {outcome.level.value} (override, supersedes {outcome.supersedes_id})"
        )


@app.command("credentials")
def credentials(
    all_providers: Annotated[bool, typer.Option("--all", help="Show providers without any credential too.")] = False,
    provider: Annotated[
        str | None, typer.Option(help="One provider's credentials, stage by stage (case, attempt, outcome, validity).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON).")] = False,
) -> None:
    """Print providers × techniques with each credential's status, or one provider's credentials by stage.

    With ``--json``: a list of ``{"provider", "network", "credentials": {technique: {"status", "valid_until"} or
    null}}``, or with ``--provider`` a list of credentials (``provider, scope, code, status, granted_at,
    valid_until, stages, outstanding, evidence``).
    """
    from portal.cli_stages import provider_credentials, provider_stage_table
    from portal.report import credential_matrix, credential_matrix_records

    engine_url = get_settings().resolved_database_url
    if provider is not None:
        if as_json:
            typer.echo(json.dumps([v.as_dict() for v in provider_credentials(provider)[1]], indent=2))
        else:
            console.print(provider_stage_table(provider))
    elif as_json:
        typer.echo(json.dumps(credential_matrix_records(engine_url, include_empty=all_providers), indent=2))
    else:
        console.print(credential_matrix(engine_url, include_empty=all_providers))


@app.command("submit")
def submit(
    source: Annotated[Path, typer.Argument(help="Folder with the centre's DICOM files.")],
    provider: Annotated[str, typer.Option(help="Provider code.")],
    case: Annotated[str, typer.Option(help="Benchmark case code.")],
    version: Annotated[str | None, typer.Option(help="Case version (default: the newest published).")] = None,
) -> None:
    """Run the credentialing flow on a submission folder: prints the decision (or the rejection) and its reasons.

    QA staff, or a centre user of the provider, run it.

    Runs inline (no Prefect API) unless a Prefect server is configured (PREFECT_API_URL) or RTQA_FLOW_RUNS=prefect.
    Exits with 3 when the submission is rejected or decided unacceptable_variation, 0 for any other decision.
    """
    from benchmarks.protocols import ProtocolError
    from flows.credentialing import IngestError, run_credential_submission

    if not source.is_dir():
        raise fail(f"{source}: not a folder; give the folder holding the centre's DICOM files")
    settings = get_settings()
    require_initialised(settings.resolved_database_url)
    require_submission_target(provider, case, version)
    actor = acting_for_provider(provider)
    try:
        result = run_credential_submission(settings, str(source), provider, case, version, actor=actor)
    except (IngestError, ProtocolError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    outcome = result["outcome"] or result["status"]
    console.print(
        f"submission {result['submission_id']} ({result['case']}, attempt {result['attempt']}): "
        f"{str(outcome).replace('_', ' ')}"
    )
    for reason in [result["rejection_reason"], *result["reasons"]]:
        if reason:
            console.print(f"  - {reason}")
    console.print(f"  credentials: rtqa credentials --provider {provider}")
    if result["status"] == "rejected" or result["outcome"] == "unacceptable_variation":
        raise typer.Exit(EXIT_NOT_ACCEPTED)


@app.command("demo")
def demo() -> None:
    """Set everything up on the embedded default and credential two simulated centres end to end."""
    from portal.demo import run_demo

    run_demo(get_settings(), console)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    run_submissions: Annotated[
        bool,
        typer.Option(
            help="Run uploaded submissions' remaining steps in this process (or, with PREFECT_API_URL set, start the "
            "credential-submission deployment for each)."
        ),
    ] = True,
) -> None:
    """Start the web service (refused while the database is not initialised)."""
    import uvicorn

    from portal.app import create_app

    settings = get_settings().model_copy(update={"run_submissions": run_submissions})
    require_initialised(settings.resolved_database_url)
    uvicorn.run(create_app(settings), host=host, port=port)
