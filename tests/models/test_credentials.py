"""Credential rules: passing outcomes grant, failing ones do not revoke other evidence, trials follow techniques."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from models.credentials import apply_outcome, credentials_for_provider, lapse_expired
from models.enums import CredentialStatus, OutcomeLevel, OutcomeSource
from models.tables import (
    AuditEvent,
    Outcome,
)
from tests.models.world import NOW, World


def test_pass_grants_technique_and_single_technique_trial(world: World) -> None:
    sub = world.decided(OutcomeLevel.ACCEPTABLE_VARIATION)
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=365, now=NOW)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.CREDENTIALED
    assert tech.granted_at == NOW and tech.valid_until == NOW + timedelta(days=365)
    assert tech.evidence["submission_id"] == sub
    trial = world.credential(trial=world.trial)
    assert trial is not None and trial.status is CredentialStatus.CREDENTIALED
    assert trial.valid_until == tech.valid_until
    # The lung-and-spine trial waits for spine.
    both = world.credential(trial=world.both)
    assert both is not None and both.status is CredentialStatus.PENDING


def test_fail_leaves_pending_with_evidence(world: World) -> None:
    sub = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=365, now=NOW)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.PENDING
    assert tech.granted_at is None and tech.evidence["outcome"] == "unacceptable_variation"
    trial = world.credential(trial=world.trial)
    assert trial is not None and trial.status is CredentialStatus.PENDING


def test_later_failure_does_not_revoke_earlier_pass(world: World) -> None:
    first = world.decided(OutcomeLevel.PER_PROTOCOL)
    apply_outcome(world.session, submission_id=first, actor="t", validity_days=365, now=NOW)
    second = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
    apply_outcome(world.session, submission_id=second, actor="t", validity_days=365, now=NOW)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.CREDENTIALED
    assert tech.evidence["submission_id"] == first


def test_overriding_the_evidence_to_a_failure_returns_to_pending(world: World) -> None:
    sub = world.decided(OutcomeLevel.PER_PROTOCOL)
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=365, now=NOW)
    auto = world.session.exec(select(Outcome).where(Outcome.submission_id == sub)).one()
    auto.is_current = False
    world.session.add(
        Outcome(
            submission_id=sub,
            level=OutcomeLevel.UNACCEPTABLE_VARIATION,
            source=OutcomeSource.OVERRIDE,
            decided_by="staff",
            justification="PTV misses the nodule on review",
            protocol_id="p",
            protocol_version="1",
            supersedes_id=auto.id,
        )
    )
    world.session.flush()
    apply_outcome(world.session, submission_id=sub, actor="staff", validity_days=365, now=NOW)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.PENDING


def test_changes_are_audited_with_before_and_after(world: World) -> None:
    sub = world.decided(OutcomeLevel.PER_PROTOCOL)
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=365, now=NOW)
    events = world.session.exec(select(AuditEvent).where(AuditEvent.subject_type == "credential")).all()
    assert {e.action for e in events} == {"credential.created"}
    assert any(e.after and e.after["status"] == "credentialed" for e in events)
    # Applying the same outcome again changes nothing and writes nothing.
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=365, now=NOW)
    again = world.session.exec(select(AuditEvent).where(AuditEvent.subject_type == "credential")).all()
    assert len(again) == len(events)


def test_lapse_after_validity(world: World) -> None:
    sub = world.decided(OutcomeLevel.PER_PROTOCOL)
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=30, now=NOW)
    assert lapse_expired(world.session, actor="t", now=NOW + timedelta(days=29)) == 0
    assert lapse_expired(world.session, actor="t", now=NOW + timedelta(days=30)) == 2  # technique + lung trial
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.LAPSED


def test_view_lists_techniques_then_trials(world: World) -> None:
    sub = world.decided(OutcomeLevel.PER_PROTOCOL)
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=30, now=NOW)
    views = credentials_for_provider(world.session, world.provider)
    assert [(v.scope, v.code, v.status.value) for v in views] == [
        ("technique", "sabr_lung", "credentialed"),
        ("trial", "BOTH-TRIAL", "pending"),
        ("trial", "LUNG-TRIAL", "credentialed"),
    ]
    assert views[0].as_dict()["valid_until"] == (NOW + timedelta(days=30)).isoformat()


def test_unknown_submission(world: World) -> None:
    with pytest.raises(LookupError, match="submission 999999 does not exist"):
        apply_outcome(world.session, submission_id=999999, actor="t", validity_days=30)
