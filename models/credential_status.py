"""A provider's credential status as JSON-ready data, read in one SQL statement (the credential status API's query).

:func:`provider_credential_status` answers what ``GET /api/v1/providers/{code}/credentials`` shows: the provider
with its network, and every credential row of it with its technique or trial code, in the form of
:meth:`models.credentials.CredentialView.as_dict`. It selects columns with SQLAlchemy Core (no ORM entities are
loaded), joining provider, network, credential, technique and trial: one round trip per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlmodel import col

from models.credentials import CredentialView
from models.tables import Credential, Network, Provider, Technique, Trial

_QUERY = (
    select(
        col(Provider.id),
        col(Provider.code),
        col(Provider.name),
        col(Provider.ods_code),
        col(Network.code),
        col(Network.name),
        col(Credential.technique_id),
        col(Credential.status),
        col(Credential.granted_at),
        col(Credential.valid_until),
        col(Credential.evidence),
        col(Technique.code),
        col(Trial.code),
    )
    .join_from(Provider, Network, col(Network.id) == col(Provider.network_id))
    .outerjoin(Credential, col(Credential.provider_id) == col(Provider.id))
    .outerjoin(Technique, col(Technique.id) == col(Credential.technique_id))
    .outerjoin(Trial, col(Trial.id) == col(Credential.trial_id))
    .where(col(Provider.code) == bindparam("provider_code"))
)
"""Built once, so every request runs the same statement object: SQLAlchemy then reuses its compiled form and
result metadata as they are (a statement rebuilt per call is found in the cache but its columns are matched anew)."""


@dataclass(frozen=True)
class ProviderCredentialStatus:
    """A provider and its credentials, ready for JSON.

    Attributes:
        provider_id: the provider's row id (for the caller's access check).
        body: ``{"provider": {code, name, ods_code, network: {code, name}}, "credentials": [...]}``, each
            credential as :meth:`~models.credentials.CredentialView.as_dict` gives it, techniques first, then
            trials, each sorted by code.
    """

    provider_id: int
    body: dict[str, Any]


def provider_credential_status(connection: Connection, provider_code: str) -> ProviderCredentialStatus | None:
    """The provider with code ``provider_code`` and its credentials (None when no provider has that code)."""
    rows = connection.execute(_QUERY, {"provider_code": provider_code}).all()
    if not rows:
        return None
    provider_id, code, name, ods_code, network_code, network_name = rows[0][:6]
    assert provider_id is not None  # a primary key read from the database
    views = [
        CredentialView(
            provider_code=code,
            provider_name=name,
            scope="technique" if technique_id is not None else "trial",
            code=(technique_code if technique_id is not None else trial_code) or "?",
            status=status,
            granted_at=granted_at,
            valid_until=valid_until,
            evidence=dict(evidence),
        )
        for *_, technique_id, status, granted_at, valid_until, evidence, technique_code, trial_code in rows
        if status is not None  # the provider's row alone, when it has no credentials (outer join)
    ]
    views.sort(key=lambda v: (v.scope != "technique", v.code))
    return ProviderCredentialStatus(
        provider_id=provider_id,
        body={
            "provider": {
                "code": code,
                "name": name,
                "ods_code": ods_code,
                "network": {"code": network_code, "name": network_name},
            },
            "credentials": [v.as_dict() for v in views],
        },
    )
