"""Writing the audit trail."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from models.tables import AuditEvent


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEvent:
    """Add an audit event to ``session`` (committed with the change it records)."""
    event = AuditEvent(
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        before=before,
        after=after,
        reason=reason,
    )
    session.add(event)
    return event
