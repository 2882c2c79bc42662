"""Tests of benchmarks.cli: `cases list`, `cases build` and `simulate`, mounted the way portal.cli mounts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from benchmarks.cli import cases_app, simulate

CASE = "lung-sabr-outlining-mini"


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(cases_app, name="cases")
    root.command("simulate")(simulate)
    return root


runner = CliRunner()


def test_list(app: typer.Typer) -> None:
    result = runner.invoke(app, ["cases", "list"])
    assert result.exit_code == 0, result.output
    assert CASE in result.output


def test_build_twice_same_hash(app: typer.Typer, tmp_path: Path) -> None:
    first = runner.invoke(app, ["cases", "build", CASE, "--out", str(tmp_path)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["cases", "build", CASE, "--out", str(tmp_path)])
    assert second.exit_code == 0, second.output
    sha = [line for line in first.output.splitlines() if line.startswith("content sha256")]
    assert sha and sha == [line for line in second.output.splitlines() if line.startswith("content sha256")]
    assert (tmp_path / f"{CASE}-1.0" / "manifest.json").is_file()


def test_build_unknown_case(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["cases", "build", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown case id 'nope'" in result.output


def test_simulate(app: typer.Typer, tmp_path: Path) -> None:
    expected = tmp_path / "expected.json"
    result = runner.invoke(
        app,
        [
            "simulate", CASE, "--provider", "far-centre", "--out", str(tmp_path / "sub"),
            "--deviation", "margin_mm:PTV:8", "-d", "shift_mm:GTV:0,0,10", "--seed", "2",
            "--cases-dir", str(tmp_path / "cases"), "--expected-json", str(expected),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "expected outcome: unacceptable_variation" in result.output
    data = json.loads(expected.read_text())
    assert data["expected_outcome"] == "unacceptable_variation"
    assert data["deviations"] == ["margin_mm:PTV:8", "shift_mm:GTV:0,0,10"]
    assert (tmp_path / "sub" / "RTSTRUCT_far-centre.dcm").is_file()


def test_simulate_bad_deviation(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["simulate", CASE, "--provider", "x", "--out", str(tmp_path / "sub"), "-d", "grow:PTV:3",
         "--cases-dir", str(tmp_path / "cases")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "unknown kind 'grow'" in result.output


def test_build_prints_each_step(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["cases", "build", CASE, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    steps = ["building phantom", "writing CT series (40 slices)", "writing reference RT Structure Set", "manifest"]
    positions = [result.output.find(step) for step in steps]
    assert all(p >= 0 for p in positions), result.output
    assert positions == sorted(positions)


def test_simulate_plan_refuses_outlining_case(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["cases", "simulate-plan", CASE, "--provider", "C", "--out", str(tmp_path / "s"), "--cases-dir", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "is not a planning case" in result.output


def test_simulate_plan_bad_deviation(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["cases", "simulate-plan", CASE, "--provider", "C", "--out", str(tmp_path), "-d", "dose_scale_percent:x"],
    )
    assert result.exit_code == 2
    assert "bad number" in result.output


@pytest.mark.slow
def test_simulate_plan_prints_oracle_outcome(app: typer.Typer, tmp_path: Path) -> None:
    # A 2% uniform scale is within the 3% dose criterion everywhere, so every gamma point passes: per protocol.
    result = runner.invoke(
        app,
        ["cases", "simulate-plan", "lung-sabr-planning", "--provider", "C", "--out", str(tmp_path / "s"),
         "--cases-dir", str(tmp_path / "cases"), "-d", "dose_scale_percent:2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "expected tps check outcome: per_protocol" in result.output
