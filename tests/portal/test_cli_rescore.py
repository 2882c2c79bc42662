"""``rtqa rescore``: mistakes end in one line (exit 2); a valid target runs the flow and prints its summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portal.cli import app
from tests.portal.test_cli_errors import INIT, one_error_line

runner = CliRunner()


@pytest.fixture
def ready(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_staff: str) -> Path:
    monkeypatch.setenv("RTQA_DATABASE_URL", db_url)
    monkeypatch.setenv("RTQA_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "error: give either --protocol ID --version V or --case CODE@VERSION (one of them)"),
        (["--protocol", "uk-lung-sabr", "--case", "c@1"], "error: give either --protocol ID --version V or --case"),
        (["--protocol", "uk-lung-sabr"], "error: --protocol uk-lung-sabr: say which version to rescore against"),
        (["--protocol", "uk-lung-sabr", "--version", "9.9"], "error: protocol 'uk-lung-sabr' has no version '9.9'"),
        (["--protocol", "nope", "--version", "1.0"], "error: unknown protocol id 'nope'; known protocols:"),
        (["--case", "nope"], "error: --case 'nope': give the case and its new version as CODE@VERSION"),
        (["--case", "nope@1.0"], "error: unknown case nope@1.0: publish or import the new version first"),
        (["--case", "nope@1.0", "--version", "1"], "error: --version goes with --protocol"),
    ],
)
def test_mistakes_in_one_line(ready: Path, args: list[str], expected: str) -> None:
    assert one_error_line(runner.invoke(app, ["rescore", *args])).startswith(expected)


def test_uninitialised_database(empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTQA_DATABASE_URL", empty_db_url)
    monkeypatch.setenv("RTQA_DATA_DIR", str(tmp_path / "data"))
    line = one_error_line(runner.invoke(app, ["rescore", "--protocol", "uk-lung-sabr", "--version", "1.0"]))
    assert INIT in line


def test_nothing_to_rescore(prefect_harness: None, ready: Path) -> None:
    result = runner.invoke(app, ["rescore", "--protocol", "uk-lung-sabr", "--version", "1.0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "rescore protocol uk-lung-sabr@1.0: 0 submissions rescored, 0 outcomes moved, 0 await review, 0 skipped; "
        "0 in progress (not rescored)"
    )
    as_json = runner.invoke(app, ["rescore", "--protocol", "uk-lung-sabr", "--version", "1.0", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["target"] == "protocol uk-lung-sabr@1.0"
