"""API route of a provider's standing per technique: each technique it may be credentialed for, the credential's
status and validity, and the state of every QA stage the technique's protocol requires (the centre home page's
data).

Definitions: the techniques are those offered (:func:`portal.api_cases.offered_techniques`) plus any the provider
already holds a credential for; the credential status and validity are the stored credential's (as
``GET /api/v1/providers/{code}/credentials`` gives them; ``pending`` with no validity when none is stored yet); each
stage's state is :func:`models.stages.stage_states` at the time of the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from sqlmodel import Session, col, select

from models.credentials import CredentialView, credentials_for_provider
from models.enums import CredentialStatus, Role
from models.stages import StageState, stage_states
from models.tables import Credential, Provider, Technique, User
from models.types import utcnow
from portal.api_cases import offered_techniques
from portal.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/v1/providers", tags=["credentials"])


@dataclass(frozen=True)
class TechniqueStanding:
    """One technique of a provider: credential status and validity, and every required stage's state."""

    code: str
    name: str
    status: CredentialStatus
    granted_at: datetime | None
    valid_until: datetime | None
    stages: tuple[StageState, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 UTC times)."""
        return {
            "technique": self.code,
            "name": self.name,
            "status": self.status.value,
            "granted_at": self.granted_at.isoformat() if self.granted_at else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "stages": [s.as_dict() for s in self.stages],
        }


def technique_standings(session: Session, provider: Provider, *, validity_days: int) -> list[TechniqueStanding]:
    """The provider's standing for every offered technique and every technique it holds a credential for."""
    assert provider.id is not None
    creds = {
        c.technique_id: c
        for c in session.exec(
            select(Credential).where(Credential.provider_id == provider.id, col(Credential.technique_id).is_not(None))
        ).all()
    }
    techniques = {t.id: t for t in offered_techniques(session)}
    for technique_id in creds:
        if technique_id not in techniques:
            found = session.get(Technique, technique_id)
            if found is not None:
                techniques[technique_id] = found
    now = utcnow()
    standings = []
    for technique in sorted(techniques.values(), key=lambda t: t.code):
        assert technique.id is not None
        cred = creds.get(technique.id)
        states = stage_states(
            session, provider_id=provider.id, technique_id=technique.id, validity_days=validity_days, now=now
        )
        standings.append(
            TechniqueStanding(
                code=technique.code,
                name=technique.name,
                status=cred.status if cred else CredentialStatus.PENDING,
                granted_at=cred.granted_at if cred else None,
                valid_until=cred.valid_until if cred else None,
                stages=tuple(states),
            )
        )
    return standings


def trial_credentials(session: Session, provider: Provider) -> list[CredentialView]:
    """The provider's trial credentials, by trial code."""
    return [v for v in credentials_for_provider(session, provider) if v.scope == "trial"]


def readable_provider(session: Session, user: User, provider_code: str) -> Provider:
    """The provider ``provider_code`` if ``user`` may read it: centres only their own (403), others any (404 when
    unknown); the policy of ``GET /api/v1/providers/{code}/credentials``."""
    provider = session.exec(select(Provider).where(Provider.code == provider_code)).first()
    if user.role is Role.CENTRE and (provider is None or provider.id != user.provider_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"a centre token may only read its own provider's credentials, not {provider_code!r}",
        )
    if provider is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no provider with code {provider_code!r}")
    return provider


@router.get("/{provider_code}/techniques")
def provider_techniques(provider_code: str, request: Request, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Each technique the provider may be credentialed for: credential status, valid until, and the state of each
    required QA stage (case, submission, attempt, outcome, decided, valid until); then its trial credentials."""
    provider = readable_provider(session, user, provider_code)
    settings = request.app.state.settings
    return {
        "provider": {"code": provider.code, "name": provider.name},
        "techniques": [
            s.as_dict() for s in technique_standings(session, provider, validity_days=settings.credential_validity_days)
        ],
        "trials": [
            {
                "trial": v.code,
                "status": v.status.value,
                "valid_until": v.valid_until.isoformat() if v.valid_until else None,
                "outstanding": list(v.evidence.get("outstanding", [])),
            }
            for v in trial_credentials(session, provider)
        ],
    }
