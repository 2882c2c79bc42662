"""User and token rules shared by the command line, the pages and the API (models.users)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.auth import TokenError, user_for_token
from models.enums import Role
from models.tables import AuditEvent, User
from models.types import utcnow
from models.users import (
    DuplicateUserError,
    UnknownProviderError,
    UnknownUserError,
    UserError,
    check_token_days,
    create_user,
    deactivate_user,
    issue_token_for_days,
    token_rows,
    user_by_email,
)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


def _add(session: Session, email: str, role: Role = Role.STAFF, provider: str | None = None) -> User:
    return create_user(session, email=email, name="N", role=role, provider_code=provider, actor="admin@x.test")


class TestCreateUser:
    def test_centre_user_bound_to_provider_and_audited(self, session: Session) -> None:
        user = _add(session, "  phys@christie.test ", Role.CENTRE, "the-christie")
        assert user.id is not None and user.email == "phys@christie.test" and user.provider_id is not None
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "user.added")).one()
        assert event.actor == "admin@x.test" and event.subject_id == str(user.id)

    @pytest.mark.parametrize(
        ("email", "role", "provider", "error", "field", "message"),
        [
            ("c@x.test", Role.CENTRE, None, UserError, "provider", "a centre user needs a provider"),
            ("s@x.test", Role.STAFF, "the-christie", UserError, "provider", "only centre users have a provider"),
            ("c@x.test", Role.CENTRE, "nowhere", UnknownProviderError, "provider", "no provider with code 'nowhere'"),
            ("not-an-address", Role.STAFF, None, UserError, "email", "is not an e-mail address"),
            ("a b@x.test", Role.STAFF, None, UserError, "email", "is not an e-mail address"),
            ("@x.test", Role.STAFF, None, UserError, "email", "is not an e-mail address"),
        ],
    )
    def test_refused(
        self,
        session: Session,
        email: str,
        role: Role,
        provider: str | None,
        error: type[UserError],
        field: str,
        message: str,
    ) -> None:
        with pytest.raises(error, match=message) as caught:
            _add(session, email, role, provider)
        assert caught.value.field == field
        assert session.exec(select(User)).all() == []

    def test_blank_name_is_refused(self, session: Session) -> None:
        with pytest.raises(UserError, match="a user needs a name"):
            create_user(session, email="a@x.test", name="  ", role=Role.STAFF, provider_code=None, actor="a")

    def test_duplicate_ignores_letter_case(self, session: Session) -> None:
        _add(session, "QA@x.test")
        with pytest.raises(DuplicateUserError, match=r"a user with e-mail 'QA@x\.test' already exists"):
            _add(session, "qa@X.TEST")
        assert user_by_email(session, " qa@x.test ") is not None


class TestDeactivate:
    def test_tokens_stop_working(self, session: Session) -> None:
        user = _add(session, "u@x.test")
        token = issue_token_for_days(session, user=user, actor="a", days=5).token
        deactivate_user(session, user_id=user.id or 0, actor="admin@x.test", reason="left")
        assert user_for_token(session, token) is None
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "user.deactivated")).one()
        assert (event.before, event.after, event.reason) == (
            {"email": "u@x.test", "active": True},
            {"email": "u@x.test", "active": False},
            "left",
        )

    def test_refusals(self, session: Session) -> None:
        user = _add(session, "admin@x.test")
        with pytest.raises(UserError, match="you cannot deactivate your own account"):
            deactivate_user(session, user_id=user.id or 0, actor="ADMIN@x.test")
        with pytest.raises(UnknownUserError, match="no user with id 999"):
            deactivate_user(session, user_id=999, actor="a")
        deactivate_user(session, user_id=user.id or 0, actor="other@x.test")
        with pytest.raises(UserError, match="already deactivated"):
            deactivate_user(session, user_id=user.id or 0, actor="other@x.test")


class TestTokens:
    @pytest.mark.parametrize(("days", "expected"), [(None, 90), (1, 1), (365, 365)])
    def test_lifetime(self, days: int | None, expected: int) -> None:
        assert check_token_days(days) == expected

    @pytest.mark.parametrize("days", [0, -1, 366, 10_000])
    def test_out_of_range(self, days: int) -> None:
        with pytest.raises(TokenError, match=rf"^{days} is out of range; tokens expire after 1 to 365 days$"):
            check_token_days(days)

    def test_issue_lists_without_the_token(self, session: Session) -> None:
        user = _add(session, "u@x.test")
        before = utcnow()
        issued = issue_token_for_days(session, user=user, actor="a", label=" ci ", days=7)
        assert issued.row.label == "ci" and issued.row.state() == "active"
        assert issued.row.expires_at is not None
        assert before + timedelta(days=7) <= issued.row.expires_at <= utcnow() + timedelta(days=7)
        assert issued.row.state(now=issued.row.expires_at) == "expired"
        rows = token_rows(session, user_id=user.id)
        assert [r.id for r in rows] == [issued.row.id]
        assert issued.token not in repr(rows)

    def test_no_token_for_a_deactivated_user(self, session: Session) -> None:
        user = _add(session, "u@x.test")
        deactivate_user(session, user_id=user.id or 0, actor="admin@x.test")
        with pytest.raises(TokenError, match=r"u@x\.test is deactivated"):
            issue_token_for_days(session, user=user, actor="a", days=7)


def test_reactivate_restores_the_tokens(engine: Engine) -> None:
    from models.users import reactivate_user

    with Session(engine) as session:
        user = _add(session, "u@x.test")
        token = issue_token_for_days(session, user=user, actor="a", days=5).token
        with pytest.raises(UserError, match=r"u@x\.test is already active"):
            reactivate_user(session, user_id=user.id or 0, actor="admin@x.test")
        deactivate_user(session, user_id=user.id or 0, actor="admin@x.test")
        reactivate_user(session, user_id=user.id or 0, actor="admin@x.test", reason="back from leave")
        assert user_for_token(session, token) is not None
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "user.reactivated")).one()
        assert event.reason == "back from leave" and event.after == {"email": "u@x.test", "active": True}
