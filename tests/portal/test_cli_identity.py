"""Who an ``rtqa`` command runs as: an API token (``RTQA_TOKEN`` or ``--token-file``) or the operating-system
account mapped to a user; staff-only commands refuse other roles; the first staff user can still be added."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner, Result

from benchmarks.questionnaires import example_answers
from models.auth import issue_token, revoke_token
from models.db import session_scope
from models.enums import Role
from models.migrate import downgrade
from models.tables import ApiToken, AuditEvent, Provider, User
from models.types import utcnow
from portal.cli import app
from portal.cli_identity import demo_actor, not_mapped_message
from tests.conftest import CLI_ACCOUNT, CLI_STAFF

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("cli_env")


def _as_account(monkeypatch: pytest.MonkeyPatch, account: str | None) -> None:
    monkeypatch.setattr("portal.cli_identity.os_account", lambda: account)


def _error(result: Result) -> str:
    """The one line on standard error of a refused command (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _user(engine: Engine, email: str, role: Role, *, provider: str | None = None, account: str | None = None) -> str:
    """Add a user (and return a fresh API token of theirs)."""
    with session_scope(engine) as session:
        provider_id = None
        if provider is not None:
            provider_id = session.exec(select(Provider.id).where(Provider.code == provider)).one()
        user = User(email=email, name=email, role=role, provider_id=provider_id, os_account=account)
        session.add(user)
        session.flush()
        return issue_token(session, user=user, actor="tests", expires_at=utcnow() + timedelta(days=1))


def _actors(engine: Engine, action: str) -> list[str]:
    with Session(engine) as session:
        query = select(AuditEvent.actor).where(AuditEvent.action == action).order_by(col(AuditEvent.id))
        return list(session.exec(query).all())


class TestBootstrap:
    def test_first_staff_user_is_mapped_to_the_account_running_it(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _as_account(monkeypatch, "alice")
        init = runner.invoke(app, ["db", "init"])
        assert init.exit_code == 0, init.output
        assert set(_actors(engine, "stage_requirement.registered")) == {"os:alice"}
        refused = runner.invoke(app, ["users", "add", "c@x.test", "--name", "C", "--role", "commissioner"])
        assert _error(refused).startswith("error: there is no QA staff user yet; add one first with `rtqa users add")
        first = runner.invoke(app, ["users", "add", "alice@x.test", "--name", "Alice", "--role", "staff"])
        assert first.exit_code == 0, first.output
        assert "added staff user alice@x.test (operating-system account alice)" in first.output
        assert _actors(engine, "user.added") == ["alice@x.test"]
        # from now on: alice acts as herself; an unmapped account is refused, and says what to do
        assert runner.invoke(app, ["users", "add", "c@x.test", "--name", "C", "--role", "commissioner"]).exit_code == 0
        assert _actors(engine, "user.added") == ["alice@x.test", "alice@x.test"]
        _as_account(monkeypatch, "mallory")
        second = runner.invoke(app, ["users", "add", "m@x.test", "--name", "M", "--role", "staff"])
        assert _error(second) == (
            "error: the operating-system account 'mallory' is not mapped to an rtqa user; set RTQA_TOKEN or ask "
            "staff to run `rtqa users set EMAIL --os-account mallory`"
        )
        assert _error(runner.invoke(app, ["db", "init"])).startswith("error: the operating-system account 'mallory'")

    def test_the_demo_adds_a_staff_user_once(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _as_account(monkeypatch, "bob")
        with session_scope(engine) as session:
            assert demo_actor(session) == (
                "bob@localhost",
                "QA staff user bob@localhost added for operating-system account 'bob'; the demo acts as them",
            )
        with session_scope(engine) as session:
            assert demo_actor(session) == ("bob@localhost", None)
        _as_account(monkeypatch, "carol")
        with pytest.raises(typer.Exit), session_scope(engine) as session:
            demo_actor(session)
        assert capsys.readouterr().err.strip() == f"error: {not_mapped_message('carol')}"
        with Session(engine) as session:
            assert [u.email for u in session.exec(select(User)).all()] == ["bob@localhost"]


class TestToken:
    def test_environment_token_names_the_actor(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        _as_account(monkeypatch, None)
        token = _user(engine, "qa2@x.test", Role.STAFF)
        monkeypatch.setenv("RTQA_TOKEN", token)
        done = runner.invoke(app, ["dicom", "ae", "add", "TPS1", "--provider", "the-christie"])
        assert done.exit_code == 0, done.output
        assert _actors(engine, "dicom_ae.added") == ["qa2@x.test"]
        with Session(engine) as session:
            used = session.exec(select(ApiToken.last_used_at).where(ApiToken.label == "")).one()
        assert used is not None and utcnow() - used < timedelta(minutes=1)

    def test_token_file_wins(self, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        _as_account(monkeypatch, None)
        staff = _user(engine, "qa2@x.test", Role.STAFF)
        monkeypatch.setenv("RTQA_TOKEN", _user(engine, "comm@x.test", Role.COMMISSIONER))
        path = tmp_path / "token"
        path.write_text(staff + "\n", encoding="utf-8")
        done = runner.invoke(
            app, ["--token-file", str(path), "users", "add", "u@x.test", "--name", "U", "--role", "staff"]
        )
        assert done.exit_code == 0, done.output
        assert _actors(engine, "user.added") == ["qa2@x.test"]
        empty = tmp_path / "empty"
        empty.write_text("\n", encoding="utf-8")
        line = _error(runner.invoke(app, ["--token-file", str(empty), "tokens", "revoke", "1"]))
        assert line == f"error: --token-file {empty} is empty; put the token `rtqa tokens issue` printed in it"
        missing = tmp_path / "none"
        assert _error(runner.invoke(app, ["--token-file", str(missing), "tokens", "revoke", "1"])) == (
            f"error: --token-file {missing}: no such file"
        )

    def test_tokens_that_do_not_work(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        _user(engine, "qa@x.test", Role.STAFF, account=CLI_ACCOUNT)  # a mapped account does not rescue a bad token
        _as_account(monkeypatch, CLI_ACCOUNT)
        args = ["tokens", "issue", "qa@x.test"]
        monkeypatch.setenv("RTQA_TOKEN", "rtqa_not-a-token")
        assert _error(runner.invoke(app, args)) == (
            "error: RTQA_TOKEN: the API token is not known (mistyped, or from another database); ask QA staff for a "
            "new token (`rtqa tokens issue EMAIL`)"
        )
        with session_scope(engine) as session:
            user = session.exec(select(User).where(User.email == "qa@x.test")).one()
            expired = issue_token(session, user=user, actor="tests", expires_at=utcnow() - timedelta(seconds=1))
            revoked = issue_token(session, user=user, actor="tests")
            revoked_id = session.exec(select(ApiToken.id).order_by(col(ApiToken.id).desc())).first()
            assert revoked_id is not None
            revoke_token(session, token_id=revoked_id, actor="tests")
        monkeypatch.setenv("RTQA_TOKEN", expired)
        assert "expired on" in _error(runner.invoke(app, args))
        monkeypatch.setenv("RTQA_TOKEN", revoked)
        assert f"error: RTQA_TOKEN: API token {revoked_id} was revoked on" in _error(runner.invoke(app, args))
        good = _user(engine, "gone@x.test", Role.STAFF)
        with session_scope(engine) as session:
            gone = session.exec(select(User).where(User.email == "gone@x.test")).one()
            gone.is_active = False
            session.add(gone)
        monkeypatch.setenv("RTQA_TOKEN", good)
        assert "belongs to a deactivated user" in _error(runner.invoke(app, args))
        assert _actors(engine, "token.issued") == ["tests"] * 4  # nothing issued by the refused commands


class TestRoles:
    def test_staff_only_commands_refuse_other_roles(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        _user(engine, "phys@x.test", Role.CENTRE, provider="the-christie", account="phys")
        _as_account(monkeypatch, "phys")
        for args, command in [
            (["tokens", "issue", "phys@x.test"], "rtqa tokens issue"),
            (["tokens", "revoke", "1"], "rtqa tokens revoke"),
            (["users", "set", "phys@x.test", "--no-os-account"], "rtqa users set"),
            (
                ["outcomes", "override", "1", "--level", "per_protocol", "--justification", "j"],
                "rtqa outcomes override",
            ),
            (["rescore", "--protocol", "uk-lung-sabr", "--version", "1.0"], "rtqa rescore"),
            (["cases", "publish", "lung-sabr-outlining-mini"], "rtqa cases publish"),
            (["dicom", "ae", "remove", "TPS1"], "rtqa dicom ae remove"),
        ]:
            assert _error(runner.invoke(app, args)) == (
                f"error: phys@x.test is a centre user; `{command}` is for QA staff"
            ), args
        # reading needs no user
        assert runner.invoke(app, ["credentials", "--provider", "the-christie"]).exit_code == 0

    def test_centre_user_submits_for_its_own_provider_only(
        self, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert runner.invoke(app, ["db", "init"]).exit_code == 0  # the stage requirements
        _user(engine, "phys@x.test", Role.CENTRE, provider="the-christie", account="phys")
        _as_account(monkeypatch, "phys")
        answers = tmp_path / "answers.json"
        answers.write_text(json.dumps(example_answers("sabr_lung")), encoding="utf-8")
        args = ["questionnaire", "submit", str(answers), "--technique", "sabr_lung", "--provider"]
        done = runner.invoke(app, [*args, "the-christie"])
        assert done.exit_code == 0, done.output
        assert set(_actors(engine, "submission.received")) == {"phys@x.test"}
        other = runner.invoke(app, [*args, "leeds-teaching-hospitals"])
        assert _error(other) == "error: phys@x.test is a centre user of the-christie; they submit only for it"

    def test_map_and_unmap_an_account(self, engine: Engine, cli_staff: str) -> None:
        _user(engine, "phys@x.test", Role.CENTRE, provider="the-christie")
        done = runner.invoke(app, ["users", "set", "phys@x.test", "--os-account", "phys"])
        assert done.exit_code == 0 and "phys@x.test: operating-system account phys" in done.output
        taken = runner.invoke(app, ["users", "set", "phys@x.test", "--os-account", CLI_ACCOUNT])
        assert _error(taken) == f"error: operating-system account {CLI_ACCOUNT!r} is already mapped to {CLI_STAFF}"
        assert _error(runner.invoke(app, ["users", "set", "phys@x.test"])) == (
            "error: give one of --os-account NAME or --no-os-account"
        )
        assert runner.invoke(app, ["users", "set", "phys@x.test", "--no-os-account"]).exit_code == 0
        with Session(engine) as session:
            events = session.exec(select(AuditEvent).where(AuditEvent.action == "user.os_account")).all()
        assert [(e.actor, (e.before or {})["os_account"], (e.after or {})["os_account"]) for e in events] == [
            (cli_staff, None, "phys"),
            (cli_staff, "phys", None),
        ]
        listed = json.loads(runner.invoke(app, ["users", "list", "--json"]).stdout)
        assert {u["email"]: u["os_account"] for u in listed} == {cli_staff: CLI_ACCOUNT, "phys@x.test": None}

    def test_actor_option_is_gone(self, cli_staff: str) -> None:
        args = ["outcomes", "override", "1", "--level", "per_protocol", "--justification", "j", "--actor", "a@x"]
        assert _error(runner.invoke(app, args)).startswith("error: No such option: --actor")


def test_database_before_the_column_says_upgrade(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    downgrade(db_url, "0004_outbox")
    _as_account(monkeypatch, "alice")
    line = _error(runner.invoke(app, ["tokens", "revoke", "1"]))
    assert line == "error: the database schema is older than this rtqa; run `rtqa db upgrade`"
