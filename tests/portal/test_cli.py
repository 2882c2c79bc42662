"""The rtqa command line against a test database: users, tokens, overrides, the credential table."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from models.auth import user_for_token
from models.credentials import apply_outcome
from models.enums import OutcomeLevel, QAStage, Role
from models.tables import AuditEvent, User
from portal.cli import app
from tests.models.world import World

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("cli_env", "cli_staff")


def test_db_init_is_idempotent() -> None:
    result = runner.invoke(app, ["db", "init"])
    assert result.exit_code == 0, result.output
    assert "52 providers in 11 networks" in result.output and "0 rows added" in result.output


def test_users_and_tokens(engine: Engine, cli_staff: str) -> None:
    added = runner.invoke(
        app, ["users", "add", "phys@x.test", "--name", "P", "--role", "centre", "--provider", "the-christie"]
    )
    assert added.exit_code == 0, added.output
    issued = runner.invoke(app, ["tokens", "issue", "phys@x.test", "--label", "ci"])
    assert issued.exit_code == 0, issued.output
    token = issued.output.strip().splitlines()[-1]
    with Session(engine) as session:
        user = user_for_token(session, token)
        assert user is not None and user.role is Role.CENTRE
        actors = {e.action: e.actor for e in session.exec(select(AuditEvent)).all()}
    assert actors["user.added"] == actors["token.issued"] == cli_staff


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "add", "a@x", "--name", "A", "--role", "boss"], "role 'boss' is not one of"),
        (["users", "add", "a@x", "--name", "A", "--role", "centre"], "--provider is required for centre users"),
        (["users", "add", "a@x", "--name", "A", "--role", "centre", "--provider", "nowhere"], "no provider with code"),
        (["tokens", "issue", "nobody@x"], "no user with e-mail 'nobody@x'"),
    ],
)
def test_bad_input_is_named(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_override_from_the_command_line(engine: Engine, cli_staff: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Session(engine) as session:
        session.add(User(email="comm@x.test", name="C", role=Role.COMMISSIONER, os_account="commissioner-account"))
        world = World(session)
        world.decided(OutcomeLevel.PER_PROTOCOL, QAStage.PLANNING_BENCHMARK)
        sid = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        apply_outcome(session, submission_id=sid, actor="flow", validity_days=3650)
        session.commit()
    args = ["outcomes", "override", str(sid), "--level", "justified_variation", "--justification", "agreed on review"]
    with monkeypatch.context() as m:
        m.setattr("portal.cli_identity.os_account", lambda: "commissioner-account")
        refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        "error: comm@x.test is a commissioner user; `rtqa outcomes override` is for QA staff"
    ), refused.output
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "outcome justified_variation (override" in done.output
    with Session(engine) as session:
        assert (
            session.exec(select(AuditEvent).where(AuditEvent.action == "outcome.overridden")).one().actor == cli_staff
        )
    table = runner.invoke(app, ["credentials"])
    assert table.exit_code == 0 and "the-christie" in table.output and "credentialed" in table.output
