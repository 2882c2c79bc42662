"""The remaining steps of uploaded submissions (validate → score → decide → credential), run after ingest.

Without a Prefect server the web service runs them itself: :class:`SubmissionRunner` processes every submission
whose status is ``received``, ``validated`` or ``scored``, oldest first, through the same task functions (``.fn``)
as :func:`flows.credentialing.credential_submission`, so the results are the same as ``rtqa submit``'s. The queue
is the database: whatever a stopped service left unfinished is picked up when the next one starts. With
``PREFECT_API_URL`` set (and ``RTQA_FLOW_RUNS`` not ``inline``) the runner instead starts the
``credential-submission`` deployment for each submission (one flow run per submission, keyed by its id, so a
restart does not run it twice).

One runner per database: two services over one database would both pick up the same submissions.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlmodel import Session, col, select

from flows._store import engine_for
from flows.credentialing import decide_outcome, score_submission, update_credentials, validate_submission
from flows.runtime import use_deployments
from flows.submission_reads import reading_once
from models.enums import SubmissionStatus
from models.settings import Settings
from models.tables import BenchmarkCase, Provider, Submission

__all__ = ["DEPLOYMENT", "UNFINISHED", "SubmissionRunner", "deployment_parameters", "unfinished_submissions"]

DEPLOYMENT = "credential-submission/credential-submission"
"""The Prefect deployment (``flow name/deployment name``, see ``prefect.yaml``) used when a server is configured."""

UNFINISHED: tuple[SubmissionStatus, ...] = (
    SubmissionStatus.RECEIVED,
    SubmissionStatus.VALIDATED,
    SubmissionStatus.SCORED,
)
"""Statuses whose submissions still have steps to run."""

_log = logging.getLogger(__name__)


def deployment_parameters(database_url: str, submission_id: int, *, actor: str) -> dict[str, Any]:
    """The :data:`DEPLOYMENT`'s parameters for a stored submission: its folder, provider and case (no settings:
    the worker's environment has them)."""
    with Session(engine_for(database_url)) as session:
        sub = session.get(Submission, submission_id)
        if sub is None:
            raise LookupError(f"submission {submission_id} does not exist")
        provider = session.get(Provider, sub.provider_id)
        case = session.get(BenchmarkCase, sub.case_id)
        assert provider is not None and case is not None
        return {
            "source_dir": sub.storage_path,
            "provider_code": provider.code,
            "case_code": case.case_code,
            "case_version": case.version,
            "actor": actor,
        }


def unfinished_submissions(database_url: str, *, case_id: int | None = None) -> list[int]:
    """Ids of submissions with steps still to run (of case ``case_id`` only, when given), oldest first (by received
    time, then id)."""
    query = select(Submission.id).where(col(Submission.status).in_(UNFINISHED))
    if case_id is not None:
        query = query.where(Submission.case_id == case_id)
    with Session(engine_for(database_url)) as session:
        ids = session.exec(query.order_by(col(Submission.received_at), col(Submission.id))).all()
    return [i for i in ids if i is not None]


class SubmissionRunner:
    """Runs uploaded submissions' remaining steps in a background thread, or hands them to Prefect.

    Args:
        settings: database, data directory and credential validity.
        actor: recorded in the audit trail for every step.
        poll_seconds: how often the thread looks for work it was not told about.
        use_prefect: start the deployment instead of running in-process; default
            :func:`flows.runtime.use_deployments` (``PREFECT_API_URL`` set, ``RTQA_FLOW_RUNS`` not ``inline``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        actor: str = "rtqa-runner",
        poll_seconds: float = 30.0,
        use_prefect: bool | None = None,
    ) -> None:
        self.settings = settings
        self.actor = actor
        self.poll_seconds = poll_seconds
        self.use_prefect = use_deployments(settings) if use_prefect is None else use_prefect
        self.failures: dict[int, str] = {}
        """Submissions whose steps raised an unexpected error, with the error; skipped until the next start."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url

    def run_steps(self, submission_id: int) -> str:
        """Run one submission's remaining steps in this thread; returns its status afterwards.

        Each task does nothing when its step is already done, so this resumes where a stopped service left off.
        """
        url, data = self.database_url, str(self.settings.data_dir)
        with reading_once():  # validation and scoring read the stored files once
            if validate_submission.fn(submission_id, actor=self.actor, database_url=url):
                score_submission.fn(submission_id, actor=self.actor, database_url=url, data_dir=data)
                decide_outcome.fn(
                    submission_id,
                    actor=self.actor,
                    database_url=url,
                    data_dir=data,
                    validity_days=self.settings.credential_validity_days,
                )
                update_credentials.fn(
                    submission_id,
                    actor=self.actor,
                    database_url=url,
                    validity_days=self.settings.credential_validity_days,
                )
        with Session(engine_for(url)) as session:
            sub = session.get(Submission, submission_id)
            assert sub is not None
            return sub.status.value

    def drain(self, *, raise_errors: bool = True) -> list[int]:
        """Run every unfinished submission to the end, oldest first, until none is left; returns the ids run.

        With ``raise_errors`` (the default, for tests and scripts) an unexpected error propagates; otherwise it is
        logged, kept in :attr:`failures` and that submission is skipped.
        """
        done: list[int] = []
        with self._lock:
            while not (self._stop.is_set() and threading.current_thread() is self._thread):
                pending = [i for i in unfinished_submissions(self.database_url) if i not in self.failures]
                if not pending:
                    return done
                submission_id = pending[0]
                try:
                    self.run_steps(submission_id)
                except Exception as err:
                    if raise_errors:
                        raise
                    _log.exception("submission %s: steps failed; left as it is until the next start", submission_id)
                    self.failures[submission_id] = f"{type(err).__name__}: {err}"
                done.append(submission_id)
            return done

    def notify(self, submission_id: int) -> None:
        """Tell a started runner a submission was received: wakes the thread, or starts its Prefect flow run.

        Does nothing before :meth:`start` (the submission waits for :meth:`drain` or the next start).
        """
        if not self._started:
            return
        if self.use_prefect:
            try:
                self.dispatch(submission_id)
            except Exception:  # the upload is stored: the next start dispatches it again
                _log.exception("submission %s: could not start the %s deployment", submission_id, DEPLOYMENT)
        else:
            self._wake.set()

    def dispatch(self, submission_id: int) -> Any:
        """Start the :data:`DEPLOYMENT` for a stored submission (re-ingest finds it by content hash); returns the
        flow run. The idempotency key is the submission id, so dispatching twice starts one run."""
        from prefect.deployments import run_deployment

        return run_deployment(
            DEPLOYMENT,
            parameters=deployment_parameters(self.database_url, submission_id, actor=self.actor),
            timeout=0,
            as_subflow=False,
            idempotency_key=f"rtqa-submission-{submission_id}",
        )

    @property
    def lock(self) -> threading.Lock:
        """Held while this runner works on submissions: hold it to run a submission's steps without racing it."""
        return self._lock

    def start(self) -> None:
        """Pick up unfinished submissions and keep running new ones: a daemon thread, or (with Prefect) one
        deployment run for each unfinished submission now and for each new one when notified."""
        self._started = True
        if self.use_prefect:
            for submission_id in unfinished_submissions(self.database_url):
                try:
                    self.dispatch(submission_id)
                except Exception:
                    _log.exception("submission %s: could not start the %s deployment", submission_id, DEPLOYMENT)
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rtqa-submission-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop after the submission it is on, and wait up to ``timeout`` seconds."""
        self._started = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.drain(raise_errors=False)
            except Exception:  # the database itself failed: try again at the next poll
                _log.exception("submission runner: cannot read the queue")
            self._wake.wait(self.poll_seconds)
