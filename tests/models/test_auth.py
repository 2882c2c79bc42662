"""API tokens: revocation takes effect at once, is audited, and refuses unknown or already revoked tokens; the
one-statement check (:func:`models.auth.token_holder`) refuses exactly what :func:`models.auth.token_user` refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.auth import (
    LAST_USED_RESOLUTION,
    TokenError,
    TokenHolder,
    hash_token,
    issue_token,
    revoke_token,
    token_holder,
    token_user,
    user_for_token,
)
from models.enums import Role
from models.tables import ApiToken, AuditEvent, Provider, User


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


class TestTokenHolder:
    """The one-statement token check of the credential status API decides as :func:`token_user` does."""

    @staticmethod
    def _tokens(engine: Engine) -> dict[str, str]:
        when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        with Session(engine) as session:
            provider = session.exec(select(Provider)).first()
            assert provider is not None
            centre = User(email="phys@x.test", name="P", role=Role.CENTRE, provider_id=provider.id)
            gone = User(email="gone@x.test", name="G", role=Role.STAFF, is_active=False)
            session.add_all([centre, gone])
            session.flush()
            out = {
                "centre": issue_token(session, user=centre, actor="tests"),
                "expired": issue_token(session, user=centre, actor="tests", expires_at=when - timedelta(seconds=1)),
                "revoked": issue_token(session, user=centre, actor="tests"),
                "deactivated": issue_token(session, user=gone, actor="tests"),
                "unknown": "rtqa_no-such-token",
            }
            revoked = session.exec(select(ApiToken).where(ApiToken.token_sha256 == hash_token(out["revoked"]))).one()
            assert revoked.id is not None
            revoke_token(session, token_id=revoked.id, actor="tests", now=when - timedelta(days=1))
            session.commit()
        return out

    def test_refusals_match_token_user(self, engine: Engine) -> None:
        tokens = self._tokens(engine)
        now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        for key in ("expired", "revoked", "deactivated", "unknown"):
            with Session(engine) as session, pytest.raises(TokenError) as orm:
                token_user(session, tokens[key], now=now)
            with engine.connect() as connection, pytest.raises(TokenError) as core:
                token_holder(connection, tokens[key], now=now)
            assert str(core.value) == str(orm.value), key
        with engine.connect() as connection:
            holder = token_holder(connection, tokens["centre"], now=now)
        with Session(engine) as session:
            user = token_user(session, tokens["centre"], now=now)
        assert holder == TokenHolder(user_id=user.id or 0, role=Role.CENTRE, provider_id=user.provider_id)
        assert holder.provider_id is not None

    def test_last_used_is_written_at_most_once_a_minute(self, engine: Engine) -> None:
        token = self._tokens(engine)["centre"]
        start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

        def last_used() -> datetime | None:
            with Session(engine) as session:
                query = select(ApiToken.last_used_at).where(ApiToken.token_sha256 == hash_token(token))
                return session.exec(query).one()

        with engine.connect() as connection:
            token_holder(connection, token, now=start)
        assert last_used() is None  # without touch nothing is written
        for offset, expected in [(0, start), (59, start), (60, start + LAST_USED_RESOLUTION)]:
            with engine.connect() as connection:  # closing without a commit would undo an uncommitted write
                token_holder(connection, token, now=start + timedelta(seconds=offset), touch=True)
            assert last_used() == expected, offset
