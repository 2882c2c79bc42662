"""Every user mistake at the ``rtqa`` command line ends in one line on standard error and exit 2, never a traceback;
internal errors in one line and exit 1 unless ``--debug``; ``rtqa submit`` exits 3 when not accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session
from typer.testing import CliRunner, Result

from benchmarks.cases import CaseError
from benchmarks.protocols import PROTOCOL_DIR
from portal.cli import app
from qa_checks.errors import MissingAttributeError
from tests.models.world import World

runner = CliRunner()

INIT = "run `rtqa db init`"


def one_error_line(result: Result, code: int = 2) -> str:
    """The single line on standard error, after checking the exit code and that no traceback was printed."""
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _env(monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path) -> None:
    monkeypatch.setenv("RTQA_DATABASE_URL", url)
    monkeypatch.setenv("RTQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))


@pytest.fixture
def ready(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_staff: str) -> Path:
    """An initialised database (registry loaded) and a QA staff user the commands run as; returns the temporary
    folder."""
    _env(monkeypatch, db_url, tmp_path)
    return tmp_path


@pytest.fixture
def uninitialised(empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database without any schema, as on a new data directory."""
    _env(monkeypatch, empty_db_url, tmp_path)
    return tmp_path


class TestDatabaseNotInitialised:
    @pytest.mark.parametrize(
        "args",
        [
            ["providers"],
            ["credentials"],
            ["credentials", "--json"],
            ["credentials", "--provider", "the-christie"],
            ["users", "add", "a@x.test", "--name", "A", "--role", "staff"],
            ["users", "list"],
            ["tokens", "issue", "a@x.test"],
            ["tokens", "list"],
            ["tokens", "revoke", "1"],
            ["submissions", "list"],
            ["outcomes", "override", "1", "--level", "per_protocol", "--justification", "j"],
            ["serve", "--port", "1"],
        ],
    )
    def test_says_how_to_initialise(self, uninitialised: Path, args: list[str]) -> None:
        line = one_error_line(runner.invoke(app, args))
        assert line.startswith("error: the database ") and INIT in line

    def test_submit_says_how_to_initialise(self, uninitialised: Path) -> None:
        line = one_error_line(runner.invoke(app, ["submit", str(uninitialised), "--provider", "p", "--case", "c"]))
        assert INIT in line

    def test_catalogue_and_questionnaire_say_how_to_initialise(self, uninitialised: Path) -> None:
        answers = uninitialised / "answers.json"
        answers.write_text("{}", encoding="utf-8")
        protocol = next(PROTOCOL_DIR.glob("*.yaml"))
        for args in (
            ["cases", "publish", "lung-sabr-outlining-mini"],
            ["cases", "import", str(uninitialised), "--code", "real-case", "--protocol", "p", "--stage", "x"],
            ["protocols", "add", str(protocol)],
            ["questionnaire", "submit", str(answers), "--provider", "p", "--technique", "sabr_lung"],
        ):
            assert INIT in one_error_line(runner.invoke(app, args)), args
        assert not (uninitialised / "data" / "protocols").exists()

    def test_missing_sqlite_file_is_not_created(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        _env(monkeypatch, f"sqlite:///{tmp_path / 'none' / 'rtqa.db'}", tmp_path)
        line = one_error_line(runner.invoke(app, ["serve"]))
        assert INIT in line
        assert not (tmp_path / "none" / "rtqa.db").exists()


class TestUnknownNames:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["credentials", "--provider", "nowhere"], "error: no provider with code 'nowhere'; `rtqa providers`"),
            (["credentials", "--provider", "nowhere", "--json"], "error: no provider with code 'nowhere'"),
            (["submissions", "list", "--provider", "nowhere"], "error: no provider with code 'nowhere'"),
            (
                ["users", "add", "a@x", "--name", "A", "--role", "centre", "--provider", "nowhere"],
                "error: no provider with code 'nowhere'",
            ),
            (["simulate", "c", "--provider", "nowhere", "--out", "o"], "error: no provider with code or name"),
            (["cases", "simulate-plan", "c", "--provider", "nowhere", "--out", "o"], "error: no provider with code or"),
            (["submit", ".", "--provider", "nowhere", "--case", "c"], "error: no provider with code 'nowhere'"),
            (["submit", ".", "--provider", "the-christie", "--case", "nope"], "no published benchmark case 'nope'"),
            (["cases", "publish", "nope"], "error: unknown case id 'nope'; known cases:"),
            (["cases", "build", "nope", "--out", "o"], "error: unknown case id 'nope'; known cases:"),
            (["simulate", "nope", "--provider", "the-christie", "--out", "o"], "error: unknown case id 'nope'"),
            (["questionnaire", "show", "nope"], "error: no questionnaire for technique 'nope'"),
            (["tokens", "issue", "nobody@x"], "error: no user with e-mail 'nobody@x'; `rtqa users list`"),
            (["tokens", "list", "nobody@x"], "error: no user with e-mail 'nobody@x'"),
            (["tokens", "revoke", "999"], "error: no API token with id 999"),
        ],
    )
    def test_named_in_one_line(self, ready: Path, args: list[str], expected: str) -> None:
        assert expected in one_error_line(runner.invoke(app, args))

    def test_questionnaire_provider(self, ready: Path) -> None:
        answers = ready / "answers.json"
        answers.write_text("{}", encoding="utf-8")
        args = ["questionnaire", "submit", str(answers), "--provider", "nowhere", "--technique", "sabr_lung"]
        assert one_error_line(runner.invoke(app, args)).startswith("error: no provider with code 'nowhere'")

    def test_simulate_warns_when_the_registry_cannot_be_checked(self, uninitialised: Path) -> None:
        result = runner.invoke(app, ["simulate", "nope", "--provider", "anyone", "--out", str(uninitialised / "o")])
        assert result.exit_code == 2 and "Traceback" not in result.output
        warning, error = result.stderr.strip().splitlines()
        assert warning.startswith("warning: provider 'anyone' not checked: the database ")
        assert "`rtqa db init`" in warning
        assert error.startswith("error: unknown case id 'nope'")


class TestMistakes:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["users", "add", "a@x", "--name", "A", "--role", "boss"], "error: role 'boss' is not one of: staff,"),
            (["users", "add", "a@x", "--name", "A", "--role", "centre"], "--provider is required for centre users"),
            (
                ["outcomes", "override", "1", "--level", "fine", "--justification", "j"],
                "error: --level 'fine' is not one of: per_protocol, acceptable_variation",
            ),
            (["submissions", "list", "--status", "done"], "error: --status 'done' is not one of: received,"),
            (["submissions", "list", "--stage", "x"], "error: --stage 'x' is not one of: facility_questionnaire,"),
            (
                ["tokens", "issue", "a@x", "--days", "0"],
                "error: --days 0 is out of range; tokens expire after 1 to 365",
            ),
            (["tokens", "issue", "a@x", "--days", "-3"], "error: --days -3 is out of range"),
            (["tokens", "issue", "a@x", "--days", "366"], "error: --days 366 is out of range"),
            (["users", "add", "a@x", "--name", "A"], "error: Missing option '--role'; see `rtqa users add --help`"),
            (["tokens", "revoke", "one"], "error: Invalid value for 'ID': Input should be a valid integer"),
            (["nonsense"], "error: No such command 'nonsense'"),
        ],
    )
    def test_named_in_one_line(self, ready: Path, args: list[str], expected: str) -> None:
        assert expected in one_error_line(runner.invoke(app, args))

    def test_duplicate_email(self, ready: Path) -> None:
        args = ["users", "add", "qa@x.test", "--name", "QA", "--role", "staff"]
        assert runner.invoke(app, args).exit_code == 0
        line = one_error_line(runner.invoke(app, args))
        assert line == "error: a user with e-mail 'qa@x.test' already exists; `rtqa users list` shows them"

    @pytest.mark.parametrize(
        ("args", "what"),
        [
            (["submit", "no-such-dir", "--provider", "p", "--case", "c"], "no-such-dir: not a folder"),
            (
                ["cases", "import", "no-such-dir", "--code", "real-case", "--protocol", "p", "--stage", "x"],
                "no-such-dir: not a folder",
            ),
            (["questionnaire", "submit", "no.json", "--provider", "p", "--technique", "sabr_lung"], "no.json: cannot"),
            (["protocols", "validate", "no.yaml"], "no.yaml: cannot read protocol file"),
            (["protocols", "add", "no.yaml"], "no.yaml: cannot read protocol file"),
        ],
    )
    def test_missing_file_or_folder(self, ready: Path, args: list[str], what: str) -> None:
        assert what in one_error_line(runner.invoke(app, args))

    def test_no_arguments_still_shows_help(self, ready: Path) -> None:
        result = runner.invoke(app, ["users"])
        assert "list" in result.output and "add" in result.output and "error:" not in result.output


class TestSafetyNet:
    """An error escaping a command: one line and exit 2 when it is a user mistake, else ``internal error``."""

    @pytest.fixture
    def raising(self, ready: Path, monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
        errors: list[BaseException] = []

        def matrix(*_args: Any, **_kwargs: Any) -> Any:
            raise errors[0]

        monkeypatch.setattr("portal.report.credential_matrix", matrix)
        return errors

    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            (CaseError("case 'x' is broken\n  rebuild it"), "error: case 'x' is broken; rebuild it"),
            (MissingAttributeError("ct/1.dcm: (0028,0030) PixelSpacing missing"), "error: ct/1.dcm: (0028,0030)"),
            (FileNotFoundError(2, "No such file or directory", "x.dcm"), "error: x.dcm: No such file or directory"),
            (
                OperationalError("SELECT 1", {}, Exception("connection refused")),
                "error: cannot use the database ",
            ),
            (
                OperationalError("SELECT 1", {}, Exception('database "rtqa" does not exist')),
                "error: cannot use the database ",
            ),
            (
                ProgrammingError("SELECT 1", {}, Exception('relation "provider" does not exist')),
                "error: the database ",
            ),
        ],
    )
    def test_expected_errors_in_one_line(self, raising: list[BaseException], error: Exception, expected: str) -> None:
        raising.append(error)
        assert one_error_line(runner.invoke(app, ["credentials"])).startswith(expected)

    def test_unexpected_error_asks_for_debug(self, raising: list[BaseException]) -> None:
        raising.append(RuntimeError("boom"))
        line = one_error_line(runner.invoke(app, ["credentials"]), code=1)
        assert line == "internal error: RuntimeError: boom; rerun with --debug and report it"

    def test_debug_lets_the_traceback_through(self, raising: list[BaseException]) -> None:
        raising.append(RuntimeError("boom"))
        result = runner.invoke(app, ["--debug", "credentials"])
        assert isinstance(result.exception, RuntimeError) and "internal error" not in result.output


class TestSubmitExitCode:
    @pytest.mark.parametrize(
        ("status", "outcome", "code"),
        [
            ("decided", "per_protocol", 0),
            ("decided", "acceptable_variation", 0),
            ("decided", "unacceptable_variation", 3),
            ("rejected", None, 3),
        ],
    )
    def test_not_accepted_exits_3(
        self,
        ready: Path,
        engine: Engine,
        monkeypatch: pytest.MonkeyPatch,
        status: str,
        outcome: str | None,
        code: int,
    ) -> None:
        with Session(engine) as session:
            World(session)
            session.commit()

        def flow(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
            return {
                "submission_id": 1, "case": "c@1", "attempt": 1, "status": status, "outcome": outcome,
                "rejection_reason": "no RTSTRUCT" if outcome is None else None, "reasons": [],
            }  # fmt: skip

        monkeypatch.setattr("flows.credentialing.run_credential_submission", flow)
        result = runner.invoke(
            app, ["submit", str(ready), "--provider", "the-christie", "--case", "c-outlining_benchmark"]
        )
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output and result.stderr == ""
