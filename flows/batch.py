"""Scoring many submissions at once on a Dask cluster: the ``score-batch`` flow.

Each submission's remaining steps (validate → score → decide: the credentialing flow's task bodies, see
:mod:`flows.credentialing`) run as one Prefect task run on a ``dask.distributed`` worker, through prefect-dask's
``DaskTaskRunner``; tasks take and return ids and plain data. Each decision re-evaluates the credentials it bears on
in its own transaction, under the provider's lock (:func:`flows.credentialing.decide_outcome`), so a batch stopped
half-way leaves no decision without its credentials; the flow then evaluates them once more in its own process, once
per provider and technique (nothing changes unless something else did).

Cluster (:class:`BatchSettings`, environment ``RTQA_DASK_*``): the scheduler at ``RTQA_DASK_ADDRESS`` (e.g.
``tcp://10.0.0.5:8786``) when set, else a ``LocalCluster`` of ``RTQA_DASK_WORKERS`` worker processes (default 2)
with ``RTQA_DASK_THREADS_PER_WORKER`` threads each (default 1: scoring is numpy-bound and the workers are the
parallelism). The flow's ``workers`` and ``address`` parameters override the settings.

Prefect server: a Dask worker process runs its task runs against the Prefect API of the flow's settings. Without
a server (ephemeral mode) each worker process would start a temporary server of its own, so a batch on worker
processes needs ``PREFECT_API_URL`` pointing at a running server (``prefect server start``); :func:`check_prefect_api`
refuses otherwise. ``RTQA_DASK_PROCESSES=false`` runs the local workers as threads of the flow's process instead.

``python -m flows.batch [ID ...]`` scores the given submissions, or every unfinished one.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.settings import get_current_settings
from prefect_dask.task_runners import DaskTaskRunner
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlmodel import Session

from flows._store import engine_for
from flows.credentialing import (
    decide_outcome,
    score_submission,
    submission_summary,
    update_credentials,
    validate_submission,
)
from flows.part_tasks import without_part_tasks
from flows.runner import unfinished_submissions
from flows.runtime import SettingsError, failed_run, flow_settings, using_settings
from flows.submission_reads import reading_once
from models.enums import SubmissionStatus
from models.settings import Settings
from models.tables import BenchmarkCase, Submission

__all__ = [
    "BatchError",
    "BatchSettings",
    "batch_task_runner",
    "check_prefect_api",
    "credential_pairs",
    "process_submission",
    "score_batch",
    "score_one",
]


class BatchError(RuntimeError):
    """A batch cannot run as configured; the message says what to set."""


class BatchSettings(BaseSettings):
    """Where a batch's Dask workers come from (environment ``RTQA_DASK_*``)."""

    model_config = SettingsConfigDict(env_prefix="RTQA_DASK_", extra="ignore")

    address: str | None = Field(default=None, description="An existing Dask scheduler, e.g. tcp://host:8786.")
    workers: int = Field(default=2, ge=1, description="Worker processes of the local cluster (without address).")
    threads_per_worker: int = Field(default=1, ge=1, description="Threads per local worker.")
    processes: bool = Field(default=True, description="Local workers as processes (else threads of this process).")


def check_prefect_api(batch: BatchSettings, *, address: str | None = None) -> None:
    """Refuse worker processes without a Prefect server (see the module docstring).

    Raises:
        BatchError: naming what to set.
    """
    if get_current_settings().api.url:
        return
    if address or batch.address or batch.processes:
        raise BatchError(
            "score-batch runs its tasks in Dask worker processes, which need a Prefect server: start one "
            "(`prefect server start`) and set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api), or set "
            "RTQA_DASK_PROCESSES=false to run local workers as threads of this process"
        )


def batch_task_runner(
    *, workers: int | None = None, address: str | None = None, batch: BatchSettings | None = None
) -> DaskTaskRunner:
    """The Dask task runner for a batch: the scheduler at ``address`` (or ``RTQA_DASK_ADDRESS``), else a local
    cluster of ``workers`` (or ``RTQA_DASK_WORKERS``) workers; no dashboard."""
    batch = batch or BatchSettings()
    address = address or batch.address
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers or batch.workers,
            "threads_per_worker": batch.threads_per_worker,
            "processes": batch.processes,
            "dashboard_address": None,
        }
    )


def _worker_name() -> str:
    """The Dask worker running this task (its address), or the process id outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:
        return f"pid {os.getpid()}"


def process_submission(submission_id: int, *, actor: str, database_url: str, data_dir: str) -> dict[str, Any]:
    """Validate, score and decide one submission (each step does nothing when already done); returns its summary
    with the seconds spent here (wall clock and this process's CPU time) and the worker that ran it."""
    started, cpu_started = time.perf_counter(), time.process_time()
    with reading_once():  # validation and scoring read the stored files once
        if validate_submission.fn(submission_id, actor=actor, database_url=database_url):
            with without_part_tasks():  # this task run is the unit: none per structure or part
                score_submission.fn(submission_id, actor=actor, database_url=database_url, data_dir=data_dir)
            with Session(engine_for(database_url)) as session:
                sub = session.get(Submission, submission_id)
                scored = sub is not None and sub.status is SubmissionStatus.SCORED
            if scored:
                decide_outcome.fn(submission_id, actor=actor, database_url=database_url, data_dir=data_dir)
    summary = submission_summary(submission_id, database_url=database_url)
    return {
        **summary,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "worker": _worker_name(),
        "pid": os.getpid(),
    }


score_one = task(name="score_one", persist_result=False, task_run_name="score-batch[submission {submission_id}]")(
    process_submission
)
""":func:`process_submission` as the batch's task; its runs are named ``score-batch[submission 7]``. The function
stays a module attribute of its own name, so a worker unpickles the task by importing this module (a function
pickled by value would bring its globals' modules in any order). Results are not persisted (they are small, and the
database holds the outcome): no cache key to compute, and a rerun always looks at the database again."""


def credential_pairs(submission_ids: list[int], *, database_url: str) -> list[int]:
    """One decided submission (the newest) per provider and technique among ``submission_ids``: re-evaluating
    its credentials covers every other submission of that provider and technique."""
    chosen: dict[tuple[int, int], int] = {}
    with Session(engine_for(database_url)) as session:
        for sid in sorted(submission_ids):
            sub = session.get(Submission, sid)
            if sub is None or sub.status is not SubmissionStatus.DECIDED:
                continue
            case = session.get(BenchmarkCase, sub.case_id)
            assert case is not None
            chosen[(sub.provider_id, case.technique_id)] = sid
    return sorted(chosen.values())


@task
def update_batch_credentials(
    submission_ids: list[int], *, actor: str, database_url: str, validity_days: int
) -> list[int]:
    """Re-evaluate the credentials the batch's decisions affect, one provider and technique at a time; returns the
    credential ids looked at."""
    touched: set[int] = set()
    for sid in credential_pairs(submission_ids, database_url=database_url):
        touched |= set(update_credentials.fn(sid, actor=actor, database_url=database_url, validity_days=validity_days))
    return sorted(touched)


@flow(name="score-batch")
def score_batch(
    submission_ids: list[int] | None = None,
    actor: str = "rtqa-flow",
    workers: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Validate, score and decide many submissions concurrently on Dask (every unfinished one when
    ``submission_ids`` is None), then update the credentials they affect (see the module docstring).

    The database and data directory come from the environment (see :mod:`flows.runtime`), never from parameters;
    the flow hands them to its Dask tasks."""
    try:
        settings = flow_settings()
    except SettingsError as err:
        return failed_run(err)  # type: ignore[no-any-return]
    url, data = settings.resolved_database_url, str(settings.data_dir)
    ids = list(submission_ids) if submission_ids is not None else unfinished_submissions(url)
    batch = BatchSettings()
    check_prefect_api(batch, address=address)
    results: list[dict[str, Any]] = []
    with batch_task_runner(workers=workers, address=address, batch=batch) as runner:
        runner.client  # noqa: B018  (start the local cluster, or connect, before the clock starts)
        started = time.perf_counter()
        futures = [
            runner.submit(score_one, {"submission_id": sid, "actor": actor, "database_url": url, "data_dir": data})
            for sid in ids
        ]
        for sid, future in zip(ids, futures, strict=True):
            future.wait()
            state = future.state
            if state.is_completed():
                results.append(future.result())
            else:
                results.append({"submission_id": sid, "status": "failed", "error": str(state.message)})
    scoring_seconds = time.perf_counter() - started
    credentials = update_batch_credentials(
        [r["submission_id"] for r in results if r.get("status") == "decided"],
        actor=actor,
        database_url=url,
        validity_days=settings.credential_validity_days,
    )
    get_run_logger().info("scored %d submissions in %.1f s on Dask", len(ids), scoring_seconds)
    return {
        "submissions": results,
        "credentials": credentials,
        "scoring_seconds": scoring_seconds,
        "body_seconds": sum(float(r.get("seconds", 0.0)) for r in results),
        "workers": sorted({str(r.get("worker")) for r in results if r.get("worker")}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.batch", description=__doc__)
    parser.add_argument("submission_ids", nargs="*", type=int, help="Default: every unfinished submission.")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
    with using_settings(settings):
        result = score_batch(args.submission_ids or None, workers=args.workers, address=args.address)
    for r in result["submissions"]:
        print(r["submission_id"], r.get("status"), r.get("outcome") or r.get("error") or "")


if __name__ == "__main__":
    main()
