"""What a credential-submission flow run shows in Prefect: a markdown artifact with the outcome, the criteria table
and a link to the submission's report page.

:func:`submission_markdown` is plain text from the database (testable without Prefect);
:func:`publish_submission_artifact` files it as the flow run's artifact ``submission-<id>``.
"""

from __future__ import annotations

from sqlmodel import Session

from flows._store import engine_for
from flows.protocol_store import resolve_protocol
from flows.steps import data_dir_or_default, load_submission_and_case
from models.enums import SubmissionStatus
from models.outcomes import current_outcome
from models.settings import Settings
from models.tables import Provider
from qa_checks.protocol import Evaluation

__all__ = ["artifact_key", "publish_submission_artifact", "report_path", "submission_markdown"]


def report_path(submission_id: int) -> str:
    """The path of a submission's report page in the web service."""
    return f"/submissions/{submission_id}/report"


def artifact_key(submission_id: int) -> str:
    """The artifact key of a submission (Prefect keys: lower-case letters, digits and dashes)."""
    return f"submission-{submission_id}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    shown = f"{value:.4g}"
    return shown if unit in ("", "1") else f"{shown} {unit}"


def _criteria_table(evaluation: Evaluation) -> list[str]:
    lines = [
        "| structure | metric | value | per protocol | acceptable | outcome |",
        "|---|---|---|---|---|---|",
    ]
    for r in evaluation.results:
        c = r.criterion
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    c.structure,
                    c.metric,
                    _number(r.value, c.unit),
                    f"{c.direction} {_number(c.per_protocol, c.unit)}",
                    f"{c.direction} {_number(c.acceptable, c.unit)}",
                    r.outcome.value.replace("_", " "),
                )
            )
            + " |"
        )
    return lines


def submission_markdown(submission_id: int, settings: Settings) -> str:
    """The artifact's markdown: a heading with the outcome, the submission's facts, the criteria and reasons."""
    from flows.credentialing import REQUIRED_MODALITIES, stored_evaluation

    with Session(engine_for(settings.resolved_database_url)) as session:
        sub, case = load_submission_and_case(session, submission_id)
        provider = session.get(Provider, sub.provider_id)
        outcome = current_outcome(session, submission_id)
        evaluation: Evaluation | None = None
        if outcome is not None and case.stage in REQUIRED_MODALITIES:
            protocol = resolve_protocol(
                case.protocol_id, case.protocol_version, data_dir=data_dir_or_default(str(settings.data_dir))
            )
            evaluation = stored_evaluation(session, submission_id, case.stage, protocol)
    decided = outcome.level.value.replace("_", " ") if outcome else sub.status.value.replace("_", " ")
    link = report_path(submission_id)
    lines = [
        f"# Submission {submission_id}: {decided}",
        "",
        "| | |",
        "|---|---|",
        f"| provider | {_cell(provider.code if provider else sub.provider_id)} |",
        f"| case | {_cell(f'{case.case_code}@{case.version}')} ({case.stage.label}) |",
        f"| attempt | {sub.attempt} |",
        f"| status | {sub.status.value} |",
    ]
    if outcome is not None:
        lines.append(
            f"| outcome | **{decided}** ({outcome.source.value}, protocol "
            f"{_cell(outcome.protocol_id)}@{_cell(outcome.protocol_version)}) |"
        )
    lines.append(f"| report | [{link}]({link}) |")
    if sub.status is SubmissionStatus.REJECTED:
        lines += ["", "## Rejected", "", _cell(sub.rejection_reason or "")]
    if evaluation is not None:
        lines += ["", "## Criteria", "", *_criteria_table(evaluation)]
    if outcome is not None and outcome.reasons:
        lines += ["", "## Reasons", "", *(f"- {_cell(reason)}" for reason in outcome.reasons)]
    return "\n".join(lines) + "\n"


def publish_submission_artifact(submission_id: int, settings: Settings) -> None:
    """File :func:`submission_markdown` as the current flow run's markdown artifact (key :func:`artifact_key`)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=submission_markdown(submission_id, settings),
        key=artifact_key(submission_id),
        description=f"Outcome of submission {submission_id}; report page {report_path(submission_id)}",
    )
