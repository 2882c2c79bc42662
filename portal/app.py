"""The rtqa web service: a JSON API and pages for commissioners, trial units, centres and QA staff.

Every API endpoint but ``/health`` needs ``Authorization: Bearer <token>`` (or a page session cookie with its CSRF
token). Centre users see only their own provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from flows.runner import SubmissionRunner
from models.credentials import credentialed_for_trial, expiring_credentials
from models.db import create_db_engine
from models.enums import OutcomeLevel, Role
from models.outcomes import NotLatestAttemptError, OverrideError, UnknownSubmissionError, override_outcome
from models.scoring_runs import current_run, results_of_run, runs_as_dicts
from models.settings import Settings, get_settings
from models.tables import (
    BenchmarkCase,
    DoseResult,
    Network,
    Outcome,
    PlanResult,
    Provider,
    StructureResult,
    Submission,
    Technique,
    Trial,
    TrialRequirement,
)
from portal.api_audit import router as audit_router
from portal.api_cases import router as cases_router
from portal.api_centre import router as centre_router
from portal.api_commissioning import router as commissioning_router
from portal.api_credential_status import router as credential_status_router
from portal.api_flows import router as flows_router
from portal.api_national import router as national_router
from portal.api_received import router as received_router
from portal.api_review import router as review_router
from portal.api_stages import router as stages_router
from portal.api_submissions import SubmissionId
from portal.api_submissions import router as submissions_router
from portal.api_users import router as users_router
from portal.deps import ConnectionTickets, CurrentUser, SessionDep, StaffOnly, StaffOrCommissioner
from portal.dicomweb import router as dicomweb_router
from portal.pages import install_pages
from portal.refusals import install_refusals
from portal.upload_limit import UploadSizeLimit


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment). The engine is created here, not at import.

    ``app.state.runner`` (:class:`flows.runner.SubmissionRunner`) runs uploaded submissions' remaining steps; it is
    started with the app only when ``settings.run_submissions`` is set (``rtqa serve``), and otherwise can be run to
    completion with ``app.state.runner.drain()``.
    """
    settings = settings or get_settings()
    runner = SubmissionRunner(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.run_submissions:
            runner.start()
        try:
            yield
        finally:
            runner.stop()

    app = FastAPI(
        title="rtqa",
        version="0.1.0",
        summary="Radiotherapy trials QA credentialing",
        lifespan=lifespan,
        docs_url=None,  # served by portal.pages from vendored Swagger UI files, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine or create_db_engine(settings.resolved_database_url)
    app.state.connection_tickets = ConnectionTickets(app.state.engine)
    app.state.runner = runner
    app.include_router(credential_status_router)  # first: the most requested route is matched first
    app.include_router(stages_router)
    app.include_router(cases_router)
    app.include_router(centre_router)
    app.include_router(submissions_router)
    app.include_router(commissioning_router)
    app.include_router(review_router)
    app.include_router(audit_router)
    app.include_router(users_router)
    app.include_router(national_router)
    app.include_router(received_router)
    app.include_router(dicomweb_router)
    app.include_router(flows_router)
    app.add_middleware(UploadSizeLimit, max_upload_bytes=settings.max_upload_bytes)
    install_refusals(app)
    install_pages(app)

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/me", tags=["auth"])
    def me(user: CurrentUser) -> dict[str, Any]:
        return {"email": user.email, "name": user.name, "role": user.role.value, "provider_id": user.provider_id}

    @app.get("/api/v1/providers", tags=["providers"])
    def list_providers(user: CurrentUser, session: SessionDep) -> list[dict[str, Any]]:
        query = select(Provider, Network).where(Provider.network_id == Network.id).order_by(Provider.name)
        if user.role is Role.CENTRE:
            query = query.where(Provider.id == user.provider_id)
        return [_provider_json(p, n) for p, n in session.exec(query).all()]

    @app.get("/api/v1/trials", tags=["trials"])
    def list_trials(user: CurrentUser, session: SessionDep) -> list[dict[str, Any]]:
        return [_trial_json(session, t) for t in session.exec(select(Trial).order_by(Trial.code)).all()]

    @app.get("/api/v1/trials/{trial_code}/eligible-providers", tags=["trials"])
    def eligible_providers(trial_code: str, user: StaffOrCommissioner, session: SessionDep) -> dict[str, Any]:
        trial = session.exec(select(Trial).where(Trial.code == trial_code)).first()
        if trial is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no trial with code {trial_code!r}")
        return {
            "trial": _trial_json(session, trial),
            "providers": [c.as_dict() for c in credentialed_for_trial(session, trial)],
        }

    @app.get("/api/v1/credentials/expiring", tags=["credentials"])
    def expiring(
        user: StaffOrCommissioner,
        session: SessionDep,
        within_days: Annotated[
            int | None, Query(ge=0, le=3650, description="Default: RTQA_EXPIRY_WARNING_DAYS")
        ] = None,
    ) -> list[dict[str, Any]]:
        days = settings.expiry_warning_days if within_days is None else within_days
        return [c.as_dict() for c in expiring_credentials(session, within_days=days)]

    @app.get("/api/v1/submissions/{submission_id}", tags=["submissions"])
    def submission_detail(submission_id: SubmissionId, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
        sub = session.get(Submission, submission_id)
        if user.role is Role.CENTRE and (sub is None or sub.provider_id != user.provider_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a centre token may only read its own submissions")
        if sub is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no submission with id {submission_id}")
        return _submission_json(session, sub)

    @app.post("/api/v1/submissions/{submission_id}/override", tags=["submissions"], status_code=201)
    def override(
        submission_id: SubmissionId, body: OverrideRequest, user: StaffOnly, session: SessionDep
    ) -> dict[str, Any]:
        try:
            override_outcome(
                session,
                submission_id=submission_id,
                level=body.level,
                justification=body.justification,
                actor=user.email,
                validity_days=settings.credential_validity_days,
                confirm_not_latest=body.confirm_not_latest,
            )
        except UnknownSubmissionError as err:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
        except NotLatestAttemptError as err:
            detail = f'{err}; send "confirm_not_latest": true to override it'
            raise HTTPException(status.HTTP_409_CONFLICT, detail=detail) from None
        except OverrideError as err:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
        session.commit()
        sub = session.get(Submission, submission_id)
        assert sub is not None
        return _submission_json(session, sub)

    return app


class OverrideRequest(BaseModel):
    """A reviewer's decision replacing the current outcome."""

    level: OutcomeLevel
    justification: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="Why, for the audit trail.")
    confirm_not_latest: bool = Field(
        default=False, description="Needed to override an attempt that is not the provider's latest at the case."
    )


def _submission_json(session: Session, sub: Submission) -> dict[str, Any]:
    provider = session.get(Provider, sub.provider_id)
    case = session.get(BenchmarkCase, sub.case_id)
    assert provider is not None and case is not None
    outcomes = session.exec(select(Outcome).where(Outcome.submission_id == sub.id).order_by(col(Outcome.id))).all()
    run = current_run(session, sub.id or 0)  # the current scoring run's results; earlier runs' under scoring_runs
    run_id = run.id if run is not None and run.id is not None else -1
    results = session.exec(
        select(StructureResult)
        .where(StructureResult.scoring_run_id == run_id)
        .order_by(StructureResult.structure, StructureResult.metric)
    ).all()
    plan = results_of_run(session, PlanResult, run_id)
    dose = results_of_run(session, DoseResult, run_id)
    return {
        "id": sub.id,
        "provider": provider.code,
        "case": f"{case.case_code}@{case.version}",
        "stage": case.stage.value,
        "attempt": sub.attempt,
        "status": sub.status.value,
        "rejection_reason": sub.rejection_reason,
        "received_at": sub.received_at.isoformat(),
        "outcomes": [
            {
                "id": o.id,
                "level": o.level.value,
                "source": o.source.value,
                "current": o.is_current,
                "decided_by": o.decided_by,
                "decided_at": o.decided_at.isoformat(),
                "reasons": list(o.reasons),
                "justification": o.justification,
                "supersedes": o.supersedes_id,
            }
            for o in outcomes
        ],
        "structure_results": [
            {
                "structure": r.structure,
                "submitted_name": r.submitted_name,
                "metric": r.metric,
                "value": r.value,
                "unit": r.unit,
                "parameters": dict(r.parameters),
            }
            for r in results
        ],
        "plan_results": [
            {
                "structure": r.structure,
                "metric": r.metric,
                "value": r.value,
                "unit": r.unit,
                "parameters": dict(r.parameters),
            }
            for r in plan
        ],
        "dose_results": [
            {"metric": r.metric, "value": r.value, "unit": r.unit, "parameters": dict(r.parameters)} for r in dose
        ],
        "scoring_runs": runs_as_dicts(session, sub.id or 0),
    }


def _trial_json(session: Session, trial: Trial) -> dict[str, Any]:
    techniques = session.exec(
        select(Technique.code)
        .where(TrialRequirement.trial_id == trial.id, TrialRequirement.technique_id == Technique.id)
        .order_by(Technique.code)
    ).all()
    return {"code": trial.code, "title": trial.title, "protocol": trial.protocol_id, "requires": list(techniques)}


def _provider_json(provider: Provider, network: Network) -> dict[str, Any]:
    return {
        "code": provider.code,
        "name": provider.name,
        "ods_code": provider.ods_code,
        "network": {"code": network.code, "name": network.name},
    }


__all__ = ["create_app"]
