"""Scheduled flows on credential validity: ``expire-credentials`` (daily) and ``remind-expiring`` (weekly).

* ``expire-credentials`` marks credentials whose validity has ended as lapsed
  (:func:`models.credentials.lapse_expired`), each change audited (``credential.changed``, reason "validity period
  ended").
* ``remind-expiring`` writes a reminder to the outbox (:mod:`flows.outbox`) for every credential still credentialed
  whose validity ends within ``RTQA_EXPIRY_WARNING_DAYS``: to the provider's active centre users, with a copy to
  ``RTQA_QA_TEAM_EMAIL`` if set (to every active QA staff user when neither exists). One reminder per credential, end
  of validity and recipient: a weekly run repeats nothing, and a renewed credential (a new end) is reminded afresh.
  Then a configured sender delivers what is unsent; without one the outbox is the record.

Schedules are in ``prefect.yaml``. Both run inline too (``python -m flows.expiry expire|remind``).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from flows._store import engine_for
from flows.deferred import NO_CACHE, flow, task
from flows.outbox import Sender, queue_message, send_pending, sender_from_settings
from flows.runtime import SettingsError, call, require_database, run_flow, with_flow_settings
from flows.steps import logger
from models.credentials import CredentialView, credential_view, lapse_expired
from models.enums import CredentialStatus, Role
from models.settings import Settings, get_settings
from models.tables import Credential, User
from models.types import utcnow

__all__ = [
    "REMINDER_KIND",
    "expire_credentials",
    "expire_steps",
    "recipients_for",
    "remind_expiring",
    "remind_steps",
    "reminder_text",
]

REMINDER_KIND = "credential_expiring"
"""The outbox ``kind`` of expiry reminders."""


@task(task_run_name="lapse-expired-credentials")
def lapse_credentials(*, actor: str, database_url: str, now: datetime | None = None) -> int:
    """Mark credentials whose validity ended by ``now`` (default: now) as lapsed, audited; returns how many."""
    with Session(engine_for(database_url)) as session:
        lapsed = lapse_expired(session, actor=actor, now=now)
        session.commit()
    logger().info("%d credentials lapsed (validity period ended)", lapsed)
    return lapsed


def expire_steps(settings: Settings, actor: str = "rtqa-schedule", now: datetime | None = None) -> dict[str, Any]:
    """The flow's body: lapse the credentials whose validity has ended."""
    now = now or utcnow()
    lapsed = call(lapse_credentials, actor=actor, database_url=settings.resolved_database_url, now=now)
    return {"lapsed": lapsed, "as_of": now.isoformat()}


@flow(name="expire-credentials")
def expire_credentials(actor: str = "rtqa-schedule") -> dict[str, Any]:
    """Lapse every credential whose validity period has ended (daily; see ``prefect.yaml``)."""
    return with_flow_settings(expire_steps, actor)  # type: ignore[no-any-return]


def recipients_for(session: Session, provider_id: int, *, qa_team_email: str | None) -> list[str]:
    """Who is reminded about a provider's credential: its active centre users and the QA team address; every
    active QA staff user when there is neither."""
    centre = session.exec(
        select(User.email).where(User.provider_id == provider_id, User.role == Role.CENTRE, col(User.is_active))
    ).all()
    recipients = sorted(centre) + ([qa_team_email] if qa_team_email else [])
    if not recipients:
        recipients = sorted(session.exec(select(User.email).where(User.role == Role.STAFF, col(User.is_active))).all())
    return list(dict.fromkeys(recipients))


def reminder_text(view: CredentialView, *, now: datetime) -> tuple[str, str]:
    """Subject and body of a reminder that ``view``'s validity ends soon."""
    assert view.valid_until is not None
    until = view.valid_until
    days = max(0, (until - now).days)
    subject = f"rtqa: the {view.code} {view.scope} credential of {view.provider_name} ends on {until:%d %B %Y}"
    lines = [
        f"The {view.scope} credential {view.code} of {view.provider_name} ({view.provider_code}) is valid until "
        f"{until:%d %B %Y %H:%M} UTC, {days} days from now.",
        "",
    ]
    if view.scope == "trial":
        lines.append("It lasts while the techniques this trial requires stay credentialed (each is reminded too).")
    stages = list(view.evidence.get("stages", []))
    if stages:
        lines.append("It rests on these QA stages; each needs a passing outcome decided again before then to keep it:")
    for stage in stages:
        case = f", {stage['case']} attempt {stage['attempt']}" if stage.get("case") else ""
        ends = f", valid until {stage['valid_until'][:10]}" if stage.get("valid_until") else ""
        lines.append(f"- {stage['description']}: {stage['status']}{case}{ends}")
    lines += [
        "",
        f"Current state: `rtqa credentials --provider {view.provider_code}` or "
        f"GET /api/v1/providers/{view.provider_code}/credentials.",
        "",
        "Sent by rtqa's weekly expiry reminder (remind-expiring).",
    ]
    return subject, "\n".join(lines) + "\n"


@task(task_run_name="queue-expiry-reminders[{within_days} days]")
def queue_reminders(
    *, actor: str, database_url: str, within_days: int, qa_team_email: str | None, now: datetime
) -> dict[str, Any]:
    """Write a reminder for each credentialed row ending within ``within_days`` of ``now``, per recipient, unless
    one about the same end was written before; returns what was queued, skipped and left without recipient."""
    queued: list[int] = []
    already = 0
    no_recipient: list[str] = []
    with Session(engine_for(database_url)) as session:
        rows = session.exec(
            select(Credential)
            .where(
                Credential.status == CredentialStatus.CREDENTIALED,
                col(Credential.valid_until).is_not(None),
                col(Credential.valid_until) <= now + timedelta(days=within_days),
            )
            .order_by(col(Credential.valid_until), col(Credential.id))
        ).all()
        for cred in rows:
            assert cred.id is not None
            view = credential_view(session, cred)
            recipients = recipients_for(session, cred.provider_id, qa_team_email=qa_team_email)
            if not recipients:
                no_recipient.append(f"{view.provider_code} {view.code}")
                logger().warning(
                    "credential %s (%s %s): no recipient for the expiry reminder; add a centre user or set "
                    "RTQA_QA_TEAM_EMAIL",
                    cred.id,
                    view.provider_code,
                    view.code,
                )
                continue
            subject, body = reminder_text(view, now=now)
            for recipient in recipients:
                message = queue_message(
                    session,
                    kind=REMINDER_KIND,
                    recipient=recipient,
                    subject=subject,
                    body=body,
                    actor=actor,
                    credential_id=cred.id,
                    valid_until=cred.valid_until,
                )
                if message is None:
                    already += 1
                else:
                    assert message.id is not None
                    queued.append(message.id)
        session.commit()
    logger().info(
        "%d credentials end within %d days: %d reminders queued, %d already queued before",
        len(rows),
        within_days,
        len(queued),
        already,
    )
    return {"expiring": len(rows), "queued": queued, "already_queued": already, "no_recipient": no_recipient}


@task(task_run_name="send-outbox", cache_policy=NO_CACHE)
def send_outbox(*, actor: str, database_url: str, sender: Sender) -> dict[str, Any]:
    """Deliver the outbox's unsent messages with ``sender``."""
    with Session(engine_for(database_url)) as session:
        report = send_pending(session, sender, actor=actor)
    logger().info("outbox: %d sent, %d failed (left unsent)", len(report.sent), len(report.failed))
    return {"sent": list(report.sent), "failed": [list(f) for f in report.failed]}


def remind_steps(
    settings: Settings,
    within_days: int | None = None,
    actor: str = "rtqa-schedule",
    *,
    now: datetime | None = None,
    sender: Sender | None = None,
) -> dict[str, Any]:
    """The flow's body: queue reminders (``within_days`` default ``settings.expiry_warning_days``), then send the
    outbox with ``sender`` (default: :func:`flows.outbox.sender_from_settings`; none configured: nothing sent)."""
    now = now or utcnow()
    days = settings.expiry_warning_days if within_days is None else within_days
    url = settings.resolved_database_url
    result = call(
        queue_reminders, actor=actor, database_url=url, within_days=days, qa_team_email=settings.qa_team_email, now=now
    )
    sender = sender or sender_from_settings(settings)
    delivery = (
        call(send_outbox, actor=actor, database_url=url, sender=sender)
        if sender is not None
        else {"sent": [], "failed": [], "note": "no sender configured (RTQA_SMTP_HOST): the outbox is the record"}
    )
    return {**result, "within_days": days, "as_of": now.isoformat(), "delivery": delivery}


@flow(name="remind-expiring")
def remind_expiring(within_days: int | None = None, actor: str = "rtqa-schedule") -> dict[str, Any]:
    """Write expiry reminders to the outbox and send them if a sender is configured (weekly; see ``prefect.yaml``).

    ``within_days`` defaults to ``RTQA_EXPIRY_WARNING_DAYS``.
    """
    return with_flow_settings(remind_steps, within_days, actor)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.expiry", description=__doc__)
    parser.add_argument("which", choices=["expire", "remind"])
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        require_database(settings.resolved_database_url)
    except SettingsError as err:
        parser.exit(2, f"error: {err}\n")
    if args.which == "expire":
        print(run_flow(expire_credentials, expire_steps, settings))
    else:
        print(run_flow(remind_expiring, remind_steps, settings))


if __name__ == "__main__":
    main()
