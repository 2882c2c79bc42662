"""Granting and querying credentials.

A passing outcome (per protocol, acceptable or justified variation) on a benchmark case credentials the provider
for the case's technique; a trial credential follows when every technique the trial requires is credentialed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from models.audit import record_audit
from models.enums import CredentialStatus
from models.outcomes import current_outcome
from models.tables import (
    BenchmarkCase,
    Credential,
    Provider,
    Submission,
    Technique,
    Trial,
    TrialRequirement,
)
from models.types import utcnow


def _snapshot(cred: Credential) -> dict[str, Any]:
    return {
        "status": cred.status.value,
        "granted_at": cred.granted_at.isoformat() if cred.granted_at else None,
        "valid_until": cred.valid_until.isoformat() if cred.valid_until else None,
        "evidence": dict(cred.evidence),
    }


def _get_or_new(session: Session, *, provider_id: int, technique_id: int | None, trial_id: int | None) -> Credential:
    query = select(Credential).where(Credential.provider_id == provider_id)
    if technique_id is not None:
        query = query.where(Credential.technique_id == technique_id)
    else:
        query = query.where(Credential.trial_id == trial_id)
    cred = session.exec(query).first()
    if cred is None:
        cred = Credential(
            provider_id=provider_id, technique_id=technique_id, trial_id=trial_id, status=CredentialStatus.PENDING
        )
    return cred


def _save(session: Session, cred: Credential, before: dict[str, Any] | None, *, actor: str, reason: str) -> None:
    after = _snapshot(cred)
    if before == after:
        return
    cred.updated_at = utcnow()
    session.add(cred)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="credential.created" if before is None else "credential.changed",
        subject_type="credential",
        subject_id=cred.id or 0,
        before=before,
        after=after,
        reason=reason,
    )


def apply_outcome(
    session: Session, *, submission_id: int, actor: str, validity_days: int, now: datetime | None = None
) -> list[int]:
    """Update the provider's technique and trial credentials from the submission's current outcome.

    Returns the ids of the credentials looked at. A failing outcome never removes a credential that other
    evidence granted; it returns a credential to pending only when this submission was its evidence.
    """
    now = now or utcnow()
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise LookupError(f"submission {submission_id} does not exist")
    case = session.get(BenchmarkCase, sub.case_id)
    assert case is not None
    outcome = current_outcome(session, submission_id)
    if outcome is None:
        raise LookupError(f"submission {submission_id} has no outcome yet")

    cred = _get_or_new(session, provider_id=sub.provider_id, technique_id=case.technique_id, trial_id=None)
    before = _snapshot(cred) if cred.id is not None else None
    evidence = {"submission_id": sub.id, "outcome_id": outcome.id, "case": f"{case.case_code}@{case.version}"}
    if outcome.level.passes:
        cred.status = CredentialStatus.CREDENTIALED
        cred.granted_at = now
        cred.valid_until = now + timedelta(days=validity_days)
        cred.evidence = {**evidence, "outcome": outcome.level.value}
        reason = f"{outcome.level.value} on {evidence['case']} (submission {sub.id}, attempt {sub.attempt})"
    elif cred.status is not CredentialStatus.CREDENTIALED or cred.evidence.get("submission_id") == sub.id:
        cred.status = CredentialStatus.PENDING
        cred.granted_at = None
        cred.valid_until = None
        cred.evidence = {**evidence, "outcome": outcome.level.value}
        reason = f"{outcome.level.value} on {evidence['case']} (submission {sub.id}, attempt {sub.attempt})"
    else:
        reason = ""
    if reason:
        _save(session, cred, before, actor=actor, reason=reason)
    touched = [cred.id] if cred.id is not None else []
    touched += refresh_trial_credentials(session, provider_id=sub.provider_id, actor=actor)
    return touched


def refresh_trial_credentials(session: Session, *, provider_id: int, actor: str) -> list[int]:
    """Set each trial credential of the provider from its technique credentials: credentialed when all the
    trial's required techniques are, valid until the earliest of theirs; otherwise pending."""
    touched: list[int] = []
    for trial in session.exec(select(Trial)).all():
        assert trial.id is not None
        required = session.exec(select(TrialRequirement).where(TrialRequirement.trial_id == trial.id)).all()
        if not required:
            continue
        techs = [
            session.exec(
                select(Credential).where(
                    Credential.provider_id == provider_id, Credential.technique_id == req.technique_id
                )
            ).first()
            for req in required
        ]
        if all(t is None for t in techs):
            continue
        cred = _get_or_new(session, provider_id=provider_id, technique_id=None, trial_id=trial.id)
        before = _snapshot(cred) if cred.id is not None else None
        if all(t is not None and t.status is CredentialStatus.CREDENTIALED for t in techs):
            cred.status = CredentialStatus.CREDENTIALED
            granted = [t.granted_at for t in techs if t is not None and t.granted_at is not None]
            until = [t.valid_until for t in techs if t is not None and t.valid_until is not None]
            cred.granted_at = max(granted) if granted else None
            cred.valid_until = min(until) if until else None
        else:
            cred.status = CredentialStatus.PENDING
            cred.granted_at = None
            cred.valid_until = None
        cred.evidence = {"technique_credential_ids": sorted(t.id for t in techs if t is not None and t.id)}
        _save(session, cred, before, actor=actor, reason=f"technique credentials required by trial {trial.code}")
        if cred.id is not None:
            touched.append(cred.id)
    return touched


def lapse_expired(session: Session, *, actor: str, now: datetime | None = None) -> int:
    """Mark credentials whose validity has passed as lapsed; returns how many changed."""
    now = now or utcnow()
    expired = session.exec(
        select(Credential).where(
            Credential.status == CredentialStatus.CREDENTIALED,
            col(Credential.valid_until).is_not(None),
            col(Credential.valid_until) <= now,
        )
    ).all()
    for cred in expired:
        before = _snapshot(cred)
        cred.status = CredentialStatus.LAPSED
        _save(session, cred, before, actor=actor, reason="validity period ended")
    return len(expired)


@dataclass(frozen=True)
class CredentialView:
    """A credential as shown to users: scope by code, status and times."""

    provider_code: str
    provider_name: str
    scope: str
    code: str
    status: CredentialStatus
    granted_at: datetime | None
    valid_until: datetime | None
    evidence: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 UTC times)."""
        return {
            "provider": self.provider_code,
            "scope": self.scope,
            "code": self.code,
            "status": self.status.value,
            "granted_at": self.granted_at.isoformat() if self.granted_at else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "evidence": self.evidence,
        }


def credentials_for_provider(session: Session, provider: Provider) -> list[CredentialView]:
    """Every credential row of the provider, techniques first, then trials, each sorted by code."""
    rows = session.exec(select(Credential).where(Credential.provider_id == provider.id)).all()
    views = [credential_view(session, cred) for cred in rows]
    return sorted(views, key=lambda v: (v.scope != "technique", v.code))


def credential_view(session: Session, cred: Credential) -> CredentialView:
    """A credential with its provider and scope resolved to codes."""
    provider = session.get(Provider, cred.provider_id)
    assert provider is not None
    if cred.technique_id is not None:
        tech = session.get(Technique, cred.technique_id)
        scope, code = "technique", tech.code if tech else "?"
    else:
        trial = session.get(Trial, cred.trial_id)
        scope, code = "trial", trial.code if trial else "?"
    return CredentialView(
        provider_code=provider.code,
        provider_name=provider.name,
        scope=scope,
        code=code,
        status=cred.status,
        granted_at=cred.granted_at,
        valid_until=cred.valid_until,
        evidence=dict(cred.evidence),
    )


def credentialed_for_trial(session: Session, trial: Trial) -> list[CredentialView]:
    """Providers currently credentialed for ``trial`` (eligible to recruit), by provider code."""
    rows = session.exec(
        select(Credential).where(Credential.trial_id == trial.id, Credential.status == CredentialStatus.CREDENTIALED)
    ).all()
    return sorted((credential_view(session, c) for c in rows), key=lambda v: v.provider_code)


def expiring_credentials(session: Session, *, within_days: int, now: datetime | None = None) -> list[CredentialView]:
    """Credentialed rows whose validity ends within ``within_days`` from ``now``, soonest first."""
    now = now or utcnow()
    rows = session.exec(
        select(Credential).where(
            Credential.status == CredentialStatus.CREDENTIALED,
            col(Credential.valid_until).is_not(None),
            col(Credential.valid_until) <= now + timedelta(days=within_days),
        )
    ).all()
    return sorted((credential_view(session, c) for c in rows), key=lambda v: (v.valid_until or now, v.provider_code))
