"""One Prefect task run per scored structure: ``score-contours[PTV]``, ``score-contours[SpinalCord]``.

The outlining scorer (:func:`qa_checks.outlining.score_outlining`) compares the structures one by one and lets its
caller run each comparison (``run_each``). Inside a Prefect flow run, :func:`run_structure` runs it as a task run
named by :func:`structure_task_name`, so the run's timeline shows which structure took how long and which failed.
Outside a flow run (the inline path of ``rtqa submit``, tests, ``.fn`` calls) it simply calls it. A batch on Dask
turns the per-structure runs off (:func:`per_submission_tasks`): there one task run per submission is the unit, and
a task run per structure would multiply the API calls of every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from flows.deferred import NO_CACHE, in_flow_run, task

__all__ = ["per_submission_tasks", "run_structure", "score_structure", "structure_task_name"]

T = TypeVar("T")

STRUCTURE_TASK = "score-contours"
"""The name of the per-structure task (its runs are ``score-contours[<structure>]``)."""

_per_structure: ContextVar[bool] = ContextVar("rtqa_structure_task_runs", default=True)


def structure_task_name(structure: str) -> str:
    """The task run's name for scoring one structure: ``score-contours[PTV]``."""
    return f"{STRUCTURE_TASK}[{structure}]"


@task(name=STRUCTURE_TASK, cache_policy=NO_CACHE, persist_result=False)
def score_structure(structure: str, compute: Callable[[], T]) -> T:
    """Compare one structure with its reference (``compute``, from the scorer); the result stays in memory."""
    return compute()


def run_structure(structure: str, compute: Callable[[], T]) -> T:
    """``run_each`` for :func:`qa_checks.outlining.score_outlining`: a task run named
    :func:`structure_task_name` inside a Prefect flow run, else ``compute()``."""
    if not _per_structure.get() or not in_flow_run():
        return compute()
    named = score_structure.with_options(task_run_name=structure_task_name(structure))
    return named(structure, compute)


@contextmanager
def per_submission_tasks() -> Iterator[None]:
    """Within this context structures are scored without a task run each (see the module docstring)."""
    token = _per_structure.set(False)
    try:
        yield
    finally:
        _per_structure.reset(token)
