"""prefect.yaml names flows that exist, with parameters their signatures accept, stores no setting, works from the
repository, and schedules the expiry flows."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow

from flows.deferred import prefect_object
from flows.triggers import TRIGGERABLE
from models.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return loaded


def test_every_entrypoint_is_a_flow(config: dict[str, Any]) -> None:
    names = set()
    for deployment in config["deployments"]:
        path, attribute = deployment["entrypoint"].split(":")
        assert (ROOT / path).is_file(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = prefect_object(getattr(module, attribute))  # deferred if the module was imported before Prefect
        assert isinstance(flow, Flow), deployment["entrypoint"]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters") or {}) <= accepted
        assert deployment["name"] == flow.name  # deployments are found as "<flow>/<flow>"
        assert deployment["work_pool"]["name"] == "rtqa"
        names.add(flow.name)
    assert names == {
        "credential-submission",
        "publish-case",
        "facility-questionnaire",
        "expire-credentials",
        "remind-expiring",
        "rescore-case",
        "rescore-protocol",
        "score-batch",
    }
    assert {entry.deployment for entry in TRIGGERABLE.values()} <= {f"{n}/{n}" for n in names}


ENTRYPOINT_PROBE = """
import json, sys
from prefect.flows import load_flow_from_entrypoint

print(json.dumps({entry: load_flow_from_entrypoint(entry).name for entry in sys.argv[1:]}))
"""


def test_prefect_loads_every_entrypoint_as_a_flow(config: dict[str, Any]) -> None:
    """As a worker or `prefect deploy` does, in a new process: the script at the entrypoint executed as a module,
    the attribute a Prefect flow (load_flow_from_entrypoint refuses anything else)."""
    entries = {d["entrypoint"]: d["name"] for d in config["deployments"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(
        [sys.executable, "-c", ENTRYPOINT_PROBE, *entries],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == entries


def test_no_setting_is_stored_or_passed_as_a_parameter(config: dict[str, Any]) -> None:
    text = (ROOT / "prefect.yaml").read_text()
    assert "{{ $" not in text  # an environment placeholder is stored empty when unset at deploy time
    for deployment in config["deployments"]:
        assert not deployment["work_pool"].get("job_variables"), deployment["name"]
        module = importlib.import_module(deployment["entrypoint"].split(":")[0].removesuffix(".py").replace("/", "."))
        parameters = set(inspect.signature(getattr(module, deployment["entrypoint"].split(":")[1]).fn).parameters)
        settings = {name for name in Settings.model_fields if name in parameters}
        assert not settings and "database_url" not in parameters and "data_dir" not in parameters


def test_no_flow_takes_a_setting_as_a_parameter() -> None:
    """Every flow in flows/ (deployed or not) reads its settings from the worker (flows.runtime): Prefect stores and
    shows every flow-run parameter, and a database URL may hold a password."""
    found = []
    for path in sorted((ROOT / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        for value in map(prefect_object, vars(module).values()):
            if isinstance(value, Flow) and value.fn.__module__ == module.__name__:
                found.append(value.name)
                parameters = set(inspect.signature(value.fn).parameters)
                assert not parameters & {*Settings.model_fields, "database_url", "data_dir"}, (value.name, parameters)
    assert {"score-batch", "rescore-case", "rescore-protocol", "credential-submission"} <= set(found)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("publish-case", {"case_code": "lung-sabr-outlining-mini"}),
        ("rescore-case", {"case": "lung-sabr-outlining-mini@1.1"}),
        ("rescore-protocol", {"protocol_id": "uk-lung-sabr", "version": "1.1"}),
        ("expire-credentials", {}),
        ("remind-expiring", {"within_days": 30}),
        ("score-batch", {"submission_ids": [3, 7]}),
    ],
)
def test_a_triggered_deployment_run_gets_parameters_its_flow_accepts(
    config: dict[str, Any], tmp_path: Path, name: str, body: dict[str, Any]
) -> None:
    """What the API and the pages pass to a deployment fits the flow's signature exactly (Prefect refuses unknown
    parameters) and carries who started it, never a setting."""
    entry = TRIGGERABLE[name]
    [deployment] = [d for d in config["deployments"] if d["name"] == name]
    module, attribute = deployment["entrypoint"].split(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attribute)
    settings = Settings(database_url="postgresql://rtqa:secret@db.example/rtqa", data_dir=tmp_path)
    parameters = entry.deployment_parameters(settings, entry.parameters.model_validate(body), "qa@example.nhs.uk")
    assert parameters == {**body, "actor": "qa@example.nhs.uk"}
    inspect.signature(flow.fn).bind(**parameters)  # raises on a parameter the flow does not take


def test_the_pull_step_goes_to_the_directory_deployed_from(config: dict[str, Any]) -> None:
    [build] = config["build"]
    step = build["prefect.deployments.steps.run_shell_script"]
    assert step["script"] == "pwd" and step["id"] == "repository"
    [pull] = config["pull"]
    assert pull == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ repository.stdout }}"}}


def test_expiry_flows_are_scheduled(config: dict[str, Any]) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    schedules = {d["name"]: d.get("schedules") for d in config["deployments"]}
    assert [list(s) for s in schedules["expire-credentials"]] == [["cron", "timezone"]]
    daily, weekly = schedules["expire-credentials"][0], schedules["remind-expiring"][0]
    for schedule in (daily, weekly):
        CronSchedule(**schedule)  # Prefect's own validation of the cron string and time zone
        assert schedule["timezone"] == "Europe/London"
    assert daily["cron"].split()[2:] == ["*", "*", "*"]  # every day
    assert weekly["cron"].split()[2:4] == ["*", "*"] and weekly["cron"].split()[4] != "*"  # one day a week
    assert all(v is None for k, v in schedules.items() if k not in ("expire-credentials", "remind-expiring"))
