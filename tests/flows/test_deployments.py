"""prefect.yaml names flows that exist, with parameters their signatures accept."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[2]


def test_every_entrypoint_is_a_flow() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for deployment in config["deployments"]:
        path, attribute = deployment["entrypoint"].split(":")
        assert (ROOT / path).is_file(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        assert isinstance(flow, Flow), deployment["entrypoint"]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters") or {}) <= accepted
        names.add(flow.name)
    assert names == {"credential-submission", "publish-case", "facility-questionnaire"}
