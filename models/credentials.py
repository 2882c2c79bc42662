"""Granting and querying credentials.

A technique credential follows the QA stages its protocol requires (see :mod:`models.stages`): it is credentialed
only while every required stage has a passing, current outcome that has not lapsed. A trial credential follows
when every technique the trial requires is credentialed and every stage only that trial requires has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from models.audit import lock_audit_chain, record_audit
from models.enums import CredentialStatus, StageStatus
from models.outcomes import current_outcome
from models.stages import StageState, stage_states
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


def _save(
    session: Session, cred: Credential, before: dict[str, Any] | None, *, actor: str, reason: str, cause: str | None
) -> None:
    after = _snapshot(cred)
    if before == after:
        return
    if cause:
        reason = f"{cause}: {reason}"
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


def _outstanding(states: list[StageState]) -> list[str]:
    """Sentences naming every stage that is not passed, e.g. ``"planning benchmark: failed (unacceptable
    variation, lung-sabr-planning@1.0 attempt 2)"``."""
    lines = []
    for s in states:
        if s.status is StageStatus.PASSED:
            continue
        detail = ""
        if s.case is not None:
            what = s.outcome.replace("_", " ") + ", " if s.outcome else ""
            detail = f" ({what}{s.case} attempt {s.attempt})"
        lines.append(f"{s.label}: {s.status.value.replace('_', ' ')}{detail}")
    return lines


def _set_from_stages(cred: Credential, states: list[StageState], *, no_stages: str) -> str:
    """Set ``cred`` from its stages; returns the audit reason."""
    passed = [s for s in states if s.status is StageStatus.PASSED]
    if states and len(passed) == len(states):
        cred.status = CredentialStatus.CREDENTIALED
        cred.granted_at = max(s.decided_at for s in passed if s.decided_at is not None)
        cred.valid_until = min(s.valid_until for s in passed if s.valid_until is not None)
        reason = "every required stage passed: " + ", ".join(s.label for s in states)
    else:
        outstanding = _outstanding(states) if states else [no_stages]
        only_lapsed = bool(states) and all(s.status in (StageStatus.PASSED, StageStatus.LAPSED) for s in states)
        cred.status = CredentialStatus.LAPSED if only_lapsed else CredentialStatus.PENDING
        cred.granted_at = None
        cred.valid_until = None
        reason = "; ".join(outstanding)
    cred.evidence = {
        "stages": [s.as_dict() for s in states],
        "outstanding": _outstanding(states) if states else [no_stages],
    }
    return reason


def refresh_technique_credential(
    session: Session,
    *,
    provider_id: int,
    technique_id: int,
    actor: str,
    validity_days: int,
    now: datetime,
    cause: str | None = None,
) -> Credential:
    """Re-evaluate the provider's credential for a technique from the states of its required stages.

    ``credentialed`` while every stage its protocol requires has passed and not lapsed (valid until the earliest
    stage's end, granted at the latest stage's decision); ``lapsed`` when every stage passed but one or more has
    lapsed; otherwise ``pending``, naming the missing, failing or unfinished stages in ``evidence.outstanding``.
    ``cause`` (e.g. which protocol versions a rescore moved between) opens the audit reason of a change.
    """
    technique = session.get(Technique, technique_id)
    assert technique is not None
    cred = _get_or_new(session, provider_id=provider_id, technique_id=technique_id, trial_id=None)
    before = _snapshot(cred) if cred.id is not None else None
    states = stage_states(
        session, provider_id=provider_id, technique_id=technique_id, validity_days=validity_days, now=now
    )
    reason = _set_from_stages(
        cred,
        states,
        no_stages=f"no QA stages are registered for {technique.code}: publish a case of its protocol "
        "(`rtqa cases publish CASE`) or run `rtqa db init`",
    )
    _save(session, cred, before, actor=actor, reason=reason, cause=cause)
    return cred


def lock_provider_of_submission(session: Session, submission_id: int) -> None:
    """Hold the write lock for the submission's provider until the transaction ends (a no-op UPDATE of its row).

    Credential updates of one provider then run one after another: on PostgreSQL the row lock makes a second
    transaction wait and then read the first one's committed stages; on SQLite the statement takes the database's
    write lock before anything is read. Without it, two decisions at once could both create the credential row, or
    the later commit could rest on stages read before the earlier one committed.

    The audit chain's lock is taken first (:func:`models.audit.lock_audit_chain`): a transaction that has already
    recorded an audit event holds it, and one that locks the provider first and audits afterwards would otherwise
    wait for it while holding the provider, a deadlock on PostgreSQL.
    """
    lock_audit_chain(session)
    session.execute(
        update(Provider)
        .where(
            col(Provider.id) == select(Submission.provider_id).where(Submission.id == submission_id).scalar_subquery()
        )
        .values(network_id=Provider.network_id)
    )


def apply_outcome(
    session: Session,
    *,
    submission_id: int,
    actor: str,
    validity_days: int,
    now: datetime | None = None,
    cause: str | None = None,
) -> list[int]:
    """Re-evaluate the technique credential of the submission's case and every trial credential of the provider.

    Takes the provider's lock first (:func:`lock_provider_of_submission`). Returns the ids of the credentials
    looked at. ``cause`` opens the audit reason of every credential changed.
    """
    now = now or utcnow()
    lock_provider_of_submission(session, submission_id)
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise LookupError(f"submission {submission_id} does not exist")
    case = session.get(BenchmarkCase, sub.case_id)
    assert case is not None
    if current_outcome(session, submission_id) is None:
        raise LookupError(f"submission {submission_id} has no outcome yet")
    cred = refresh_technique_credential(
        session,
        provider_id=sub.provider_id,
        technique_id=case.technique_id,
        actor=actor,
        validity_days=validity_days,
        now=now,
        cause=cause,
    )
    touched = [cred.id] if cred.id is not None else []
    touched += refresh_trial_credentials(
        session, provider_id=sub.provider_id, actor=actor, validity_days=validity_days, now=now, cause=cause
    )
    return touched


def refresh_trial_credentials(
    session: Session,
    *,
    provider_id: int,
    actor: str,
    validity_days: int,
    now: datetime | None = None,
    cause: str | None = None,
) -> list[int]:
    """Set each trial credential of the provider: credentialed when every technique the trial requires is
    credentialed and every stage only that trial requires has passed, valid until the earliest of theirs; lapsed
    when all passed but something lapsed; otherwise pending, naming what is outstanding."""
    now = now or utcnow()
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
        trial_states: list[StageState] = []
        for req in required:
            trial_states += stage_states(
                session,
                provider_id=provider_id,
                technique_id=req.technique_id,
                trial_id=trial.id,
                protocol_id=trial.protocol_id,
                validity_days=validity_days,
                now=now,
            )
        cred = _get_or_new(session, provider_id=provider_id, technique_id=None, trial_id=trial.id)
        before = _snapshot(cred) if cred.id is not None else None
        codes = {t.id: t.code for t in session.exec(select(Technique)).all()}
        outstanding = [
            f"{codes[req.technique_id]}: {'not credentialed' if t is None else t.status.value}"
            for req, t in zip(required, techs, strict=True)
            if t is None or t.status is not CredentialStatus.CREDENTIALED
        ]
        outstanding += _outstanding(trial_states)
        if not outstanding:
            cred.status = CredentialStatus.CREDENTIALED
            granted = [t.granted_at for t in techs if t is not None and t.granted_at is not None]
            granted += [s.decided_at for s in trial_states if s.decided_at is not None]
            until = [t.valid_until for t in techs if t is not None and t.valid_until is not None]
            until += [s.valid_until for s in trial_states if s.valid_until is not None]
            cred.granted_at = max(granted) if granted else None
            cred.valid_until = min(until) if until else None
        else:
            lapsed_only = all(
                t is not None and t.status in (CredentialStatus.CREDENTIALED, CredentialStatus.LAPSED) for t in techs
            ) and all(s.status in (StageStatus.PASSED, StageStatus.LAPSED) for s in trial_states)
            cred.status = CredentialStatus.LAPSED if lapsed_only else CredentialStatus.PENDING
            cred.granted_at = None
            cred.valid_until = None
        cred.evidence = {
            "technique_credential_ids": sorted(t.id for t in techs if t is not None and t.id),
            "stages": [s.as_dict() for s in trial_states],
            "outstanding": outstanding,
        }
        reason = "; ".join(outstanding) or f"every technique and stage required by trial {trial.code} passed"
        _save(session, cred, before, actor=actor, reason=reason, cause=cause)
        if cred.id is not None:
            touched.append(cred.id)
    return touched


def refresh_all(session: Session, *, actor: str, validity_days: int, now: datetime | None = None) -> int:
    """Re-evaluate every provider's technique and trial credentials from its stages (after a protocol's stage
    requirements change, or a migration); returns how many credentials changed (each change is audited)."""
    now = now or utcnow()
    before = {c.id: _snapshot(c) for c in session.exec(select(Credential)).all()}
    pairs = {(c.provider_id, c.technique_id) for c in session.exec(select(Credential)).all() if c.technique_id}
    submitted = session.exec(
        select(Submission.provider_id, BenchmarkCase.technique_id).where(Submission.case_id == BenchmarkCase.id)
    ).all()
    pairs |= {(provider_id, technique_id) for provider_id, technique_id in submitted}
    for provider_id, technique_id in sorted(pairs):
        refresh_technique_credential(
            session,
            provider_id=provider_id,
            technique_id=technique_id,
            actor=actor,
            validity_days=validity_days,
            now=now,
        )
    for provider_id in sorted({p for p, _ in pairs}):
        refresh_trial_credentials(session, provider_id=provider_id, actor=actor, validity_days=validity_days, now=now)
    after = {c.id: _snapshot(c) for c in session.exec(select(Credential)).all()}
    return sum(1 for key, snap in after.items() if before.get(key) != snap)


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
        _save(session, cred, before, actor=actor, reason="validity period ended", cause=None)
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
            "stages": list(self.evidence.get("stages", [])),
            "outstanding": list(self.evidence.get("outstanding", [])),
            "evidence": self.evidence,
        }


def credentials_for_provider(session: Session, provider: Provider) -> list[CredentialView]:
    """Every credential row of the provider, techniques first, then trials, each sorted by code."""
    rows = session.exec(
        select(Credential, Technique.code, Trial.code)
        .outerjoin(Technique, col(Technique.id) == Credential.technique_id)
        .outerjoin(Trial, col(Trial.id) == Credential.trial_id)
        .where(Credential.provider_id == provider.id)
    ).all()  # one query: the credential status API runs this on every request
    views = [
        CredentialView(
            provider_code=provider.code,
            provider_name=provider.name,
            scope="technique" if cred.technique_id is not None else "trial",
            code=(technique_code if cred.technique_id is not None else trial_code) or "?",
            status=cred.status,
            granted_at=cred.granted_at,
            valid_until=cred.valid_until,
            evidence=dict(cred.evidence),
        )
        for cred, technique_code, trial_code in rows
    ]
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
