"""Writing the audit trail, and its tamper evidence: every event is chained to the one before it by hash.

``row_hash = SHA-256(prev_hash + "\\n" + canonical JSON of the event)``, where the canonical JSON holds ``at`` (UTC,
ISO 8601 with microseconds), ``actor``, ``action``, ``subject_type``, ``subject_id``, ``before``, ``after`` and
``reason`` with sorted keys and no spaces, and the first event's ``prev_hash`` is 64 zeros. Editing any stored
event changes its hash; removing one breaks the link of the next; removing the newest ones disagrees with
:class:`~models.tables.AuditChainHead`. :func:`verify_audit_chain` walks the table and names the first broken row.

The chain shows tampering by anyone who does not also rewrite every later hash and the head; keep the head hash
printed by ``rtqa audit verify`` somewhere the database's administrators cannot edit (a backup log, an e-mail) to
close that gap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from models.tables import AuditChainHead, AuditEvent
from models.types import utcnow

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first event."""

HEAD_ID = 1


def event_digest(
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None,
) -> str:
    """The hash of one event given the previous event's hash (see the module docstring)."""
    content = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "before": before,
        "after": after,
        "reason": reason,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _digest_of(event: AuditEvent, prev_hash: str) -> str:
    return event_digest(
        prev_hash,
        at=event.at,
        actor=event.actor,
        action=event.action,
        subject_type=event.subject_type,
        subject_id=event.subject_id,
        before=None if event.before is None else dict(event.before),
        after=None if event.after is None else dict(event.after),
        reason=event.reason,
    )


def _lock_head(session: Session) -> tuple[int, str]:
    """Lock the chain head until this transaction ends (a no-op UPDATE) and read it; created when missing."""
    locked = session.execute(
        update(AuditChainHead).where(col(AuditChainHead.id) == HEAD_ID).values(events=AuditChainHead.events)
    )
    if locked.rowcount == 0:  # type: ignore[attr-defined]
        session.add(AuditChainHead(id=HEAD_ID, events=0, last_hash=GENESIS_HASH))
        session.flush()
    row = session.execute(
        select(AuditChainHead.events, AuditChainHead.last_hash).where(col(AuditChainHead.id) == HEAD_ID)
    ).one()
    return int(row[0]), str(row[1])


def lock_audit_chain(session: Session) -> None:
    """Take the audit chain's lock now, ahead of any other lock this transaction will take.

    Every audited transaction holds the chain head's lock from its first event to its commit. A transaction that
    also locks other rows (a provider, see :func:`models.credentials.lock_provider_of_submission`) takes this one
    first, so that every transaction takes the two in the same order and two of them can never wait for each other.
    """
    _lock_head(session)


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
    """Add an audit event to ``session``, chained to the previous one (committed with the change it records)."""
    events, prev_hash = _lock_head(session)
    event = AuditEvent(
        at=utcnow(),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        before=before,
        after=after,
        reason=reason,
        prev_hash=prev_hash,
        row_hash="",
    )
    event.row_hash = _digest_of(event, prev_hash)
    session.add(event)
    session.flush()
    session.execute(
        update(AuditChainHead)
        .where(col(AuditChainHead.id) == HEAD_ID)
        .values(events=events + 1, last_hash=event.row_hash)
    )
    return event


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_audit_chain` found."""

    checked: int
    head_hash: str
    broken_event_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def chain_events(events: Iterable[AuditEvent], *, expected_count: int, expected_head: str) -> ChainReport:
    """Check ``events`` (in id order) link up and match the head; stops at the first broken row."""
    prev = GENESIS_HASH
    checked = 0
    for event in events:
        if event.prev_hash != prev:
            return ChainReport(
                checked,
                prev,
                event.id,
                f"event {event.id} does not follow the event before it (an event was removed or reordered before it)",
            )
        if _digest_of(event, prev) != event.row_hash:
            return ChainReport(checked, prev, event.id, f"event {event.id} was changed after it was written")
        prev = event.row_hash
        checked += 1
    if checked != expected_count or prev != expected_head:
        return ChainReport(
            checked,
            prev,
            None,
            f"the chain holds {checked} events ending in {prev[:12]}…, but its head records {expected_count} "
            f"ending in {expected_head[:12]}… (the newest events were removed)",
        )
    return ChainReport(checked, prev)


def verify_audit_chain(session: Session) -> ChainReport:
    """Walk ``audit_event`` in id order and check every link and hash against the head."""
    head = session.get(AuditChainHead, HEAD_ID)
    events = session.exec(select(AuditEvent).order_by(col(AuditEvent.id)).execution_options(yield_per=1000))
    return chain_events(
        events,
        expected_count=head.events if head else 0,
        expected_head=head.last_hash if head else GENESIS_HASH,
    )
