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

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from flows._store import engine_for
from models.settings import Settings
from models.tables import Submission

__all__ = [
    "TRIGGERABLE",
    "NoParameters",
    "PublishCaseParameters",
    "RemindParameters",
    "RescoreCaseParameters",
    "RescoreProtocolParameters",
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
