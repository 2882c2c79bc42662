"""Starting triggerable flows (:mod:`flows.triggers`) and following their state.

With a Prefect server configured (:func:`flows.runtime.use_deployments`) a run is a flow run of the flow's deployment
(``run_deployment``, not waited for): its id and state are Prefect's, and a worker runs it with its own settings.
Without one, the flow's body runs in this process on a background thread, one run at a time and while holding the
submission runner's lock if given (so a triggered submission never races the upload runner); its state is kept in
memory (lost at restart) under a new id.

Every start is audited (``flow.triggered``: who, which flow, parameters, how it runs).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from flows._store import engine_for
from flows.runtime import use_deployments
from flows.triggers import TRIGGERABLE, TriggerableFlow
from models.audit import record_audit
from models.db import masked_url
from models.settings import Settings
from models.types import utcnow

__all__ = ["FlowRunRecord", "FlowRunTracker", "UnknownFlowError"]

_log = logging.getLogger(__name__)


class UnknownFlowError(LookupError):
    """No triggerable flow has this name."""


@dataclass
class FlowRunRecord:
    """A started flow run as the API reports it. ``state`` uses Prefect's state types (``SCHEDULED``, ``PENDING``,
    ``RUNNING``, ``COMPLETED``, ``FAILED``, ``CRASHED``, ``CANCELLED``)."""

    id: str
    flow: str
    mode: str
    """``in-process`` (this service ran it) or ``deployment`` (a Prefect worker runs it)."""
    parameters: dict[str, Any]
    requested_by: str | None = None
    state: str = "SCHEDULED"
    state_name: str | None = None
    message: str | None = None
    result: Any = None
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "flow": self.flow,
            "mode": self.mode,
            "parameters": self.parameters,
            "requested_by": self.requested_by,
            "state": self.state,
            "state_name": self.state_name or self.state.title(),
            "message": self.message,
            "result": self.result,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class FlowRunTracker:
    """Starts triggerable flows for ``settings`` and answers for their state.

    Args:
        settings: the service's settings (in-process runs use them).
        lock: held around each in-process run (the submission runner's, :attr:`flows.runner.SubmissionRunner.lock`).
        use_prefect: start deployments instead of running in-process; default :func:`flows.runtime.use_deployments`.
        keep: how many in-process runs to remember (oldest forgotten first).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        lock: threading.Lock | None = None,
        use_prefect: bool | None = None,
        keep: int = 1000,
    ) -> None:
        self.settings = settings
        self.use_prefect = use_deployments(settings) if use_prefect is None else use_prefect
        self.keep = keep
        self._run_lock = lock or threading.Lock()
        self._runs: dict[str, FlowRunRecord] = {}
        self._runs_lock = threading.Lock()
        self._queue: queue.Queue[tuple[TriggerableFlow, Any, FlowRunRecord]] = queue.Queue()
        self._thread: threading.Thread | None = None

    def entry(self, name: str) -> TriggerableFlow:
        """The triggerable flow called ``name``.

        Raises:
            UnknownFlowError: naming the flows there are.
        """
        entry = TRIGGERABLE.get(name)
        if entry is None:
            raise UnknownFlowError(f"no flow {name!r} can be started; flows: {', '.join(sorted(TRIGGERABLE))}")
        return entry

    def start(self, name: str, parameters: dict[str, Any], *, actor: str) -> FlowRunRecord:
        """Check the parameters and start the flow; returns its record (state ``SCHEDULED`` or Prefect's).

        Raises:
            UnknownFlowError: no such flow.
            pydantic.ValidationError: parameters of the wrong shape.
            flows.triggers.TriggerError: parameters that cannot be run.
        """
        entry = self.entry(name)
        params = entry.parameters.model_validate(parameters)
        entry.check(self.settings, params)
        shown = params.model_dump(mode="json", exclude_none=True)
        if self.use_prefect:
            record = self._start_deployment(entry, params, actor, shown)
            self._audit(record)
            return record
        record = FlowRunRecord(
            id=str(uuid.uuid4()), flow=entry.name, mode="in-process", parameters=shown, requested_by=actor
        )
        self._audit(record)
        self._remember(record)
        self._queue.put((entry, params, record))
        self._ensure_thread()
        return record

    def _audit(self, record: FlowRunRecord) -> None:
        with Session(engine_for(self.settings.resolved_database_url)) as session:
            record_audit(
                session,
                actor=record.requested_by or "rtqa-api",
                action="flow.triggered",
                subject_type="flow_run",
                subject_id=record.id,
                after={"flow": record.flow, "parameters": record.parameters, "mode": record.mode},
            )
            session.commit()

    def _start_deployment(
        self, entry: TriggerableFlow, params: Any, actor: str, shown: dict[str, Any]
    ) -> FlowRunRecord:
        from prefect.deployments import run_deployment

        flow_run = run_deployment(
            entry.deployment,
            parameters=entry.deployment_parameters(self.settings, params, actor),
            timeout=0,
            as_subflow=False,
            tags=["triggered"],
        )
        record = _from_prefect(flow_run, entry.name)
        record.parameters, record.requested_by = shown, actor
        self._remember(record)
        return record

    def get(self, run_id: str) -> FlowRunRecord | None:
        """The run's record: an in-process run from memory, a deployment run's state from Prefect; None if unknown."""
        with self._runs_lock:
            known = self._runs.get(run_id)
        if known is not None and known.mode == "in-process":
            return known
        if not self.use_prefect:
            return None
        try:
            flow_run_id = uuid.UUID(run_id)
        except ValueError:
            return None
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                flow_run = client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                return None
            flow = known.flow if known is not None else client.read_flow(flow_run.flow_id).name
        record = _from_prefect(flow_run, flow)
        if known is not None:
            record.parameters, record.requested_by = known.parameters, known.requested_by
        return record

    def wait(self, run_id: str, timeout: float = 60.0) -> FlowRunRecord | None:
        """Block until an in-process run has finished (for tests and scripts); returns its record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.get(run_id)
            if record is None or record.finished_at is not None:
                return record
            time.sleep(0.05)
        return self.get(run_id)

    def _remember(self, record: FlowRunRecord) -> None:
        with self._runs_lock:
            self._runs[record.id] = record
            while len(self._runs) > self.keep:
                self._runs.pop(next(iter(self._runs)))

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="rtqa-flow-runs", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            entry, params, record = self._queue.get()
            record.state, record.started_at = "RUNNING", utcnow()
            try:
                with self._run_lock:
                    record.result = entry.run_inline(self.settings, params, record.requested_by or "rtqa-api")
                record.state = "COMPLETED"
            except Exception as err:  # reported through the run's state, as Prefect would
                _log.exception("flow run %s (%s) failed", record.id, record.flow)
                record.state, record.message = "FAILED", self._scrub(f"{type(err).__name__}: {err}")
            finally:
                record.finished_at = utcnow()
                self._queue.task_done()

    def _scrub(self, text: str) -> str:
        """``text`` with the database URL (and its password) masked."""
        url = self.settings.resolved_database_url
        text = text.replace(url, masked_url(url))
        with contextlib.suppress(Exception):
            from sqlalchemy.engine import make_url

            password = make_url(url).password
            if password:
                text = text.replace(str(password), "***")
        return " ".join(text.split())[:1000]


def _from_prefect(flow_run: Any, flow: str) -> FlowRunRecord:
    state = flow_run.state
    return FlowRunRecord(
        id=str(flow_run.id),
        flow=flow,
        mode="deployment",
        parameters={},
        state=state.type.value if state else "SCHEDULED",
        state_name=state.name if state else None,
        message=state.message if state else None,
        created_at=flow_run.created or utcnow(),
        started_at=flow_run.start_time,
        finished_at=flow_run.end_time,
    )
