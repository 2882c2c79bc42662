"""Notifications: the ``outbox`` table is the record of what was said to whom; a sender delivers what is unsent.

No sender is configured by default: messages stay in the outbox with ``sent_at`` NULL (read them there, or from
the API later). With ``RTQA_SMTP_HOST`` set, :class:`SmtpSender` delivers them. Any object with a
``send(message)`` method can stand in (:class:`Sender`); a message is marked sent only when ``send`` returns.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

from sqlmodel import Session, col, select

from flows.steps import logger
from models.audit import record_audit
from models.settings import Settings
from models.tables import OutboxMessage
from models.types import utcnow

__all__ = ["SendReport", "Sender", "SmtpSender", "queue_message", "send_pending", "sender_from_settings"]


class Sender(Protocol):
    """Delivers one outbox message; raises if it could not."""

    def send(self, message: OutboxMessage) -> None: ...


@dataclass(frozen=True)
class SmtpSender:
    """Sends each message as a plain-text e-mail through an SMTP server (one connection per message)."""

    host: str
    port: int
    from_address: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    timeout_seconds: float = 30.0

    def __repr__(self) -> str:  # never show the password
        return f"SmtpSender({self.host}:{self.port}, from {self.from_address}, starttls={self.starttls})"

    def send(self, message: OutboxMessage) -> None:
        email = EmailMessage()
        email["From"] = self.from_address
        email["To"] = message.recipient
        email["Subject"] = message.subject
        email.set_content(message.body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(email)


def sender_from_settings(settings: Settings) -> Sender | None:
    """An :class:`SmtpSender` when ``RTQA_SMTP_HOST`` is set, else None (the outbox is the record)."""
    if not settings.smtp_host:
        return None
    return SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        from_address=settings.smtp_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
    )


def queue_message(
    session: Session,
    *,
    kind: str,
    recipient: str,
    subject: str,
    body: str,
    actor: str,
    credential_id: int | None = None,
    valid_until: datetime | None = None,
) -> OutboxMessage | None:
    """Add a message to the outbox and audit it (``notification.queued``); the caller commits.

    Returns None, adding nothing, when a message of this kind about this credential and end of validity was
    already queued for this recipient.
    """
    if credential_id is not None:
        existing = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.kind == kind,
                OutboxMessage.credential_id == credential_id,
                OutboxMessage.valid_until == valid_until,
                OutboxMessage.recipient == recipient,
            )
        ).first()
        if existing is not None:
            return None
    message = OutboxMessage(
        kind=kind,
        recipient=recipient,
        subject=subject,
        body=body,
        credential_id=credential_id,
        valid_until=valid_until,
    )
    session.add(message)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="notification.queued",
        subject_type="credential" if credential_id is not None else "outbox",
        subject_id=credential_id if credential_id is not None else message.id or 0,
        after={
            "outbox_id": message.id,
            "kind": kind,
            "recipient": recipient,
            "valid_until": valid_until.isoformat() if valid_until else None,
        },
    )
    return message


@dataclass(frozen=True)
class SendReport:
    """What :func:`send_pending` did: ids sent, and ids that failed with the error (left unsent)."""

    sent: tuple[int, ...]
    failed: tuple[tuple[int, str], ...]


def send_pending(session: Session, sender: Sender, *, actor: str) -> SendReport:
    """Deliver every unsent message, oldest first; each delivery sets ``sent_at``, is audited and committed.

    A message whose delivery raises stays unsent (logged with its id and recipient) for the next run.
    """
    pending = session.exec(
        select(OutboxMessage).where(col(OutboxMessage.sent_at).is_(None)).order_by(col(OutboxMessage.id))
    ).all()
    sent: list[int] = []
    failed: list[tuple[int, str]] = []
    for message in pending:
        assert message.id is not None
        try:
            sender.send(message)
        except Exception as err:  # SMTP, network or a custom sender: keep it for the next run
            why = f"{type(err).__name__}: {err}"
            logger().warning("outbox message %s to %s not sent: %s", message.id, message.recipient, why)
            failed.append((message.id, why))
            continue
        message.sent_at = utcnow()
        session.add(message)
        record_audit(
            session,
            actor=actor,
            action="notification.sent",
            subject_type="outbox",
            subject_id=message.id,
            after={"recipient": message.recipient, "sent_at": message.sent_at.isoformat()},
        )
        session.commit()
        sent.append(message.id)
    return SendReport(tuple(sent), tuple(failed))
