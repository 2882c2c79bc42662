"""Naming of the planning and dosimetry parts' task runs, and when they are not task runs (outside a flow run,
inside a batch's submission task). (Task runs recorded under a Prefect server for whole submissions:
tests/flows/test_stages.py::TestTaskRunsUnderPrefect.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.part_tasks import gamma_label, part_task_name, run_gamma, run_plan_step, without_part_tasks

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("task", "subject", "name"),
    [("dvh", "SpinalCord", "dvh[SpinalCord]"), ("plan-indices", "PTV+PTV_2", "plan-indices[PTV+PTV_2]")],
)
def test_part_task_name(task: str, subject: str, name: str) -> None:
    assert part_task_name(task, subject) == name


@pytest.mark.parametrize(
    ("dose", "distance", "local", "label"),
    [(3, 2, False, "3%/2mm"), (2.5, 1, True, "2.5%/1mm local"), (3.0, 3.0, False, "3%/3mm")],
)
def test_gamma_label(dose: float, distance: float, local: bool, label: str) -> None:
    assert gamma_label(dose, distance, local=local) == label


def _not_a_task_run() -> str:
    from prefect.context import TaskRunContext

    assert TaskRunContext.get() is None
    return "measured"


def test_outside_a_flow_run_the_part_is_called_directly() -> None:
    assert run_plan_step("dvh", "PTV", _not_a_task_run) == "measured"
    assert run_gamma("3%/2mm", _not_a_task_run) == "measured"


def test_the_inline_path_does_not_import_prefect() -> None:
    code = (
        "import sys\n"
        "from flows.part_tasks import run_gamma, run_plan_step\n"
        "assert run_plan_step('indices', 'PTV', lambda: 1) + run_gamma('3%/2mm', lambda: 2) == 3\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inside_a_flow_run_each_part_is_a_named_task_run(prefect_harness: None) -> None:
    from prefect import flow
    from prefect.context import TaskRunContext

    def task_run_name() -> str:
        context = TaskRunContext.get()
        assert context is not None
        return str(context.task_run.name)

    @flow
    def parts() -> list[str]:
        names = [run_plan_step("indices", "PTV", task_run_name), run_plan_step("dvh", "Lungs", task_run_name)]
        names.append(run_gamma("3%/2mm", task_run_name))
        with without_part_tasks():  # a batch's submission task: no task run per part
            names.append(run_plan_step("dvh", "PTV", _not_a_task_run))
        return names

    assert parts() == ["plan-indices[PTV]", "dvh[Lungs]", "gamma[3%/2mm]", "measured"]
