"""The credential status API, ``GET /api/v1/providers/{provider_code}/credentials``: the hottest read of the API
(dashboards and centres polling it), so its request path is lean.

* One worker-thread hop (:func:`portal.deps.in_one_thread`, under a connection ticket) does all the blocking work
  on one pooled connection in autocommit mode (each statement its own transaction: no ``BEGIN`` or ``ROLLBACK``
  round trips): authentication (:func:`portal.deps.authenticate_holder`, one statement; the token's
  ``last_used_at`` is written, and committed, at most once a minute), then the provider, its network and its
  credentials (one statement, :func:`models.credential_status.provider_credential_status`), then the JSON encoding.
* The body is built as plain dicts and sent as it is: no response model is validated on the way out. The schema
  is still documented (:class:`ProviderCredentials` under ``responses``), and the body has exactly that shape
  (``tests/portal/test_api_fuzz.py`` checks answers against the schema).

Who may read: staff and commissioners any provider; a centre user only its own (403 for any other code, known or
not, so a centre learns nothing about which codes exist); 404 for an unknown code otherwise.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from models.credential_status import provider_credential_status
from models.enums import CredentialStatus, Role
from portal.deps import BEARER, SESSION_COOKIE, authenticate_holder, in_one_thread

router = APIRouter(prefix="/api/v1/providers", tags=["credentials"])


class NetworkSummary(BaseModel):
    """The provider's radiotherapy network."""

    code: str
    name: str


class ProviderSummary(BaseModel):
    """A provider (NHS trust)."""

    code: str
    name: str
    ods_code: str | None
    network: NetworkSummary


class CredentialState(BaseModel):
    """One credential of the provider: for a technique or for a trial."""

    provider: str = Field(description="The provider's code.")
    scope: Literal["technique", "trial"]
    code: str = Field(description="The technique's or trial's code.")
    status: CredentialStatus
    granted_at: datetime | None = Field(description="When it was granted (UTC), or null.")
    valid_until: datetime | None = Field(description="When its validity ends (UTC), or null.")
    stages: list[dict[str, Any]] = Field(description="The QA stages it rests on, as `evidence.stages`.")
    outstanding: list[str] = Field(description="What is missing, as `evidence.outstanding`.")
    evidence: dict[str, Any]


class ProviderCredentials(BaseModel):
    """A provider and every credential row of it: techniques first, then trials, each sorted by code."""

    provider: ProviderSummary
    credentials: list[CredentialState]


def _answer(engine: Engine, provider_code: str, bearer: str | None, cookie: str | None) -> bytes:
    """Authenticate, check access, read and encode, on one connection (blocking: runs in a worker thread)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        holder = authenticate_holder(connection, bearer, cookie)
        found = provider_credential_status(connection, provider_code)
    if holder.role is Role.CENTRE and (found is None or found.provider_id != holder.provider_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"a centre token may only read its own provider's credentials, not {provider_code!r}",
        )
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no provider with code {provider_code!r}")
    return json.dumps(found.body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


@router.get(
    "/{provider_code}/credentials",
    response_model=None,
    responses={200: {"model": ProviderCredentials, "description": "The provider and its credentials."}},
    openapi_extra={"security": [{BEARER.scheme_name: []}]},
)
async def provider_credentials(provider_code: str, request: Request) -> Response:
    """A provider's technique and trial credentials with their status, validity and evidence."""
    bearer = await BEARER(request)  # called here, not as a dependency: the same parsing, less dependency solving
    body = await in_one_thread(
        request,
        _answer,
        request.app.state.engine,
        provider_code,
        bearer.credentials if bearer is not None else None,
        request.cookies.get(SESSION_COOKIE),
    )
    return Response(body, media_type="application/json")
