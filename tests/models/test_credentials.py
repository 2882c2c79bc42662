"""Credential rules: a technique is credentialed only when every stage its protocol requires has passed; the latest
attempt of a stage counts; trials follow their techniques and their own stages; lapse after validity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from models.credential_status import provider_credential_status
from models.credentials import apply_outcome, credentials_for_provider, lapse_expired, refresh_technique_credential
from models.enums import CredentialStatus, OutcomeLevel, OutcomeSource, QAStage
from models.stages import StageRequirementError, register_stage_requirements
from models.tables import AuditEvent, Outcome
from tests.models.world import NOW, World

OUTLINING, PLANNING = QAStage.OUTLINING_BENCHMARK, QAStage.PLANNING_BENCHMARK


def _apply(world: World, sub: int, *, days: int = 365) -> None:
    apply_outcome(world.session, submission_id=sub, actor="t", validity_days=days, now=NOW)


def test_one_passing_stage_is_not_enough(world: World) -> None:
    sub = world.decided(OutcomeLevel.PER_PROTOCOL, OUTLINING)
    _apply(world, sub)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.PENDING
    assert tech.evidence["outstanding"] == ["planning benchmark: missing"]
    stages = {s["stage"]: s for s in tech.evidence["stages"]}
    assert stages["outlining_benchmark"]["status"] == "passed"
    assert stages["outlining_benchmark"]["submission_id"] == sub
    assert stages["planning_benchmark"]["status"] == "missing"
    trial = world.credential(trial=world.trial)
    assert trial is not None and trial.status is CredentialStatus.PENDING
    assert trial.evidence["outstanding"] == ["sabr_lung: pending"]


def test_every_stage_passed_grants_technique_and_single_technique_trial(world: World) -> None:
    sub = world.passed_all(OutcomeLevel.ACCEPTABLE_VARIATION)
    _apply(world, sub)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.CREDENTIALED
    assert tech.granted_at == NOW and tech.valid_until == NOW + timedelta(days=365)
    assert [s["status"] for s in tech.evidence["stages"]] == ["passed", "passed"]
    assert tech.evidence["outstanding"] == []
    trial = world.credential(trial=world.trial)
    assert trial is not None and trial.status is CredentialStatus.CREDENTIALED
    assert trial.valid_until == tech.valid_until
    # The lung-and-spine trial waits for spine.
    both = world.credential(trial=world.both)
    assert both is not None and both.status is CredentialStatus.PENDING
    assert both.evidence["outstanding"] == ["sabr_spine: not credentialed"]


def test_failing_stage_keeps_pending_and_names_it(world: World) -> None:
    world.decided(OutcomeLevel.PER_PROTOCOL, OUTLINING)
    sub = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION, PLANNING)
    _apply(world, sub)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.PENDING and tech.granted_at is None
    assert tech.evidence["outstanding"] == [
        "planning benchmark: failed (unacceptable variation, c-planning_benchmark@1 attempt 2)"
    ]


def test_latest_attempt_of_a_stage_counts(world: World) -> None:
    first = world.passed_all()
    _apply(world, first)
    assert world.credential(technique=world.lung).status is CredentialStatus.CREDENTIALED  # type: ignore[union-attr]
    resubmitted = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION, PLANNING)
    _apply(world, resubmitted)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.PENDING
    planning = next(s for s in tech.evidence["stages"] if s["stage"] == "planning_benchmark")
    assert planning["submission_id"] == resubmitted and planning["attempt"] == 3


def test_overriding_a_stage_to_a_failure_returns_to_pending(world: World) -> None:
    sub = world.passed_all()
    _apply(world, sub)
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
            decided_at=NOW,
        )
    )
    world.session.flush()
    apply_outcome(world.session, submission_id=sub, actor="staff", validity_days=365, now=NOW)
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.PENDING


def test_changes_are_audited_with_before_and_after(world: World) -> None:
    sub = world.passed_all()
    _apply(world, sub)
    events = world.session.exec(select(AuditEvent).where(AuditEvent.subject_type == "credential")).all()
    assert {e.action for e in events} == {"credential.created"}
    assert any(e.after and e.after["status"] == "credentialed" for e in events)
    # Applying the same outcome again changes nothing and writes nothing.
    _apply(world, sub)
    again = world.session.exec(select(AuditEvent).where(AuditEvent.subject_type == "credential")).all()
    assert len(again) == len(events)


def test_lapse_after_validity(world: World) -> None:
    sub = world.passed_all()
    _apply(world, sub, days=30)
    assert lapse_expired(world.session, actor="t", now=NOW + timedelta(days=29)) == 0
    assert lapse_expired(world.session, actor="t", now=NOW + timedelta(days=30)) == 2  # technique + lung trial
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.LAPSED


def test_reevaluation_after_validity_says_lapsed(world: World) -> None:
    sub = world.passed_all()
    _apply(world, sub, days=30)
    assert world.lung.id is not None and world.provider.id is not None
    cred = refresh_technique_credential(
        world.session,
        provider_id=world.provider.id,
        technique_id=world.lung.id,
        actor="t",
        validity_days=30,
        now=NOW + timedelta(days=31),
    )
    assert cred.status is CredentialStatus.LAPSED
    assert [s["status"] for s in cred.evidence["stages"]] == ["lapsed", "lapsed"]


def test_trial_specific_stage(world: World) -> None:
    register_stage_requirements(
        world.session,
        protocol_id="p",
        requirements=[("individual_case_review", "sabr_lung", "first patient reviewed")],
        trial_code="LUNG-TRIAL",
        actor="t",
    )
    sub = world.passed_all()
    _apply(world, sub)
    assert world.credential(technique=world.lung).status is CredentialStatus.CREDENTIALED  # type: ignore[union-attr]
    trial = world.credential(trial=world.trial)
    assert trial is not None and trial.status is CredentialStatus.PENDING
    assert trial.evidence["outstanding"] == ["first patient reviewed: missing"]


def test_unknown_stage_or_technique(world: World) -> None:
    with pytest.raises(StageRequirementError, match=r"unknown QA stage 'benchmark'; known stages: facility_"):
        register_stage_requirements(
            world.session, protocol_id="p", requirements=[("benchmark", "sabr_lung", "")], actor="t"
        )
    with pytest.raises(StageRequirementError, match=r"unknown technique 'sabr_knee'; run `rtqa db init`"):
        register_stage_requirements(
            world.session, protocol_id="p", requirements=[("dummy_run", "sabr_knee", "")], actor="t"
        )


def test_view_lists_techniques_then_trials(world: World) -> None:
    sub = world.passed_all()
    _apply(world, sub, days=30)
    views = credentials_for_provider(world.session, world.provider)
    assert [(v.scope, v.code, v.status.value) for v in views] == [
        ("technique", "sabr_lung", "credentialed"),
        ("trial", "BOTH-TRIAL", "pending"),
        ("trial", "LUNG-TRIAL", "credentialed"),
    ]
    as_json = views[0].as_dict()
    assert as_json["valid_until"] == (NOW + timedelta(days=30)).isoformat()
    assert [s["case"] for s in as_json["stages"]] == ["c-outlining_benchmark@1", "c-planning_benchmark@1"]


def test_unknown_submission(world: World) -> None:
    with pytest.raises(LookupError, match="submission 999999 does not exist"):
        apply_outcome(world.session, submission_id=999999, actor="t", validity_days=30)


def test_refresh_all_follows_new_requirements(world: World) -> None:
    from models.credentials import refresh_all

    sub = world.passed_all()
    _apply(world, sub)
    assert refresh_all(world.session, actor="t", validity_days=365, now=NOW) == 0  # nothing changed
    register_stage_requirements(
        world.session,
        protocol_id="p",
        requirements=[("complex_treatment_dosimetry_check", "sabr_lung", "TPS check")],
        actor="t",
    )
    # the technique, the lung trial and the lung-and-spine trial (whose outstanding list now names lung too)
    assert refresh_all(world.session, actor="t", validity_days=365, now=NOW) == 3
    tech = world.credential(technique=world.lung)
    assert tech is not None and tech.status is CredentialStatus.PENDING
    assert tech.evidence["outstanding"] == ["TPS check: missing"]


def test_status_in_one_statement_matches_the_views(world: World) -> None:
    _apply(world, world.passed_all(), days=30)
    world.session.flush()
    connection = world.session.connection()
    found = provider_credential_status(connection, world.provider.code)
    assert found is not None and found.provider_id == world.provider.id
    views = credentials_for_provider(world.session, world.provider)
    assert [c["code"] for c in found.body["credentials"]] == ["sabr_lung", "BOTH-TRIAL", "LUNG-TRIAL"]
    assert found.body["credentials"] == [v.as_dict() for v in views]
    assert found.body["provider"] == {
        "code": "the-christie",
        "name": "The Christie NHS Foundation Trust",
        "ods_code": world.provider.ods_code,
        "network": {
            "code": "north-west",
            "name": "Lancashire and South Cumbria, Greater Manchester, Cheshire and Merseyside",
        },
    }
    other = provider_credential_status(connection, "leeds-teaching-hospitals")
    assert other is not None and other.body["credentials"] == []  # a provider without credential rows
    assert other.body["provider"]["code"] == "leeds-teaching-hospitals"
    assert provider_credential_status(connection, "no-such-trust") is None
