"""Reading the audit trail back: filtered by actor, action, subject and days, newest first, paged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session, col, func, select

from models.tables import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    """Which audit events to read; every field is optional and they combine with AND.

    Attributes:
        actor: who acted, exactly (letter case ignored), e.g. ``"qa@rttqa.test"`` or ``"rtqa-flow"``.
        action: exactly, e.g. ``"outcome.overridden"``.
        subject_type: exactly, e.g. ``"submission"`` or ``"app_user"``.
        subject_id: exactly, e.g. ``"12"``.
        since: first day included (UTC, from 00:00).
        until: last day included (UTC, to 24:00).
    """

    actor: str | None = None
    action: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(f"the date range is empty: {self.since.isoformat()} is after {self.until.isoformat()}")


def _filtered(query: Any, f: AuditFilter) -> Any:
    if f.actor:
        query = query.where(func.lower(AuditEvent.actor) == f.actor.strip().lower())
    if f.action:
        query = query.where(AuditEvent.action == f.action.strip())
    if f.subject_type:
        query = query.where(AuditEvent.subject_type == f.subject_type.strip())
    if f.subject_id:
        query = query.where(AuditEvent.subject_id == f.subject_id.strip())
    if f.since is not None:
        query = query.where(col(AuditEvent.at) >= datetime.combine(f.since, time(), tzinfo=UTC))
    if f.until is not None:
        query = query.where(col(AuditEvent.at) < datetime.combine(f.until + timedelta(days=1), time(), tzinfo=UTC))
    return query


def audit_events(
    session: Session, f: AuditFilter, *, limit: int | None = 50, offset: int = 0
) -> tuple[list[AuditEvent], int]:
    """Audit events matching ``f``, newest first (by time, then id), a page of ``limit`` (None: all) from
    ``offset``; and how many match in all."""
    total = session.exec(_filtered(select(func.count()).select_from(AuditEvent), f)).one()
    query = _filtered(select(AuditEvent), f).order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query.offset(offset)).all()), int(total)


def audit_vocabulary(session: Session) -> dict[str, list[str]]:
    """The actors, actions and subject types present in the audit trail, sorted (for filter choices)."""
    return {
        name: sorted(v for v in session.exec(select(column).distinct()).all() if v)
        for name, column in (
            ("actors", AuditEvent.actor),
            ("actions", AuditEvent.action),
            ("subject_types", AuditEvent.subject_type),
        )
    }
