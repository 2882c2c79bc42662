"""One provider for commissioners and staff: its credentials with their stages, and its recent submissions.

The credentials are :func:`models.credentials.credentials_for_provider` (the API's
``/api/v1/providers/{code}/credentials``); the submissions are those of ``/api/v1/submissions?provider=CODE``,
newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from models.credentials import credentials_for_provider
from models.tables import BenchmarkCase, Network, Outcome, Provider, Submission
from portal.credential_cells import CredentialCell, StageLine

RECENT_SUBMISSIONS = 20
"""How many of a provider's submissions the page lists."""


class UnknownProviderError(LookupError):
    """No provider has the code asked for."""


@dataclass(frozen=True)
class SubmissionLine:
    """One submission as listed on the provider page."""

    id: int
    case: str
    stage: str
    attempt: int
    status: str
    outcome: str | None
    received_at: datetime


@dataclass(frozen=True)
class ProviderPage:
    code: str
    name: str
    network_code: str
    network_name: str
    techniques: tuple[CredentialCell, ...]
    trials: tuple[CredentialCell, ...]
    submissions: tuple[SubmissionLine, ...]
    total_submissions: int


def provider_page(session: Session, code: str, *, limit: int = RECENT_SUBMISSIONS) -> ProviderPage:
    """The provider ``code`` with its credentials and its ``limit`` newest submissions.

    Raises:
        UnknownProviderError: no such provider.
    """
    found = session.exec(
        select(Provider, Network).where(Provider.code == code, Provider.network_id == Network.id)
    ).first()
    if found is None:
        raise UnknownProviderError(f"no provider with code {code!r}")
    provider, network = found
    cells = [
        (
            view.scope,
            CredentialCell(
                code=view.code,
                status=view.status.value,
                valid_until=view.valid_until,
                stages=tuple(StageLine.from_evidence(s) for s in view.evidence.get("stages", [])),
                outstanding=tuple(str(o) for o in view.evidence.get("outstanding", [])),
            ),
        )
        for view in credentials_for_provider(session, provider)
    ]
    query = (
        select(Submission, BenchmarkCase)
        .where(Submission.provider_id == provider.id, Submission.case_id == BenchmarkCase.id)
        .order_by(col(Submission.received_at).desc(), col(Submission.id).desc())
    )
    count = select(func.count()).select_from(Submission).where(Submission.provider_id == provider.id)
    total = session.exec(count).one()
    rows = session.exec(query.limit(limit)).all()
    ids = [sub.id for sub, _ in rows]
    outcomes = {
        o.submission_id: o.level.value
        for o in session.exec(
            select(Outcome).where(col(Outcome.submission_id).in_(ids), col(Outcome.is_current).is_(True))
        ).all()
    }
    return ProviderPage(
        code=provider.code,
        name=provider.name,
        network_code=network.code,
        network_name=network.name,
        techniques=tuple(cell for scope, cell in cells if scope == "technique"),
        trials=tuple(cell for scope, cell in cells if scope == "trial"),
        submissions=tuple(
            SubmissionLine(
                id=sub.id or 0,
                case=f"{case.case_code}@{case.version}",
                stage=case.stage.value,
                attempt=sub.attempt,
                status=sub.status.value,
                outcome=outcomes.get(sub.id or 0),
                received_at=sub.received_at,
            )
            for sub, case in rows
        ),
        total_submissions=total,
    )


__all__ = ["ProviderPage", "SubmissionLine", "UnknownProviderError", "provider_page"]
