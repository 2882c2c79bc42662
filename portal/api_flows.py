"""API routes for QA staff to start flows by hand and follow them (see :mod:`flows.triggers`).

* ``GET /api/v1/flows``: the flows that can be started, with their parameters (JSON schema).
* ``POST /api/v1/flows/{name}/runs``: body = the parameters (a JSON object); 202 with the run's id and state.
  Through the flow's Prefect deployment when a server is configured, else in this service's background thread.
* ``GET /api/v1/flows/runs/{run_id}``: the run's state (and, for in-process runs, its result).

Staff only (403 for centre and commissioner tokens).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, status
from pydantic import ValidationError

from flows.background import FlowRunTracker, UnknownFlowError
from flows.triggers import TRIGGERABLE, TriggerError
from portal.deps import StaffOnly

router = APIRouter(prefix="/api/v1/flows", tags=["flows"])

_tracker_lock = threading.Lock()


def flow_runs(request: Request) -> FlowRunTracker:
    """The app's :class:`FlowRunTracker` (made on first use; in-process runs share the upload runner's lock)."""
    state = request.app.state
    with _tracker_lock:
        tracker: FlowRunTracker | None = getattr(state, "flow_runs", None)
        if tracker is None:
            runner = getattr(state, "runner", None)
            tracker = FlowRunTracker(state.settings, lock=runner.lock if runner is not None else None)
            state.flow_runs = tracker
    return tracker


Tracker = Annotated[FlowRunTracker, Depends(flow_runs)]


def run_url(run_id: str) -> str:
    """Where a started run's state is read."""
    return f"{router.prefix}/runs/{run_id}"


def _validation_detail(err: ValidationError) -> str:
    """One line naming every bad parameter: ``parameter 'case_code': Field required; ...``."""
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "body"
        parts.append(f"parameter {where!r}: {problem['msg']}")
    return "; ".join(parts) + "; GET /api/v1/flows shows each flow's parameters"


@router.get("")
def list_flows(user: StaffOnly, tracker: Tracker) -> list[dict[str, Any]]:
    return [
        {
            "name": entry.name,
            "description": entry.description,
            "deployment": entry.deployment,
            "runs": "deployment" if tracker.use_prefect else "in-process",
            "parameters": entry.parameters.model_json_schema(),
            "runs_url": f"{router.prefix}/{entry.name}/runs",
        }
        for entry in sorted(TRIGGERABLE.values(), key=lambda e: e.name)
    ]


@router.post("/{name}/runs", status_code=status.HTTP_202_ACCEPTED)
def start_run(
    name: str,
    user: StaffOnly,
    tracker: Tracker,
    parameters: Annotated[dict[str, Any] | None, Body(description="The flow's parameters (a JSON object).")] = None,
) -> dict[str, Any]:
    try:
        record = tracker.start(name, parameters or {}, actor=user.email)
    except UnknownFlowError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    except ValidationError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=_validation_detail(err)) from None
    except TriggerError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from None
    except Exception as err:  # the Prefect server is unreachable or the deployment is missing
        if not tracker.use_prefect:
            raise
        cause = " ".join(str(err).split())[:500]
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"cannot start the {name}/{name} deployment ({type(err).__name__}: {cause}); check the Prefect "
            "server and that the deployments exist (`prefect deploy --all`)",
        ) from None
    return {**record.as_dict(), "status_url": run_url(record.id)}


@router.get("/runs/{run_id}")
def run_state(run_id: str, user: StaffOnly, tracker: Tracker) -> dict[str, Any]:
    record = tracker.get(run_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no flow run {run_id!r}")
    return {**record.as_dict(), "status_url": run_url(record.id)}
