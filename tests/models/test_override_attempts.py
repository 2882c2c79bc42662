"""Overriding an earlier attempt needs explicit confirmation, and the confirmed override says so."""

from __future__ import annotations

import pytest
from sqlmodel import select

from models.enums import OutcomeLevel, QAStage, SubmissionStatus
from models.outcomes import NotLatestAttemptError, current_outcome, latest_attempt, override_outcome
from models.tables import AuditEvent, Outcome, Submission
from tests.models.world import World


def _override(world: World, sid: int, **kw: bool) -> Outcome:
    return override_outcome(
        world.session,
        submission_id=sid,
        level=OutcomeLevel.JUSTIFIED_VARIATION,
        justification="agreed with the trial team",
        actor="qa@rttqa.test",
        validity_days=365,
        **kw,
    )


def _add_attempt(world: World, attempt: int, status: SubmissionStatus) -> Submission:
    sub = Submission(
        provider_id=world.provider.id or 0,
        case_id=world.case.id or 0,
        attempt=attempt,
        content_sha256=f"{attempt:064x}"[::-1],
        status=status,
        rejection_reason="no RTSTRUCT" if status is SubmissionStatus.REJECTED else None,
        storage_path="/x",
        submitted_by="t",
    )
    world.session.add(sub)
    world.session.flush()
    return sub


class TestLatestAttempt:
    def test_the_latest_of_two_decided_attempts(self, world: World) -> None:
        first = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        second = world.decided(OutcomeLevel.PER_PROTOCOL)
        for sid in (first, second):
            sub = world.session.get(Submission, sid)
            assert sub is not None and latest_attempt(world.session, sub) == 2

    def test_a_rejected_later_attempt_does_not_count(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        _add_attempt(world, 2, SubmissionStatus.REJECTED)
        sub = world.session.get(Submission, sid)
        assert sub is not None and latest_attempt(world.session, sub) == 1

    def test_a_later_attempt_still_being_scored_counts(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        _add_attempt(world, 2, SubmissionStatus.SCORED)
        sub = world.session.get(Submission, sid)
        assert sub is not None and latest_attempt(world.session, sub) == 2

    def test_attempts_at_another_case_do_not_count(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)  # outlining case, attempt 1
        world.decided(OutcomeLevel.PER_PROTOCOL, QAStage.PLANNING_BENCHMARK)  # planning case, attempt 2
        sub = world.session.get(Submission, sid)
        assert sub is not None and latest_attempt(world.session, sub) == 1


class TestOverrideOfAnEarlierAttempt:
    def test_refused_without_confirmation_and_nothing_changes(self, world: World) -> None:
        first = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        world.decided(OutcomeLevel.PER_PROTOCOL)
        with pytest.raises(NotLatestAttemptError, match=r"attempt 1 of 2, not the provider's latest") as caught:
            _override(world, first)
        assert (caught.value.attempt, caught.value.latest) == (1, 2)
        current = current_outcome(world.session, first)
        assert current is not None and current.level is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert world.session.exec(select(AuditEvent).where(AuditEvent.action == "outcome.overridden")).all() == []

    def test_confirmed_it_is_recorded_as_an_earlier_attempt(self, world: World) -> None:
        first = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        world.decided(OutcomeLevel.PER_PROTOCOL)
        outcome = _override(world, first, confirm_not_latest=True)
        assert outcome.level is OutcomeLevel.JUSTIFIED_VARIATION and outcome.is_current
        assert outcome.reasons[1] == ("an earlier attempt (attempt 1 of 2) overridden with the reviewer's confirmation")
        event = world.session.exec(select(AuditEvent).where(AuditEvent.action == "outcome.overridden")).one()
        assert event.after is not None
        assert (event.after["attempt"], event.after["latest_attempt"], event.after["earlier_attempt"]) == (1, 2, True)

    def test_the_latest_attempt_needs_no_confirmation(self, world: World) -> None:
        world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        second = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        outcome = _override(world, second)
        assert outcome.reasons == ["override by qa@rttqa.test: agreed with the trial team"]
        event = world.session.exec(select(AuditEvent).where(AuditEvent.action == "outcome.overridden")).one()
        assert event.after is not None and event.after["earlier_attempt"] is False
        assert (event.after["attempt"], event.after["latest_attempt"]) == (2, 2)

    def test_confirmation_on_the_latest_attempt_changes_nothing(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        outcome = _override(world, sid, confirm_not_latest=True)
        assert len(outcome.reasons) == 1
