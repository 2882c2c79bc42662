"""Table constraints: uniqueness, enums stored by value, UTC round trips, append-only audit, check constraints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlmodel import Session, select

from models.audit import record_audit
from models.enums import CredentialStatus, OutcomeLevel, OutcomeSource, QAStage, Role, SubmissionStatus
from models.tables import (
    AuditEvent,
    BenchmarkCase,
    Credential,
    Outcome,
    Provider,
    Submission,
    Technique,
    User,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def _case(session: Session) -> BenchmarkCase:
    tech = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
    assert tech.id is not None
    case = BenchmarkCase(
        case_code="c1",
        version="1.0",
        title="t",
        technique_id=tech.id,
        stage=QAStage.OUTLINING_BENCHMARK,
        protocol_id="uk-lung-sabr",
        protocol_version="1.0",
        reference_sha256=SHA_A,
        reference_path="/nowhere",
    )
    session.add(case)
    session.flush()
    return case


def _provider(session: Session, index: int = 0) -> Provider:
    return session.exec(select(Provider).order_by(Provider.code)).all()[index]


def _submission(session: Session, *, attempt: int = 1, sha: str = SHA_A, **kw: object) -> Submission:
    case = _case(session) if "case_id" not in kw else None
    values: dict[str, object] = {
        "provider_id": _provider(session).id,
        "case_id": case.id if case else kw["case_id"],
        "attempt": attempt,
        "content_sha256": sha,
        "status": SubmissionStatus.RECEIVED,
        "storage_path": "/x",
        "submitted_by": "tests",
    }
    values.update(kw)
    return Submission(**values)  # type: ignore[arg-type]


class TestUniqueness:
    def test_same_upload_twice_is_refused(self, engine: Engine) -> None:
        with Session(engine) as session:
            first = _submission(session)
            session.add(first)
            session.flush()
            session.add(_submission(session, attempt=2, case_id=first.case_id))
            with pytest.raises(IntegrityError, match=r"(?i)unique"):
                session.flush()

    def test_changed_upload_is_a_new_attempt(self, engine: Engine) -> None:
        with Session(engine) as session:
            first = _submission(session)
            session.add(first)
            session.flush()
            session.add(_submission(session, attempt=2, sha=SHA_B, case_id=first.case_id))
            session.flush()
            assert len(session.exec(select(Submission)).all()) == 2

    def test_attempt_numbers_are_unique_per_provider_and_case(self, engine: Engine) -> None:
        with Session(engine) as session:
            first = _submission(session)
            session.add(first)
            session.flush()
            session.add(_submission(session, attempt=1, sha=SHA_B, case_id=first.case_id))
            with pytest.raises(IntegrityError, match=r"(?i)unique"):
                session.flush()

    def test_one_technique_credential_per_provider(self, engine: Engine) -> None:
        with Session(engine) as session:
            tech = session.exec(select(Technique)).first()
            assert tech is not None
            pid = _provider(session).id
            assert pid is not None
            for _ in range(2):
                session.add(Credential(provider_id=pid, technique_id=tech.id, status=CredentialStatus.PENDING))
            with pytest.raises(IntegrityError, match=r"(?i)unique"):
                session.flush()


class TestEnumsByValue:
    def test_stored_as_value_text(self, engine: Engine) -> None:
        with Session(engine) as session:
            sub = _submission(session)
            session.add(sub)
            session.flush()
            session.add(
                Outcome(
                    submission_id=sub.id or 0,
                    level=OutcomeLevel.ACCEPTABLE_VARIATION,
                    source=OutcomeSource.AUTOMATIC,
                    decided_by="tests",
                    protocol_id="p",
                    protocol_version="1",
                )
            )
            session.commit()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM submission")).scalar_one() == "received"
            assert conn.execute(sa.text("SELECT level FROM outcome")).scalar_one() == "acceptable_variation"

    def test_unknown_value_rejected_by_the_database(self, engine: Engine) -> None:
        # The CHECK constraint guards raw SQL too, not only the ORM.
        with engine.connect() as conn, pytest.raises(IntegrityError, match=r"(?i)check"):
            conn.execute(sa.text("INSERT INTO technique (code, name, family, site) VALUES ('x', 'x', 'proton', 'x')"))

    def test_members_by_value(self) -> None:
        assert [s.value for s in SubmissionStatus] == ["received", "validated", "scored", "decided", "rejected"]
        assert QAStage("virtual_phantom") is QAStage.VIRTUAL_PHANTOM
        assert not OutcomeLevel.UNACCEPTABLE_VARIATION.passes
        assert OutcomeLevel.JUSTIFIED_VARIATION.passes


class TestUtcTimes:
    def test_aware_round_trip_in_utc(self, engine: Engine) -> None:
        plus_two = timezone(timedelta(hours=2))
        when = datetime(2026, 3, 29, 3, 30, tzinfo=plus_two)
        with Session(engine) as session:
            session.add(
                AuditEvent(
                    at=when,
                    actor="t",
                    action="round-trip",
                    subject_type="s",
                    subject_id="1",
                    prev_hash="",
                    row_hash="1",
                )
            )
            session.commit()
        with Session(engine) as session:
            stored = session.exec(select(AuditEvent).where(AuditEvent.action == "round-trip")).one()
            assert stored.at.tzinfo is not None
            assert stored.at.utcoffset() == timedelta(0)
            assert stored.at == when  # same instant
            assert stored.at.hour == 1  # 03:30 at +02:00 is 01:30 UTC

    def test_naive_datetime_refused(self, engine: Engine) -> None:
        with Session(engine) as session:
            session.add(
                AuditEvent(
                    at=datetime(2026, 1, 1),
                    actor="t",
                    action="a",
                    subject_type="s",
                    subject_id="1",
                    prev_hash="",
                    row_hash="2",
                )
            )
            with pytest.raises(StatementError, match="naive datetime"):
                session.flush()

    def test_default_times_are_utc(self, engine: Engine) -> None:
        with Session(engine) as session:
            record_audit(session, actor="t", action="default-time", subject_type="s", subject_id=1)
            session.commit()
        with Session(engine) as session:
            at = session.exec(select(AuditEvent).where(AuditEvent.action == "default-time")).one().at
            assert at.tzinfo is not None and at.utcoffset() == timedelta(0)
            assert abs(datetime.now(UTC) - at) < timedelta(minutes=5)


class TestAuditAppendOnly:
    @pytest.mark.parametrize("statement", ["UPDATE audit_event SET actor = 'someone else'", "DELETE FROM audit_event"])
    def test_update_and_delete_refused(self, engine: Engine, statement: str) -> None:
        with Session(engine) as session:
            record_audit(session, actor="t", action="a", subject_type="s", subject_id=1)
            session.commit()
        with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(sa.text(statement))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT actor FROM audit_event")).scalars().all()[-1] == "t"

    def test_insert_allowed(self, engine: Engine) -> None:
        with Session(engine) as session:
            before = len(session.exec(select(AuditEvent)).all())
            record_audit(session, actor="t", action="a", subject_type="s", subject_id=1, before={"x": 1})
            session.commit()
            assert len(session.exec(select(AuditEvent)).all()) == before + 1


class TestCheckConstraints:
    def test_centre_user_needs_a_provider(self, engine: Engine) -> None:
        with Session(engine) as session:
            session.add(User(email="c@x", name="c", role=Role.CENTRE))
            with pytest.raises(IntegrityError, match=r"(?i)check"):
                session.flush()

    def test_commissioner_has_no_provider(self, engine: Engine) -> None:
        with Session(engine) as session:
            session.add(User(email="c@x", name="c", role=Role.COMMISSIONER, provider_id=_provider(session).id))
            with pytest.raises(IntegrityError, match=r"(?i)check"):
                session.flush()

    def test_override_needs_justification(self, engine: Engine) -> None:
        with Session(engine) as session:
            sub = _submission(session)
            session.add(sub)
            session.flush()
            session.add(
                Outcome(
                    submission_id=sub.id or 0,
                    level=OutcomeLevel.JUSTIFIED_VARIATION,
                    source=OutcomeSource.OVERRIDE,
                    decided_by="staff@x",
                    protocol_id="p",
                    protocol_version="1",
                )
            )
            with pytest.raises(IntegrityError, match=r"(?i)check"):
                session.flush()

    def test_rejected_submission_needs_reason(self, engine: Engine) -> None:
        with Session(engine) as session:
            session.add(_submission(session, status=SubmissionStatus.REJECTED))
            with pytest.raises(IntegrityError, match=r"(?i)check"):
                session.flush()

    def test_credential_has_exactly_one_scope(self, engine: Engine) -> None:
        with Session(engine) as session:
            session.add(Credential(provider_id=_provider(session).id or 0, status=CredentialStatus.PENDING))
            with pytest.raises(IntegrityError, match=r"(?i)check"):
                session.flush()
