"""The ``rtqa`` command line: database set-up, users and tokens, submissions, the demo and the web service."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from models.settings import Settings, get_settings

app = typer.Typer(help="rtqa: radiotherapy trials QA credentialing.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema and reference data.", no_args_is_help=True)
users_app = typer.Typer(help="Users (staff, centre, commissioner).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
outcomes_app = typer.Typer(help="Review outcomes.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(outcomes_app, name="outcomes")

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
def _main() -> None:
    configure_prefect(get_settings())


def _attach_benchmark_commands() -> None:
    from benchmarks.cli import cases_app, simulate
    from portal.cli_catalogue import cases_import, cases_publish, protocols_app
    from portal.cli_stages import questionnaire_app

    app.add_typer(questionnaire_app, name="questionnaire")
    app.add_typer(protocols_app, name="protocols")
    cases_app.command("publish")(cases_publish)
    cases_app.command("import")(cases_import)

    app.add_typer(cases_app, name="cases", help="Benchmark cases: list and build.")
    app.command("simulate", help="Simulate a centre's submission for a case.")(simulate)


_attach_benchmark_commands()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations up to the latest schema."""
    from models.migrate import upgrade

    settings = get_settings()
    upgrade(settings.resolved_database_url)
    console.print(f"schema at head: {settings.resolved_database_url}")


@db_app.command("init")
def db_init() -> None:
    """Create or upgrade the schema and load the provider registry and techniques (idempotent)."""
    from flows.catalogue import register_shipped_protocols
    from models.credentials import refresh_all
    from models.db import create_db_engine, session_scope
    from models.migrate import upgrade
    from models.registry import load_reference_data

    settings = get_settings()
    upgrade(settings.resolved_database_url)
    engine = create_db_engine(settings.resolved_database_url)
    with session_scope(engine) as session:
        summary = load_reference_data(session, actor="rtqa-cli")
        protocols = register_shipped_protocols(session, actor="rtqa-cli")
        changed = refresh_all(session, actor="rtqa-cli", validity_days=settings.credential_validity_days)
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


@users_app.command("add")
def users_add(
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[str, typer.Option(help="staff, centre or commissioner.")],
    provider: Annotated[str | None, typer.Option(help="Provider code (centre users only).")] = None,
) -> None:
    """Add a user."""
    from sqlmodel import select

    from models.audit import record_audit
    from models.db import create_db_engine, session_scope
    from models.enums import Role
    from models.tables import Provider, User

    try:
        role_value = Role(role)
    except ValueError:
        raise typer.BadParameter(
            f"role {role!r} is not one of {[r.value for r in Role]}", param_hint="--role"
        ) from None
    if (role_value is Role.CENTRE) != (provider is not None):
        raise typer.BadParameter("--provider is required for centre users and only for them", param_hint="--provider")
    engine = create_db_engine(get_settings().resolved_database_url)
    with session_scope(engine) as session:
        provider_id = None
        if provider is not None:
            row = session.exec(select(Provider).where(Provider.code == provider)).first()
            if row is None:
                raise typer.BadParameter(f"no provider with code {provider!r}", param_hint="--provider")
            provider_id = row.id
        user = User(email=email, name=name, role=role_value, provider_id=provider_id)
        session.add(user)
        session.flush()
        record_audit(
            session,
            actor="rtqa-cli",
            action="user.added",
            subject_type="app_user",
            subject_id=user.id or 0,
            after={"email": email, "role": role_value.value, "provider": provider},
        )
    console.print(f"added {role_value.value} user {email}")


@tokens_app.command("issue")
def tokens_issue(
    email: str,
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    days: Annotated[int | None, typer.Option(help="Expire after this many days.")] = None,
) -> None:
    """Issue an API token for a user and print it (it is shown only once)."""
    from sqlmodel import select

    from models.auth import issue_token
    from models.db import create_db_engine, session_scope
    from models.tables import User
    from models.types import utcnow

    engine = create_db_engine(get_settings().resolved_database_url)
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            raise typer.BadParameter(f"no user with e-mail {email!r}", param_hint="EMAIL")
        expires = utcnow() + timedelta(days=days) if days else None
        token = issue_token(session, user=user, actor="rtqa-cli", label=label, expires_at=expires)
    typer.echo(token)


@outcomes_app.command("override")
def outcomes_override(
    submission: Annotated[int, typer.Argument(help="Submission id.")],
    level: Annotated[
        str, typer.Option(help="per_protocol, acceptable_variation, unacceptable_variation or justified_variation.")
    ],
    justification: Annotated[
        str, typer.Option(help="Why the automatic outcome is replaced (kept in the audit trail).")
    ],
    actor: Annotated[str, typer.Option(help="E-mail of the QA staff member deciding.")],
) -> None:
    """Replace a decided submission's outcome (QA staff) and update the credentials it affects."""
    from sqlmodel import select

    from models.db import create_db_engine, session_scope
    from models.enums import OutcomeLevel, Role
    from models.outcomes import OverrideError, override_outcome
    from models.tables import User

    try:
        level_value = OutcomeLevel(level)
    except ValueError:
        raise typer.BadParameter(
            f"level {level!r} is not one of {[v.value for v in OutcomeLevel]}", param_hint="--level"
        ) from None
    settings = get_settings()
    engine = create_db_engine(settings.resolved_database_url)
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.email == actor)).first()
        if user is None or user.role is not Role.STAFF or not user.is_active:
            raise typer.BadParameter(f"{actor!r} is not an active QA staff user", param_hint="--actor")
        try:
            outcome = override_outcome(
                session,
                submission_id=submission,
                level=level_value,
                justification=justification,
                actor=actor,
                validity_days=settings.credential_validity_days,
            )
        except OverrideError as err:
            raise typer.BadParameter(str(err), param_hint="SUBMISSION") from None
        console.print(
            f"submission {submission}: outcome {outcome.level.value} (override, supersedes {outcome.supersedes_id})"
        )


@app.command("credentials")
def credentials(
    all_providers: Annotated[bool, typer.Option("--all", help="Show providers without any credential too.")] = False,
    provider: Annotated[
        str | None, typer.Option(help="One provider's credentials, stage by stage (case, attempt, outcome, validity).")
    ] = None,
) -> None:
    """Print providers × techniques with each credential's status, or one provider's credentials by stage."""
    from portal.cli_stages import provider_stage_table
    from portal.report import credential_matrix

    if provider is not None:
        console.print(provider_stage_table(provider))
        return
    engine_url = get_settings().resolved_database_url
    console.print(credential_matrix(engine_url, include_empty=all_providers))


@app.command("submit")
def submit(
    source: Annotated[Path, typer.Argument(help="Folder with the centre's DICOM files.")],
    provider: Annotated[str, typer.Option(help="Provider code.")],
    case: Annotated[str, typer.Option(help="Benchmark case code.")],
    version: Annotated[str | None, typer.Option(help="Case version (default: the newest published).")] = None,
) -> None:
    """Run the credentialing flow on a submission folder: prints the decision (or the rejection) and its reasons."""
    from benchmarks.protocols import ProtocolError
    from flows.credentialing import IngestError, credential_submission
    from portal.cli_stages import fail

    if not source.is_dir():
        raise fail(f"{source}: not a folder; give the folder holding the centre's DICOM files")
    try:
        result = credential_submission(str(source), provider, case, version, actor="rtqa-cli")
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
    """Start the web service."""
    import uvicorn

    from portal.app import create_app

    settings = get_settings().model_copy(update={"run_submissions": run_submissions})
    uvicorn.run(create_app(settings), host=host, port=port)
