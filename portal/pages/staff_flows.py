"""Flows for QA staff to start by hand: ``/staff/flows`` lists every triggerable flow (:mod:`flows.triggers`) with
a form of its parameters; a start answers with the run's page, ``/staff/flows/runs/{run_id}``, which follows the
run's state (polling ``GET /api/v1/flows/runs/{run_id}``, the same record) until it has finished.

The starts and checks are :class:`flows.background.FlowRunTracker`'s, the same as ``POST /api/v1/flows/{name}/runs``:
through the flow's Prefect deployment when a server is configured, else in this service's background thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from flows.background import FlowRunTracker, UnknownFlowError
from flows.triggers import TRIGGERABLE, TriggerableFlow, TriggerError
from models.tables import User
from portal.api_flows import Tracker, run_url
from portal.deps import CSRF_FIELD, StaffOnly
from portal.pages import render
from portal.pages.staff_common import FORMATTERS

router = APIRouter(include_in_schema=False)

FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
"""Prefect state types after which a run's state no longer changes."""


@dataclass(frozen=True)
class FormField:
    """One parameter of a flow as a form input."""

    name: str
    label: str
    kind: str
    """``number`` or ``text``."""
    required: bool
    help: str
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None


def form_fields(model: type[BaseModel]) -> list[FormField]:
    """The inputs of a parameters model, from its JSON schema (integers as numbers, the rest as text)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        types = {p.get("type") for p in prop.get("anyOf", [prop])}
        out.append(
            FormField(
                name=name,
                label=name.replace("_", " "),
                kind="number" if "integer" in types else "text",
                required=name in required,
                help=str(prop.get("description", "")),
                pattern=next((p["pattern"] for p in prop.get("anyOf", [prop]) if "pattern" in p), None),
                minimum=next((p["minimum"] for p in prop.get("anyOf", [prop]) if "minimum" in p), None),
                maximum=next((p["maximum"] for p in prop.get("anyOf", [prop]) if "maximum" in p), None),
            )
        )
    return out


def parameters_from_form(entry: TriggerableFlow, form: dict[str, str]) -> dict[str, Any]:
    """The flow's parameters from a submitted form: its own fields only, blank optional fields left out (the flow's
    default applies); values stay text for the parameters model to check and convert."""
    fields = {f.name: f for f in form_fields(entry.parameters)}
    out: dict[str, Any] = {}
    for name, field in fields.items():
        value = form.get(name, "").strip()
        if value or field.required:
            out[name] = value
    return out


def _flows_page(
    request: Request,
    user: User,
    tracker: FlowRunTracker,
    *,
    status_code: int = 200,
    error: str | None = None,
    failed: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    entries = sorted(TRIGGERABLE.values(), key=lambda e: e.name)
    return render(
        request,
        "staff/flows.html",
        user,
        status_code=status_code,
        flows=[(entry, form_fields(entry.parameters)) for entry in entries],
        mode=(
            "a Prefect worker runs it, through the flow's deployment"
            if tracker.use_prefect
            else "it runs in this service, one run at a time"
        ),
        error=error,
        failed=failed,
        form=form or {},
    )


@router.get("/staff/flows")
def flows_page(request: Request, user: StaffOnly, tracker: Tracker) -> Response:
    return _flows_page(request, user, tracker)


@router.post("/staff/flows/{name}/runs")
async def start_from_page(name: str, request: Request, user: StaffOnly, tracker: Tracker) -> Response:
    submitted = {k: v for k, v in (await request.form()).items() if k != CSRF_FIELD and isinstance(v, str)}
    try:
        entry = tracker.entry(name)
    except UnknownFlowError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    try:
        record = tracker.start(name, parameters_from_form(entry, submitted), actor=user.email)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}" for e in err.errors())
        error = f"{name} not started: {problems}."
    except TriggerError as err:
        error = f"{name} not started: {err}."
    except Exception as err:  # the Prefect server is unreachable or the deployment is missing
        if not tracker.use_prefect:
            raise
        error = (
            f"{name} not started: cannot reach its Prefect deployment ({type(err).__name__}); check the Prefect "
            "server and that the deployments exist (`prefect deploy --all`)."
        )
    else:
        return RedirectResponse(f"/staff/flows/runs/{record.id}", status_code=303)
    return _flows_page(request, user, tracker, status_code=422, error=error, failed=name, form=submitted)


@router.get("/staff/flows/runs/{run_id}")
def run_page(run_id: str, request: Request, user: StaffOnly, tracker: Tracker) -> Response:
    record = tracker.get(run_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no flow run {run_id!r}")
    run = record.as_dict()
    return render(
        request,
        "staff/flow_run.html",
        user,
        run=run,
        finished=run["state"] in FINISHED,
        status_url=run_url(record.id),
        result=json.dumps(run["result"], indent=2, default=str) if run["result"] is not None else None,
        **FORMATTERS,
    )
