"""Administration commands: users list, tokens issue (bounded lifetime) / list / revoke, submissions list, and the
``--json`` output of these and of ``credentials``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from models.auth import user_for_token
from models.credentials import apply_outcome
from models.enums import OutcomeLevel, QAStage, Role, SubmissionStatus
from models.tables import ApiToken, AuditEvent, Provider, Submission, User
from models.types import utcnow
from portal.cli import app
from tests.models.world import World

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("cli_env")


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def people(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A QA staff user (whom the commands run as, by operating-system account) and a deactivated centre user."""
    monkeypatch.setattr("portal.cli_identity.os_account", lambda: "qa-account")
    with Session(engine) as session:
        christie = session.exec(select(Provider).where(Provider.code == "the-christie")).one()
        session.add(User(email="qa@x.test", name="QA", role=Role.STAFF, os_account="qa-account"))
        session.add(User(email="phys@x.test", name="Phys", role=Role.CENTRE, provider_id=christie.id, is_active=False))
        session.commit()


class TestUsersList:
    def test_json(self, people: None) -> None:
        assert _json(["users", "list"]) == [
            {
                "email": "phys@x.test",
                "name": "Phys",
                "role": "centre",
                "provider": "the-christie",
                "active": False,
                "os_account": None,
            },
            {
                "email": "qa@x.test",
                "name": "QA",
                "role": "staff",
                "provider": None,
                "active": True,
                "os_account": "qa-account",
            },
        ]

    def test_table(self, people: None) -> None:
        result = runner.invoke(app, ["users", "list"])
        assert result.exit_code == 0 and "phys@x.test" in result.output and "the-christie" in result.output


class TestTokens:
    def _issue(self, *args: str) -> str:
        result = runner.invoke(app, ["tokens", "issue", "qa@x.test", *args])
        assert result.exit_code == 0, result.output
        return result.stdout.strip().splitlines()[-1]

    @pytest.mark.parametrize(("args", "days"), [((), 90), (("--days", "1"), 1), (("--days", "365"), 365)])
    def test_lifetime(self, people: None, engine: Engine, args: tuple[str, ...], days: int) -> None:
        before = utcnow()
        token = self._issue(*args)
        with Session(engine) as session:
            assert user_for_token(session, token) is not None
            expires = session.exec(select(ApiToken.expires_at)).one()
        assert expires is not None
        assert before + timedelta(days=days) <= expires <= utcnow() + timedelta(days=days)

    def test_list_never_shows_the_token(self, people: None) -> None:
        token = self._issue("--label", "ci")
        self._issue("--label", "laptop")
        rows = _json(["tokens", "list"])
        assert [(r["id"], r["user"], r["label"], r["revoked"]) for r in rows] == [
            (1, "qa@x.test", "ci", None),
            (2, "qa@x.test", "laptop", None),
        ]
        assert set(rows[0]) == {"id", "user", "label", "created", "expires", "revoked", "last_used"}
        created, expires = (datetime.fromisoformat(rows[0][k]) for k in ("created", "expires"))
        assert timedelta(days=90) - timedelta(minutes=1) < expires - created <= timedelta(days=90)
        assert token not in runner.invoke(app, ["tokens", "list"]).output
        assert _json(["tokens", "list", "phys@x.test"]) == []

    def test_revoke(self, people: None, engine: Engine) -> None:
        token = self._issue()
        result = runner.invoke(app, ["tokens", "revoke", "1", "--reason", "left the team"])
        assert result.exit_code == 0 and "revoked API token 1" in result.output
        with Session(engine) as session:
            assert user_for_token(session, token) is None
            event = session.exec(select(AuditEvent).where(AuditEvent.action == "token.revoked")).one()
            assert (event.actor, event.reason) == ("qa@x.test", "left the team")
        assert _json(["tokens", "list"])[0]["revoked"] is not None
        again = runner.invoke(app, ["tokens", "revoke", "1"])
        assert again.exit_code == 2 and again.stderr.startswith("error: API token 1 was already revoked on ")


class TestSubmissionsList:
    @pytest.fixture
    def decided(self, engine: Engine) -> list[int]:
        with Session(engine) as session:
            world = World(session)
            ids = [
                world.decided(OutcomeLevel.PER_PROTOCOL, QAStage.PLANNING_BENCHMARK),
                world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION),
            ]
            apply_outcome(session, submission_id=ids[1], actor="flow", validity_days=3650)
            rejected = Submission(
                provider_id=world.provider.id or 0,
                case_id=world.case.id or 0,
                attempt=3,
                content_sha256="f" * 64,
                status=SubmissionStatus.REJECTED,
                rejection_reason="no RTSTRUCT",
                storage_path="/x",
                submitted_by="t",
            )
            session.add(rejected)
            session.commit()
            return [*ids, rejected.id or 0]

    def test_json_and_filters(self, decided: list[int]) -> None:
        rows = _json(["submissions", "list"])
        assert [(r["id"], r["stage"], r["status"], r["outcome"]) for r in rows] == [
            (decided[0], "planning_benchmark", "decided", "per_protocol"),
            (decided[1], "outlining_benchmark", "decided", "unacceptable_variation"),
            (decided[2], "outlining_benchmark", "rejected", None),
        ]
        assert set(rows[0]) == {
            "id",
            "provider",
            "case",
            "version",
            "stage",
            "attempt",
            "status",
            "outcome",
            "received",
        }
        assert rows[0]["provider"] == "the-christie" and rows[0]["case"] == "c-planning_benchmark"
        assert [r["id"] for r in _json(["submissions", "list", "--status", "rejected"])] == [decided[2]]
        assert [r["id"] for r in _json(["submissions", "list", "--stage", "outlining_benchmark"])] == decided[1:]
        assert _json(["submissions", "list", "--provider", "leeds-teaching-hospitals"]) == []
        assert len(_json(["submissions", "list", "--provider", "the-christie", "--status", "decided"])) == 2

    def test_override_shows_the_outcome_in_force(self, decided: list[int]) -> None:
        # the first staff user is added by whoever runs the command, and mapped to their operating-system account
        with_staff = runner.invoke(app, ["users", "add", "qa@x.test", "--name", "QA", "--role", "staff"])
        assert with_staff.exit_code == 0, with_staff.output
        args = ["outcomes", "override", str(decided[1]), "--level", "justified_variation"]
        done = runner.invoke(app, [*args, "--justification", "agreed"])
        assert done.exit_code == 0, done.output
        assert _json(["submissions", "list", "--stage", "outlining_benchmark"])[0]["outcome"] == "justified_variation"


class TestCredentialsJson:
    def test_matrix_and_provider(self, engine: Engine) -> None:
        with Session(engine) as session:
            world = World(session)
            world.decided(OutcomeLevel.PER_PROTOCOL, QAStage.PLANNING_BENCHMARK)
            sid = world.decided(OutcomeLevel.PER_PROTOCOL)
            apply_outcome(session, submission_id=sid, actor="flow", validity_days=3650)
            session.commit()
        matrix = _json(["credentials"])
        assert [r["provider"] for r in matrix] == ["the-christie"]
        assert matrix[0]["credentials"]["sabr_lung"]["status"] == "credentialed"
        assert matrix[0]["credentials"]["sabr_spine"] is None
        assert set(matrix[0]) == {"provider", "network", "credentials"}
        assert len(_json(["credentials", "--all"])) == 52
        views = _json(["credentials", "--provider", "the-christie"])
        lung = next(v for v in views if v["scope"] == "technique" and v["code"] == "sabr_lung")
        assert lung["status"] == "credentialed" and lung["provider"] == "the-christie"
        assert {s["stage"] for s in lung["stages"]} == {"outlining_benchmark", "planning_benchmark"}
