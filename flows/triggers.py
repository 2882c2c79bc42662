"""The flows QA staff may start by hand (``POST /api/v1/flows/{name}/runs``): name → flow, deployment, parameters.

Each :class:`TriggerableFlow` says how to check its parameters (a pydantic model, unknown fields refused, plus an
optional check against the database), how to run it in-process (the flow's body, no Prefect) and what to pass its
Prefect deployment. Adding a flow is one :func:`register` call (see the entries at the end of this module).
Parameters never carry settings: a deployment run reads them from the worker's environment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import Session, col, select

from flows._store import engine_for
from models.settings import Settings
from models.tables import BenchmarkCase, Submission

__all__ = [
    "TRIGGERABLE",
    "NoParameters",
    "PublishCaseParameters",
    "RemindParameters",
    "RescoreCaseParameters",
    "RescoreProtocolParameters",
    "ScoreBatchParameters",
    "SubmissionParameters",
    "TriggerError",
    "TriggerableFlow",
    "register",
]


class TriggerError(ValueError):
    """Well-formed parameters that cannot be run (an unknown case, a submission already decided); the message
    says what to do."""


class NoParameters(BaseModel):
    """A flow that takes no parameters."""

    model_config = ConfigDict(extra="forbid")


class PublishCaseParameters(BaseModel):
    """``publish-case``: which library case to build and register."""

    model_config = ConfigDict(extra="forbid")
    case_code: str = Field(min_length=1, max_length=100, description="Library case id (see `rtqa cases list`).")


class SubmissionParameters(BaseModel):
    """``credential-submission``: a stored submission whose steps have not all run (status received, validated or
    scored)."""

    model_config = ConfigDict(extra="forbid")
    submission_id: int = Field(ge=1, description="Id of a submission received and not yet decided.")


class RescoreCaseParameters(BaseModel):
    """``rescore-case``: the case's new reference version (published or imported first)."""

    model_config = ConfigDict(extra="forbid")
    case: str = Field(
        min_length=3,
        max_length=200,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="CODE@VERSION: rescore every decided submission of the case against this version.",
    )


class RescoreProtocolParameters(BaseModel):
    """``rescore-protocol``: a protocol's new version."""

    model_config = ConfigDict(extra="forbid")
    protocol_id: str = Field(min_length=1, max_length=100, description="Protocol id (see `rtqa protocols list`).")
    version: str = Field(min_length=1, max_length=50, description="The protocol version to rescore against.")


class RemindParameters(BaseModel):
    """``remind-expiring``: how far ahead to look."""

    model_config = ConfigDict(extra="forbid")
    within_days: int | None = Field(
        default=None, ge=0, le=3650, description="Default: RTQA_EXPIRY_WARNING_DAYS (the scheduled runs use it)."
    )


class ScoreBatchParameters(BaseModel):
    """``score-batch``: which submissions to run the remaining steps of, by id or by case; neither: every
    submission still received, validated or scored."""

    model_config = ConfigDict(extra="forbid")
    submission_ids: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=10000,
        description="Ids of submissions received and not yet decided (in the form: separated by commas or spaces).",
    )
    case: str | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="CODE@VERSION: every submission of the case not yet decided (instead of ids).",
    )

    @field_validator("submission_ids", mode="before")
    @classmethod
    def _split_text(cls, value: Any) -> Any:
        """A form's ``"3, 7 12"`` as ``["3", "7", "12"]`` (then checked as integers)."""
        if isinstance(value, str):
            return value.replace(",", " ").split()
        return value

    @model_validator(mode="after")
    def _ids_or_case(self) -> ScoreBatchParameters:
        if self.submission_ids is not None and self.case is not None:
            raise ValueError("give submission_ids or case, not both")
        if self.submission_ids is not None:
            if any(i < 1 for i in self.submission_ids):
                raise ValueError("submission ids are positive integers")
            if len(set(self.submission_ids)) != len(self.submission_ids):
                raise ValueError("a submission id is given twice")
        return self


def _no_check(settings: Settings, params: Any) -> None:
    return None


def _as_parameters(settings: Settings, params: BaseModel, actor: str) -> dict[str, Any]:
    return {**params.model_dump(exclude_none=True), "actor": actor}


@dataclass(frozen=True)
class TriggerableFlow:
    """A flow staff may start, and how.

    Attributes:
        name: the flow's name (and its deployment's, as in ``prefect.yaml``).
        description: one line for the list of flows.
        parameters: the pydantic model of the request body.
        run_inline: runs the flow's body in this process: ``(settings, parameters, actor) -> JSON-ready result``.
        deployment_parameters: the deployment's parameters: ``(settings, parameters, actor) -> dict``.
        check: raises :class:`TriggerError` when the parameters cannot be run (before anything starts).
    """

    name: str
    description: str
    parameters: type[BaseModel]
    run_inline: Callable[[Settings, Any, str], Any]
    deployment_parameters: Callable[[Settings, Any, str], dict[str, Any]] = _as_parameters
    check: Callable[[Settings, Any], None] = _no_check

    @property
    def deployment(self) -> str:
        """``flow name/deployment name`` in Prefect."""
        return f"{self.name}/{self.name}"


TRIGGERABLE: dict[str, TriggerableFlow] = {}
"""Every flow staff may start, by name."""


def register(entry: TriggerableFlow) -> TriggerableFlow:
    """Add (or replace) a triggerable flow."""
    TRIGGERABLE[entry.name] = entry
    return entry


# --- the entries ------------------------------------------------------------------------------------------------


def _check_case(settings: Settings, params: PublishCaseParameters) -> None:
    from benchmarks.cases import CaseError, get_case

    try:
        get_case(params.case_code)
    except CaseError as err:
        raise TriggerError(str(err)) from None


def _publish(settings: Settings, params: PublishCaseParameters, actor: str) -> dict[str, Any]:
    from flows.catalogue import publish_steps

    return {"case_code": params.case_code, "case_id": publish_steps(settings, params.case_code, actor)}


def _check_submission(settings: Settings, params: SubmissionParameters) -> None:
    from flows.runner import UNFINISHED

    with Session(engine_for(settings.resolved_database_url)) as session:
        sub = session.get(Submission, params.submission_id)
        if sub is None:
            raise TriggerError(f"submission {params.submission_id} does not exist")
        if sub.status not in UNFINISHED:
            raise TriggerError(
                f"submission {params.submission_id} is {sub.status.value}: only a submission still received, "
                "validated or scored has steps to run (an override changes a decided outcome)"
            )


def _credential(settings: Settings, params: SubmissionParameters, actor: str) -> dict[str, Any]:
    from flows.credentialing import submission_summary
    from flows.runner import SubmissionRunner

    SubmissionRunner(settings, actor=actor, use_prefect=False).run_steps(params.submission_id)
    return submission_summary(params.submission_id, database_url=settings.resolved_database_url)


def _submission_parameters(settings: Settings, params: SubmissionParameters, actor: str) -> dict[str, Any]:
    from flows.runner import deployment_parameters

    return deployment_parameters(settings.resolved_database_url, params.submission_id, actor=actor)


def batch_submissions(settings: Settings, params: ScoreBatchParameters) -> list[int]:
    """The submissions a ``score-batch`` start names, all with steps still to run (oldest first unless given by id).

    Raises:
        TriggerError: an id that does not exist or is already decided or rejected, an unknown case, or nothing to run.
    """
    from flows.runner import UNFINISHED, unfinished_submissions

    url = settings.resolved_database_url
    if params.submission_ids is None and params.case is None:
        ids = unfinished_submissions(url)
        if not ids:
            raise TriggerError("no submission is waiting for its remaining steps (received, validated or scored)")
        return ids
    with Session(engine_for(url)) as session:
        if params.case is not None:
            code, version = params.case.split("@")
            case = session.exec(
                select(BenchmarkCase).where(BenchmarkCase.case_code == code, BenchmarkCase.version == version)
            ).first()
            if case is None:
                raise TriggerError(f"unknown case {params.case}: `rtqa cases list` shows the registered cases")
            ids = unfinished_submissions(url, case_id=case.id)
            if not ids:
                raise TriggerError(f"case {params.case} has no submission waiting for its remaining steps")
            return ids
        assert params.submission_ids is not None
        rows = session.exec(select(Submission).where(col(Submission.id).in_(params.submission_ids))).all()
        status = {row.id: row.status for row in rows}
    unknown = [i for i in params.submission_ids if i not in status]
    if unknown:
        raise TriggerError(f"submission {', '.join(map(str, unknown))} does not exist")
    done = [f"{i} ({status[i].value})" for i in params.submission_ids if status[i] not in UNFINISHED]
    if done:
        raise TriggerError(
            f"submission {', '.join(done)} has no steps to run: only submissions still received, validated or scored "
            "can be in a batch (an override changes a decided outcome)"
        )
    return list(params.submission_ids)


def _check_batch(settings: Settings, params: ScoreBatchParameters) -> None:
    batch_submissions(settings, params)


def _batch_parameters(settings: Settings, params: ScoreBatchParameters, actor: str) -> dict[str, Any]:
    """The ``score-batch`` deployment's parameters: the submission ids (resolved now) and who started it; the Dask
    cluster comes from the worker's environment (``RTQA_DASK_*``)."""
    ids = params.submission_ids if params.submission_ids is not None else batch_submissions(settings, params)
    return {"submission_ids": list(ids), "actor": actor}


def _batch_inline(settings: Settings, params: ScoreBatchParameters, actor: str) -> dict[str, Any]:
    """Without a Prefect server: each submission's remaining steps in turn, in this process (no Dask)."""
    from flows.credentialing import submission_summary
    from flows.runner import SubmissionRunner

    runner = SubmissionRunner(settings, actor=actor, use_prefect=False)
    ids = params.submission_ids if params.submission_ids is not None else batch_submissions(settings, params)
    results = []
    for sid in ids:  # a step already done does nothing (e.g. the upload runner decided it since the start)
        runner.run_steps(sid)
        results.append(submission_summary(sid, database_url=settings.resolved_database_url))
    return {"submissions": results}


def _expire(settings: Settings, params: NoParameters, actor: str) -> dict[str, Any]:
    from flows.expiry import expire_steps

    return expire_steps(settings, actor)


def _remind(settings: Settings, params: RemindParameters, actor: str) -> dict[str, Any]:
    from flows.expiry import remind_steps

    return remind_steps(settings, params.within_days, actor)


def _check_rescore(settings: Settings, params: RescoreCaseParameters | RescoreProtocolParameters) -> None:
    from benchmarks.protocols import ProtocolError
    from flows.rescore_flows import check_target
    from flows.rescore_plan import RescoreError

    try:
        if isinstance(params, RescoreCaseParameters):
            check_target(protocol=None, version=None, case=params.case, settings=settings)
        else:
            check_target(protocol=params.protocol_id, version=params.version, case=None, settings=settings)
    except (RescoreError, ProtocolError) as err:
        raise TriggerError(str(err)) from None


def _rescore_case(settings: Settings, params: RescoreCaseParameters, actor: str) -> dict[str, Any]:
    from flows.rescore_flows import rescore_case_steps

    return rescore_case_steps(settings, params.case, actor)


def _rescore_protocol(settings: Settings, params: RescoreProtocolParameters, actor: str) -> dict[str, Any]:
    from flows.rescore_flows import rescore_protocol_steps

    return rescore_protocol_steps(settings, params.protocol_id, params.version, actor)


register(
    TriggerableFlow(
        name="credential-submission",
        description="Run the remaining steps (validate, score, decide, credential) of a received submission.",
        parameters=SubmissionParameters,
        run_inline=_credential,
        deployment_parameters=_submission_parameters,
        check=_check_submission,
    )
)
register(
    TriggerableFlow(
        name="publish-case",
        description="Build a library benchmark case's reference DICOM and register it with its protocol's trial.",
        parameters=PublishCaseParameters,
        run_inline=_publish,
        check=_check_case,
    )
)
register(
    TriggerableFlow(
        name="expire-credentials",
        description="Mark credentials whose validity has ended as lapsed (runs daily).",
        parameters=NoParameters,
        run_inline=_expire,
    )
)
register(
    TriggerableFlow(
        name="remind-expiring",
        description="Write reminders for credentials ending soon to the outbox and send them (runs weekly).",
        parameters=RemindParameters,
        run_inline=_remind,
    )
)
register(
    TriggerableFlow(
        name="rescore-case",
        description="Rescore every decided submission of a case against its new reference version (CODE@VERSION).",
        parameters=RescoreCaseParameters,
        run_inline=_rescore_case,
        check=_check_rescore,
    )
)
register(
    TriggerableFlow(
        name="rescore-protocol",
        description="Move a protocol's cases to a new protocol version and rescore their decided submissions.",
        parameters=RescoreProtocolParameters,
        run_inline=_rescore_protocol,
        check=_check_rescore,
    )
)
register(
    TriggerableFlow(
        name="score-batch",
        description="Run the remaining steps of many received submissions at once (by id, by case, or every one) "
        "on Dask.",
        parameters=ScoreBatchParameters,
        run_inline=_batch_inline,
        deployment_parameters=_batch_parameters,
        check=_check_batch,
    )
)
