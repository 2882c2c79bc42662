"""One Prefect task run per scored structure: ``score-contours[PTV]``, ``score-contours[SpinalCord]``.

The outlining scorer (:func:`qa_checks.outlining.score_outlining`) compares the structures one by one and lets its
caller run each comparison (``run_each``). Inside a Prefect flow run, :func:`run_structure` runs it as a task run
named by :func:`structure_task_name`, so the run's timeline shows which structure took how long and which failed.
Outside a flow run (the inline path of ``rtqa submit``, tests, ``.fn`` calls) it simply calls it. A batch on Dask
turns the per-structure runs off with the other parts' (:func:`flows.part_tasks.without_part_tasks`): there one task
run per submission is the unit, and a task run per structure would multiply the API calls of every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flows.deferred import NO_CACHE, task
from flows.part_tasks import part_runs_wanted, part_task_name

__all__ = ["run_structure", "score_structure", "structure_task_name"]

T = TypeVar("T")

STRUCTURE_TASK = "score-contours"
"""The name of the per-structure task (its runs are ``score-contours[<structure>]``)."""


def structure_task_name(structure: str) -> str:
    """The task run's name for scoring one structure: ``score-contours[PTV]``."""
    return part_task_name(STRUCTURE_TASK, structure)


@task(name=STRUCTURE_TASK, cache_policy=NO_CACHE, persist_result=False)
def score_structure(structure: str, compute: Callable[[], T]) -> T:
    """Compare one structure with its reference (``compute``, from the scorer); the result stays in memory."""
    return compute()


def run_structure(structure: str, compute: Callable[[], T]) -> T:
    """``run_each`` for :func:`qa_checks.outlining.score_outlining`: a task run named
    :func:`structure_task_name` inside a Prefect flow run, else ``compute()``."""
    if not part_runs_wanted():
        return compute()
    named = score_structure.with_options(task_run_name=structure_task_name(structure))
    return named(structure, compute)
