"""The scheduled flows: credentials lapse when their validity ends, and reminders go to the outbox once per end."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from flows.expiry import REMINDER_KIND, expire_credentials, expire_steps, remind_expiring, remind_steps
from flows.outbox import SmtpSender, send_pending
from flows.runtime import using_settings
from models.credentials import apply_outcome
from models.enums import CredentialStatus, Role
from models.settings import Settings
from models.tables import AuditEvent, Credential, OutboxMessage, Provider, User
from models.types import utcnow
from tests.models.world import NOW, World

VALIDITY_DAYS = 30
ENDS = NOW + timedelta(days=VALIDITY_DAYS)
"""When the world's lung SABR credentials end (both stages decided at NOW)."""


@pytest.fixture
def credentialed(engine: Engine) -> list[int]:
    """The-christie credentialed for lung SABR and the lung trial until ENDS; returns those two credential ids."""
    with Session(engine) as session:
        world = World(session)
        sub = world.passed_all()
        apply_outcome(session, submission_id=sub, actor="tests", validity_days=VALIDITY_DAYS, now=NOW)
        session.commit()
        rows = session.exec(select(Credential).where(Credential.status == CredentialStatus.CREDENTIALED)).all()
        assert {r.valid_until for r in rows} == {ENDS}
        return sorted(r.id for r in rows if r.id is not None)


def _add_users(engine: Engine) -> None:
    with Session(engine) as session:
        own = session.exec(select(Provider).where(Provider.code == "the-christie")).one()
        other = session.exec(select(Provider).where(Provider.code == "leeds-teaching-hospitals")).one()
        session.add(User(email="phys@christie.test", name="P", role=Role.CENTRE, provider_id=own.id))
        session.add(User(email="gone@christie.test", name="G", role=Role.CENTRE, provider_id=own.id, is_active=False))
        session.add(User(email="phys@leeds.test", name="L", role=Role.CENTRE, provider_id=other.id))
        session.add(User(email="qa@rttqa.test", name="QA", role=Role.STAFF))
        session.commit()


def _audit(engine: Engine, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def _outbox(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all())


class TestExpireCredentials:
    def test_lapses_at_the_end_of_validity_once_and_audited(
        self, settings: Settings, engine: Engine, credentialed: list[int]
    ) -> None:
        before = len(_audit(engine, "credential.changed"))
        assert expire_steps(settings, "tests", now=ENDS - timedelta(seconds=1))["lapsed"] == 0
        assert expire_steps(settings, "tests", now=ENDS)["lapsed"] == 2  # the technique and the lung trial
        assert expire_steps(settings, "tests", now=ENDS + timedelta(days=1))["lapsed"] == 0
        with Session(engine) as session:
            statuses = {c.id: c.status for c in session.exec(select(Credential)).all()}
        assert {statuses[i] for i in credentialed} == {CredentialStatus.LAPSED}
        events = _audit(engine, "credential.changed")[before:]
        assert sorted(int(e.subject_id) for e in events) == credentialed
        for event in events:
            assert event.actor == "tests" and event.reason == "validity period ended"
            assert event.before is not None and event.before["status"] == "credentialed"
            assert event.after is not None and event.after["status"] == "lapsed"

    def test_flow_function_uses_the_callers_settings(
        self, settings: Settings, engine: Engine, credentialed: list[int]
    ) -> None:
        with Session(engine) as session:  # one credential has just ended, the other ends tomorrow
            first, second = (session.get(Credential, i) for i in credentialed)
            assert first is not None and second is not None
            first.valid_until = utcnow() - timedelta(minutes=1)
            second.valid_until = utcnow() + timedelta(days=1)
            session.add_all([first, second])
            session.commit()
        with using_settings(settings):
            result = expire_credentials.fn(actor="rtqa-schedule")
        assert result["lapsed"] == 1
        [event] = [e for e in _audit(engine, "credential.changed") if e.reason == "validity period ended"]
        assert event.subject_id == str(credentialed[0]) and event.actor == "rtqa-schedule"


class RecordingSender:
    def __init__(self, fail_for: str | None = None) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail_for = fail_for

    def send(self, message: OutboxMessage) -> None:
        if message.recipient == self.fail_for:
            raise ConnectionRefusedError("mail server down")
        self.sent.append((message.recipient, message.subject))


class TestRemindExpiring:
    def test_reminders_once_per_credential_end_and_recipient(
        self, settings: Settings, engine: Engine, credentialed: list[int]
    ) -> None:
        _add_users(engine)
        settings = settings.model_copy(update={"qa_team_email": "team@rttqa.test"})
        far = remind_steps(settings, 60, "tests", now=ENDS - timedelta(days=61))
        assert far["expiring"] == 0 and far["queued"] == []

        first = remind_steps(settings, 60, "tests", now=ENDS - timedelta(days=59))
        assert first["expiring"] == 2 and len(first["queued"]) == 4 and first["already_queued"] == 0
        assert first["delivery"]["sent"] == []  # no sender configured: the outbox is the record
        messages = _outbox(engine)
        assert sorted((m.credential_id, m.recipient) for m in messages) == sorted(
            (c, r) for c in credentialed for r in ("phys@christie.test", "team@rttqa.test")
        )
        for m in messages:
            assert m.kind == REMINDER_KIND and m.sent_at is None and m.valid_until == ENDS
            assert "ends on 01 July 2026" in m.subject and "The Christie" in m.subject
            assert "59 days from now" in m.body
            if "sabr_lung" in m.subject:
                stage = "- outlining benchmark: passed, c-outlining_benchmark@1 attempt 1, valid until 2026-07-01"
                assert stage in m.body
            else:
                assert "LUNG-TRIAL" in m.subject and "techniques this trial requires" in m.body
            assert "rtqa credentials --provider the-christie" in m.body
        queued = _audit(engine, "notification.queued")
        assert sorted((e.subject_id, e.after["recipient"]) for e in queued if e.after) == sorted(
            (str(m.credential_id), m.recipient) for m in messages
        )

        again = remind_steps(settings, 60, "tests", now=ENDS - timedelta(days=52))
        assert again["queued"] == [] and again["already_queued"] == 4
        assert len(_outbox(engine)) == 4 and len(_audit(engine, "notification.queued")) == 4

        with Session(engine) as session:  # re-credentialed: a new end of validity is reminded afresh
            cred = session.get(Credential, credentialed[0])
            assert cred is not None
            cred.valid_until = ENDS + timedelta(days=20)
            session.add(cred)
            session.commit()
        renewed = remind_steps(settings, 60, "tests", now=ENDS - timedelta(days=30))
        assert len(renewed["queued"]) == 2 and renewed["already_queued"] == 2

    def test_staff_are_told_when_the_provider_has_no_centre_user(
        self, settings: Settings, engine: Engine, credentialed: list[int]
    ) -> None:
        result = remind_steps(settings, 60, "tests", now=ENDS - timedelta(days=1))
        assert result["queued"] == [] and len(result["no_recipient"]) == 2  # nobody at all
        with Session(engine) as session:
            session.add(User(email="qa@rttqa.test", name="QA", role=Role.STAFF))
            session.add(User(email="old@rttqa.test", name="Old", role=Role.STAFF, is_active=False))
            session.commit()
        result = remind_steps(settings, 60, "tests", now=ENDS - timedelta(days=1))
        assert {m.recipient for m in _outbox(engine)} == {"qa@rttqa.test"} and len(result["queued"]) == 2

    def test_a_sender_delivers_and_a_failure_stays_unsent(
        self, settings: Settings, engine: Engine, credentialed: list[int]
    ) -> None:
        _add_users(engine)
        settings = settings.model_copy(update={"qa_team_email": "team@rttqa.test"})
        sender = RecordingSender(fail_for="team@rttqa.test")
        result = remind_steps(settings, 60, "tests", now=ENDS - timedelta(days=10), sender=sender)
        assert len(result["queued"]) == 4
        assert len(result["delivery"]["sent"]) == 2 and len(result["delivery"]["failed"]) == 2
        assert all("ConnectionRefusedError: mail server down" in why for _, why in result["delivery"]["failed"])
        sent = {m.recipient: m.sent_at for m in _outbox(engine)}
        assert sent["team@rttqa.test"] is None and sent["phys@christie.test"] is not None
        assert [r for r, _ in sender.sent] == ["phys@christie.test", "phys@christie.test"]
        assert len(_audit(engine, "notification.sent")) == 2
        sender.fail_for = None  # the server is back: the next run sends what is left, nothing twice
        with Session(engine) as session:
            report = send_pending(session, sender, actor="tests")
        assert len(report.sent) == 2 and report.failed == ()
        assert [r for r, _ in sender.sent].count("team@rttqa.test") == 2 and len(sender.sent) == 4

    def test_flow_function_defaults_to_the_warning_window(
        self, settings: Settings, engine: Engine, credentialed: list[int]
    ) -> None:
        _add_users(engine)
        with Session(engine) as session:
            for cred in session.exec(select(Credential)).all():
                cred.valid_until = utcnow() + timedelta(days=settings.expiry_warning_days - 1)
                session.add(cred)
            session.commit()
        with using_settings(settings):
            result = remind_expiring.fn()
        assert result["within_days"] == settings.expiry_warning_days and len(result["queued"]) == 2
        assert {m.recipient for m in _outbox(engine)} == {"phys@christie.test"}


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: every command accepted, each DATA block kept."""

    def handle(self) -> None:
        self.wfile.write(b"220 test SMTP\r\n")
        lines: list[str] | None = None
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if lines is not None:
                if line == ".":
                    self.server.received.append("\n".join(lines))  # type: ignore[attr-defined]
                    lines = None
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line)
                continue
            verb = line.split(" ")[0].upper()
            self.server.commands.append(line)  # type: ignore[attr-defined]
            if verb == "DATA":
                lines = []
                self.wfile.write(b"354 end with .\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.received = []  # type: ignore[attr-defined]
    server.commands = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_smtp_sender_sends_the_outbox_message(settings: Settings, engine: Engine, smtp_server: Any) -> None:
    port = smtp_server.server_address[1]
    settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False, "smtp_from": "rtqa@rttqa.test"}
    )
    with Session(engine) as session:
        session.add(OutboxMessage(kind="test", recipient="phys@christie.test", subject="Hello", body="Line one\n"))
        session.commit()
    result = remind_steps(settings, 0, "tests", now=NOW)  # nothing expiring; the outbox is still sent
    assert len(result["delivery"]["sent"]) == 1
    [received] = smtp_server.received
    assert "From: rtqa@rttqa.test" in received and "To: phys@christie.test" in received
    assert "Subject: Hello" in received and "Line one" in received
    assert "rcpt TO:<phys@christie.test>" in smtp_server.commands
    assert "secret" not in repr(SmtpSender("h", 1, "f", "u", "secret"))
