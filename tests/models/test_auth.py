"""API tokens: revocation takes effect at once, is audited, and refuses unknown or already revoked tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.auth import TokenError, issue_token, revoke_token, user_for_token
from models.enums import Role
from models.tables import ApiToken, AuditEvent, User


class TestRevokeToken:
    def test_revoked_token_no_longer_authenticates_and_is_audited(self, engine: Engine) -> None:
        with Session(engine) as session:
            user = User(email="comm@x.test", name="C", role=Role.COMMISSIONER)
            session.add(user)
            session.flush()
            token = issue_token(session, user=user, actor="tests")
            kept = issue_token(session, user=user, actor="tests")
            assert user_for_token(session, token) is not None
            row_id = session.exec(select(ApiToken.id).order_by(ApiToken.id)).first()
            assert row_id is not None
            when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
            revoked = revoke_token(session, token_id=row_id, actor="qa@x.test", reason="laptop lost", now=when)
            session.commit()
            assert revoked.revoked_at == when
            assert user_for_token(session, token) is None
            assert user_for_token(session, kept) is not None
            event = session.exec(select(AuditEvent).where(AuditEvent.action == "token.revoked")).one()
            assert (event.actor, event.subject_id, event.reason) == ("qa@x.test", str(user.id), "laptop lost")
            assert event.before == {"token_id": row_id, "revoked_at": None}
            assert event.after == {"token_id": row_id, "revoked_at": when.isoformat()}

    def test_unknown_token_is_refused(self, engine: Engine) -> None:
        with Session(engine) as session, pytest.raises(TokenError, match=r"no API token with id 999; `rtqa tokens"):
            revoke_token(session, token_id=999, actor="tests")

    def test_second_revocation_is_refused_and_not_audited(self, engine: Engine) -> None:
        with Session(engine) as session:
            user = User(email="c@x.test", name="C", role=Role.COMMISSIONER)
            session.add(user)
            session.flush()
            issue_token(session, user=user, actor="tests")
            row_id = session.exec(select(ApiToken.id)).one()
            assert row_id is not None
            revoke_token(session, token_id=row_id, actor="tests", now=datetime(2026, 5, 6, 7, 8, tzinfo=UTC))
            with pytest.raises(TokenError, match=r"already revoked on 2026-05-06 07:08 UTC"):
                revoke_token(session, token_id=row_id, actor="tests")
            events = session.exec(select(AuditEvent).where(AuditEvent.action == "token.revoked")).all()
            assert len(events) == 1
