"""``rtqa`` commands for QA stages: facility questionnaires, and a provider's credentials stage by stage.

* ``rtqa questionnaire show TECHNIQUE``: the form's questions.
* ``rtqa questionnaire submit --provider P --technique T FILE``: submit answers (JSON); decided at once.
* ``rtqa credentials --provider CODE``: each technique and trial credential with every required stage (case,
  submission, attempt, outcome, decided when, valid until).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from models.settings import get_settings
from portal.cli_errors import fail, require_initialised

__all__ = ["console", "fail", "provider_credentials", "provider_stage_table", "questionnaire_app"]

if TYPE_CHECKING:
    from models.credentials import CredentialView

questionnaire_app = typer.Typer(help="Facility questionnaires (a QA stage of every technique).", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 180)
"""Wide enough for tables when output goes to a file or a pipe."""


@questionnaire_app.command("show")
def questionnaire_show(technique: Annotated[str, typer.Argument(help="Technique code, e.g. sabr_lung.")]) -> None:
    """List a technique's questions: id, answer type, whether required, and the question."""
    from benchmarks.questionnaires import QuestionnaireFileError, load_questionnaire

    try:
        form = load_questionnaire(technique)
    except QuestionnaireFileError as err:
        raise fail(str(err)) from None
    table = Table("id", "type", "required", "question", title=f"{form.title} (version {form.version})")
    for q in form.questions:
        table.add_row(q.id, q.type, "yes" if q.required else "no", q.text)
    console.print(table)


@questionnaire_app.command("submit")
def questionnaire_submit(
    file: Annotated[Path, typer.Argument(help="JSON file: an object of question id -> answer.")],
    provider: Annotated[str, typer.Option(help="Provider code.")],
    technique: Annotated[str, typer.Option(help="Technique code, e.g. sabr_lung.")],
) -> None:
    """Submit a centre's facility questionnaire answers (QA staff or the centre's users); prints the outcome and
    its reasons."""
    from benchmarks.questionnaires import QuestionnaireError, QuestionnaireFileError
    from flows.questionnaire import QuestionnaireSubmissionError, submit_answers

    try:
        answers = json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise fail(f"{file}: cannot read the answers file: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise fail(f"{file}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if not isinstance(answers, dict):
        raise fail(f"{file}: expected a JSON object of question id -> answer, got {type(answers).__name__}")
    from portal.cli_admin import acting_for_provider, require_provider

    settings = get_settings()
    require_initialised(settings.resolved_database_url)
    require_provider(provider)
    actor = acting_for_provider(provider)
    try:
        result = submit_answers(
            provider,
            technique,
            answers,
            actor=actor,
            database_url=settings.resolved_database_url,
            data_dir=settings.data_dir,
            validity_days=settings.credential_validity_days,
        )
    except QuestionnaireError as err:
        for problem in err.problems:
            typer.echo(f"error: {file}: {problem.message}", err=True)
        raise typer.Exit(2) from None
    except (QuestionnaireFileError, QuestionnaireSubmissionError) as err:
        raise fail(str(err)) from None
    seen = "" if result.created else " (the same answers were already submitted)"
    console.print(
        f"submission {result.submission_id} (attempt {result.attempt}): {result.outcome.replace('_', ' ')}{seen}"
    )
    for reason in result.reasons:
        console.print(f"  - {reason}")


def provider_credentials(provider: str) -> tuple[str, list[CredentialView]]:
    """The provider's name and credentials (technique and trial), each with its stages.

    Raises:
        typer.Exit: unknown provider (one line on standard error).
    """
    from sqlmodel import Session, select

    from models.credentials import credentials_for_provider
    from models.db import create_db_engine
    from models.tables import Provider

    engine = create_db_engine(get_settings().resolved_database_url)
    try:
        with Session(engine) as session:
            row = session.exec(select(Provider).where(Provider.code == provider)).first()
            if row is None:
                raise fail(f"no provider with code {provider!r}; `rtqa providers` lists them")
            return row.name, credentials_for_provider(session, row)
    finally:
        engine.dispose()


def provider_stage_table(provider: str) -> Table:
    """The provider's credentials, one row per required stage.

    Raises:
        typer.Exit: unknown provider (one line on standard error).
    """
    name, views = provider_credentials(provider)
    table = Table(
        "credential", "status", "stage", "stage status", "case", "submission", "attempt", "outcome", "decided",
        "valid until", title=f"{name} ({provider})",
    )  # fmt: skip
    for v in views:
        label = f"{v.scope} {v.code}"
        status = v.status.value + (f" to {v.valid_until:%Y-%m-%d}" if v.valid_until else "")
        stages = v.evidence.get("stages", [])
        if not stages:
            table.add_row(label, status, "; ".join(v.evidence.get("outstanding", [])) or "-", *["" for _ in range(7)])
        for i, s in enumerate(stages):
            table.add_row(
                label if i == 0 else "",
                status if i == 0 else "",
                s["description"],
                s["status"],
                s["case"] or "",
                str(s["submission_id"] or ""),
                str(s["attempt"] or ""),
                (s["outcome"] or "").replace("_", " "),
                (s["decided_at"] or "")[:10],
                (s["valid_until"] or "")[:10],
            )
    if not views:
        table.caption = "no credentials yet: no submission has been decided for this provider"
    return table
