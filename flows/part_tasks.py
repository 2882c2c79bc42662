"""One Prefect task run per part of a plan or dose scoring: ``plan-indices[PTV]``, ``dvh[SpinalCord]``,
``gamma[3%/2mm]``.

The planning scorer (:func:`qa_checks.planning.score_plan`) lets its caller run each step (``run_each``): the plan
indices of the targets, then the DVH metrics of each target, organ and composite. The dosimetry stage is one gamma
comparison. Inside a Prefect flow run, :func:`run_plan_step` and :func:`run_gamma` run each as a task run named by
:func:`part_task_name`, so the run's timeline shows which structure's DVH or which gamma comparison took how long
and which failed; the outlining stage does the same per structure (:mod:`flows.structure_tasks`).

Outside a flow run (the inline path of ``rtqa submit``, tests, ``.fn`` calls) they call the function directly and
do not import Prefect. Within :func:`without_part_tasks` (a batch on Dask, where one task run per submission is
the unit) they call it directly too.

The tasks' argument is the in-memory function to run (from the scorer, over already loaded DICOM data); their
results stay in memory (not persisted, not cached). Ids and paths stay the unit of the stage's own task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, TypeVar

from flows.deferred import in_flow_run

__all__ = [
    "GAMMA_TASK",
    "PLAN_STEP_TASKS",
    "gamma_label",
    "part_runs_wanted",
    "part_task_name",
    "run_gamma",
    "run_part",
    "run_plan_step",
    "without_part_tasks",
]

T = TypeVar("T")

PLAN_STEP_TASKS = {"indices": "plan-indices", "dvh": "dvh"}
"""Task name of each step of :func:`qa_checks.planning.score_plan` (see :class:`qa_checks.planning.PlanStepRunner`)."""

GAMMA_TASK = "gamma"
"""Task name of the dosimetry stage's gamma comparison (its runs are ``gamma[3%/2mm]``)."""

_part_runs: ContextVar[bool] = ContextVar("rtqa_part_task_runs", default=True)


def part_task_name(task: str, subject: str) -> str:
    """A part's task run name: ``dvh[PTV]``, ``plan-indices[PTV+PTV_2]``, ``gamma[3%/2mm]``."""
    return f"{task}[{subject}]"


def gamma_label(dose_percent: float, distance_mm: float, *, local: bool = False) -> str:
    """The gamma criterion as a task run names it: ``3%/2mm``, ``2%/2mm local`` (global normalisation unless
    ``local``)."""
    return f"{dose_percent:g}%/{distance_mm:g}mm" + (" local" if local else "")


@cache
def _task(name: str) -> Any:
    """The Prefect task named ``name`` that runs the function it is given (built on first use)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    def run_part(compute: Callable[[], Any]) -> Any:
        return compute()

    run_part.__qualname__ = run_part.__name__ = f"run_part_{name.replace('-', '_')}"
    return task(name=name, cache_policy=NO_CACHE, persist_result=False)(run_part)


def run_part(task: str, subject: str, compute: Callable[[], T]) -> T:
    """``compute()`` as a task run named ``task[subject]`` inside a Prefect flow run, else directly."""
    if not part_runs_wanted():
        return compute()
    named = _task(task).with_options(task_run_name=part_task_name(task, subject))
    return named(compute)  # type: ignore[no-any-return]


def run_plan_step(step: str, subject: str, compute: Callable[[], T], /) -> T:
    """``run_each`` for :func:`qa_checks.planning.score_plan`: ``plan-indices[PTV]``, ``dvh[SpinalCord]``."""
    return run_part(PLAN_STEP_TASKS.get(step, step), subject, compute)


def run_gamma(label: str, compute: Callable[[], T]) -> T:
    """The dosimetry stage's gamma comparison (``compute``) as ``gamma[<label>]`` (see :func:`gamma_label`)."""
    return run_part(GAMMA_TASK, label, compute)


def part_runs_wanted() -> bool:
    """Whether a part (or an outlining structure, :mod:`flows.structure_tasks`) runs as a task run of its own: inside
    a Prefect flow run and not within :func:`without_part_tasks`."""
    return _part_runs.get() and in_flow_run()


@contextmanager
def without_part_tasks() -> Iterator[None]:
    """Within this context the parts, and the outlining structures, run without a task run each (see the module
    docstring)."""
    token = _part_runs.set(False)
    try:
        yield
    finally:
        _part_runs.reset(token)
