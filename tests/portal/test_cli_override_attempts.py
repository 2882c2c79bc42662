"""``rtqa outcomes override`` of an earlier attempt needs ``--confirm-not-latest``, like the pages and the API."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from models.enums import OutcomeLevel
from models.outcomes import current_outcome
from portal.cli import app
from tests.models.world import World

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("cli_env")


def test_earlier_attempt_needs_the_flag(engine: Engine) -> None:
    with Session(engine) as session:
        world = World(session)
        first = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        session.commit()
    assert runner.invoke(app, ["users", "add", "qa@x.test", "--name", "QA", "--role", "staff"]).exit_code == 0
    args = [
        "outcomes",
        "override",
        str(first),
        "--level",
        "per_protocol",
        "--justification",
        "ok",
    ]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        f"error: submission {first} is attempt 1 of 2, not the provider's latest attempt at this case: overriding an "
        "earlier attempt needs explicit confirmation; add --confirm-not-latest to override it"
    )
    done = runner.invoke(app, [*args, "--confirm-not-latest"])
    assert done.exit_code == 0, done.output
    with Session(engine) as session:
        outcome = current_outcome(session, first)
        assert outcome is not None and outcome.level is OutcomeLevel.PER_PROTOCOL
