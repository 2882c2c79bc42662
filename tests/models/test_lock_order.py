"""Two transactions taking the audit chain and a provider's lock in opposite orders do not deadlock: one that
records an audit event and then re-evaluates credentials (an override), and one that locks the provider first and
audits afterwards (a decision). On PostgreSQL without a common order the server would abort one of them
("deadlock detected"); on SQLite the database lock serialises them anyway."""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.audit import record_audit, verify_audit_chain
from models.credentials import lock_provider_of_submission
from models.enums import QAStage, SubmissionStatus
from models.tables import BenchmarkCase, Provider, Submission, Technique


def _submission(engine: Engine) -> int:
    with Session(engine) as session:
        provider = session.exec(select(Provider)).first()
        technique = session.exec(select(Technique)).first()
        assert provider is not None and technique is not None
        case = BenchmarkCase(
            case_code="lock-order",
            version="1",
            title="lock order",
            technique_id=technique.id or 0,
            stage=QAStage.OUTLINING_BENCHMARK,
            protocol_id="uk-lung-sabr",
            protocol_version="1.0",
            reference_sha256="0" * 64,
            reference_path="/nowhere",
        )
        session.add(case)
        session.flush()
        sub = Submission(
            provider_id=provider.id or 0,
            case_id=case.id or 0,
            attempt=1,
            content_sha256="1" * 64,
            status=SubmissionStatus.SCORED,
            storage_path="/nowhere",
            submitted_by="tests",
        )
        session.add(sub)
        session.commit()
        assert sub.id is not None
        return sub.id


def test_audit_first_and_provider_first_transactions_both_commit(engine: Engine) -> None:
    submission_id = _submission(engine)
    audited = threading.Event()
    errors: list[BaseException] = []

    def audit_then_provider() -> None:
        try:
            with Session(engine) as session:
                record_audit(session, actor="a", action="test.first", subject_type="test", subject_id=1)
                audited.set()
                threading.Event().wait(1.0)  # give the other transaction time to take what it can
                lock_provider_of_submission(session, submission_id)
                session.commit()
        except BaseException as err:
            errors.append(err)

    def provider_then_audit() -> None:
        try:
            audited.wait(10)
            with Session(engine) as session:
                lock_provider_of_submission(session, submission_id)
                record_audit(session, actor="b", action="test.second", subject_type="test", subject_id=2)
                session.commit()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=audit_then_provider), threading.Thread(target=provider_then_audit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "the two transactions are still waiting for each other"
    assert errors == []
    with Session(engine) as session:
        assert verify_audit_chain(session).ok
