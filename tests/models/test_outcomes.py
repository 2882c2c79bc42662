"""Overriding an outcome: supersedes, keeps history, needs a justification, audits, updates credentials."""

from __future__ import annotations

import pytest
from sqlmodel import select

from models.credentials import apply_outcome
from models.enums import CredentialStatus, OutcomeLevel, OutcomeSource, QAStage, SubmissionStatus
from models.outcomes import OverrideError, UnknownSubmissionError, current_outcome, override_outcome
from models.tables import AuditEvent, Outcome, Submission
from tests.models.world import NOW, World


def _decided_and_applied(world: World, level: OutcomeLevel) -> int:
    """The planning stage passed; the outlining stage decided with ``level``."""
    world.decided(OutcomeLevel.PER_PROTOCOL, QAStage.PLANNING_BENCHMARK)
    sid = world.decided(level)
    apply_outcome(world.session, submission_id=sid, actor="flow", validity_days=365, now=NOW)
    return sid


def test_override_grants_credential_and_keeps_history(world: World) -> None:
    sid = _decided_and_applied(world, OutcomeLevel.UNACCEPTABLE_VARIATION)
    first = current_outcome(world.session, sid)
    assert first is not None
    new = override_outcome(
        world.session,
        submission_id=sid,
        level=OutcomeLevel.JUSTIFIED_VARIATION,
        justification="PTV drawn to the centre's local ITV policy; agreed with the trial's clinical lead",
        actor="qa@rttqa.test",
        validity_days=365,
    )
    assert new.source is OutcomeSource.OVERRIDE and new.supersedes_id == first.id
    rows = world.session.exec(select(Outcome).where(Outcome.submission_id == sid)).all()
    assert [(o.level, o.is_current) for o in rows] == [
        (OutcomeLevel.UNACCEPTABLE_VARIATION, False),
        (OutcomeLevel.JUSTIFIED_VARIATION, True),
    ]
    cred = world.credential(technique=world.lung)
    assert cred is not None and cred.status is CredentialStatus.CREDENTIALED
    event = world.session.exec(select(AuditEvent).where(AuditEvent.action == "outcome.overridden")).one()
    assert event.before == {"outcome_id": first.id, "level": "unacceptable_variation", "source": "automatic"}
    assert event.after is not None and event.after["level"] == "justified_variation"
    assert event.reason is not None and "ITV" in event.reason and event.actor == "qa@rttqa.test"


def test_override_to_unacceptable_withdraws_credential_it_granted(world: World) -> None:
    sid = _decided_and_applied(world, OutcomeLevel.PER_PROTOCOL)
    override_outcome(
        world.session,
        submission_id=sid,
        level=OutcomeLevel.UNACCEPTABLE_VARIATION,
        justification="GTV misses the nodule on slice review",
        actor="qa",
        validity_days=365,
    )
    cred = world.credential(technique=world.lung)
    assert cred is not None and cred.status is CredentialStatus.PENDING


@pytest.mark.parametrize("text", ["", "   "])
def test_justification_required(world: World, text: str) -> None:
    sid = _decided_and_applied(world, OutcomeLevel.PER_PROTOCOL)
    with pytest.raises(OverrideError, match="needs a justification"):
        override_outcome(
            world.session, submission_id=sid, level=OutcomeLevel.UNACCEPTABLE_VARIATION, justification=text,
            actor="qa", validity_days=365,
        )  # fmt: skip


def test_unknown_submission(world: World) -> None:
    with pytest.raises(UnknownSubmissionError, match="submission 424242 does not exist"):
        override_outcome(
            world.session, submission_id=424242, level=OutcomeLevel.PER_PROTOCOL, justification="x",
            actor="qa", validity_days=365,
        )  # fmt: skip


def test_undecided_submission_cannot_be_overridden(world: World) -> None:
    sid = world.decided(OutcomeLevel.PER_PROTOCOL)
    sub = world.session.get(Submission, sid)
    assert sub is not None
    sub.status = SubmissionStatus.SCORED
    world.session.add(sub)
    world.session.flush()
    with pytest.raises(OverrideError, match=f"submission {sid} is scored, not decided"):
        override_outcome(
            world.session, submission_id=sid, level=OutcomeLevel.PER_PROTOCOL, justification="x",
            actor="qa", validity_days=365,
        )  # fmt: skip
