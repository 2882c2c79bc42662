"""Users and tokens for QA staff, on the pages and through ``/api/v1/users`` and ``/api/v1/tokens``."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.auth import hash_token, user_for_token
from models.tables import ApiToken, AuditEvent, User
from models.types import utcnow
from tests.portal.staff_util import csrf, sign_in


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _user_id(engine: Engine, email: str) -> int:
    with Session(engine) as session:
        return session.exec(select(User).where(User.email == email)).one().id or 0


@pytest.fixture
def staff(client: TestClient, tokens: dict[str, str]) -> str:
    sign_in(client, tokens["staff"])
    return csrf(client)


class TestUsersPage:
    def test_lists_users_with_role_provider_and_state(self, client: TestClient, staff: str) -> None:
        text = client.get("/staff/users").text
        row = text[text.index('<tr data-user="phys@christie.test">') :][:600]
        assert "<td>centre</td>" in row and "<td>the-christie</td>" in row and "<td>yes</td>" in row
        assert 'aria-label="Deactivate phys@christie.test"' in row
        own = text[text.index('<tr data-user="qa@rttqa.test">') :][:700]
        assert "Deactivate" not in own  # nobody deactivates themselves from here

    def test_add_a_centre_user(self, client: TestClient, staff: str, engine: Engine) -> None:
        data = {"email": "new@leeds.test", "name": "New", "role": "centre", "provider": "leeds-teaching-hospitals"}
        r = client.post("/staff/users", data={**data, "csrf_token": staff}, follow_redirects=False)
        assert r.status_code == 303
        uid = _user_id(engine, "new@leeds.test")
        assert r.headers["location"] == f"/staff/users/{uid}?done=added"
        assert "The user was added" in client.get(r.headers["location"]).text
        with Session(engine) as session:
            event = session.exec(select(AuditEvent).where(AuditEvent.action == "user.added")).one()
            assert event.actor == "qa@rttqa.test" and event.after == {
                "email": "new@leeds.test",
                "role": "centre",
                "provider": "leeds-teaching-hospitals",
            }

    @pytest.mark.parametrize(
        ("data", "status", "message"),
        [
            (
                {"email": "PHYS@christie.test", "name": "Again", "role": "staff", "provider": ""},
                409,
                "Not added: a user with e-mail 'phys@christie.test' already exists.",
            ),
            (
                {"email": "c@x.test", "name": "C", "role": "centre", "provider": ""},
                422,
                "Not added: a centre user needs a provider.",
            ),
            (
                {"email": "s@x.test", "name": "S", "role": "staff", "provider": "the-christie"},
                422,
                "Not added: only centre users have a provider, not staff users.",
            ),
            ({"email": "s@x.test", "name": "S", "role": "", "provider": ""}, 422, "Choose a role."),
            ({"email": "nobody", "name": "S", "role": "staff", "provider": ""}, 422, "is not an e-mail address"),
        ],
    )
    def test_mistakes_are_told_and_the_form_kept(
        self, client: TestClient, staff: str, engine: Engine, data: dict[str, str], status: int, message: str
    ) -> None:
        r = client.post("/staff/users", data={**data, "csrf_token": staff})
        assert r.status_code == status and message in html.unescape(r.text)
        assert f'value="{data["email"]}"' in r.text
        with Session(engine) as session:
            assert len(session.exec(select(User)).all()) == 3

    def test_deactivate(self, client: TestClient, staff: str, tokens: dict[str, str], engine: Engine) -> None:
        uid = _user_id(engine, "phys@christie.test")
        r = client.post(f"/staff/users/{uid}/deactivate", data={"csrf_token": staff}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/staff/users?done=deactivated"
        assert client.get("/api/v1/me", headers=_bearer(tokens["centre"])).status_code == 401
        again = client.post(f"/staff/users/{uid}/deactivate", data={"csrf_token": staff})
        assert again.status_code == 409 and "phys@christie.test is already deactivated" in again.text
        assert 'aria-label="Reactivate phys@christie.test"' in again.text
        r = client.post(f"/staff/users/{uid}/reactivate", data={"csrf_token": staff}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/staff/users?done=reactivated"
        assert client.get("/api/v1/me", headers=_bearer(tokens["centre"])).status_code == 200
        again = client.post(f"/staff/users/{uid}/reactivate", data={"csrf_token": staff})
        assert again.status_code == 409 and "phys@christie.test is already active" in again.text

    def test_nobody_deactivates_themselves(self, client: TestClient, staff: str, engine: Engine) -> None:
        uid = _user_id(engine, "qa@rttqa.test")
        r = client.post(f"/staff/users/{uid}/deactivate", data={"csrf_token": staff})
        assert r.status_code == 409 and "you cannot deactivate your own account" in r.text


class TestTokensPage:
    def test_issue_shows_the_token_once(self, client: TestClient, staff: str, engine: Engine) -> None:
        uid = _user_id(engine, "phys@christie.test")
        before = utcnow()
        r = client.post(
            f"/staff/users/{uid}/tokens", data={"label": "upload script", "days": "30", "csrf_token": staff}
        )
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        token = re.search(r'<p class="token" id="token">(rtqa_[\w-]+)</p>', r.text)
        assert token, "the plain token is on the page"
        assert "Copy this token now" in r.text and "/static/staff_users.js" in r.text
        with Session(engine) as session:
            user = user_for_token(session, token.group(1))
            assert user is not None and user.email == "phys@christie.test"
            row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == hash_token(token.group(1)))).one()
            assert row.label == "upload script" and row.expires_at is not None
            assert before + timedelta(days=30) <= row.expires_at <= utcnow() + timedelta(days=30)
        listing = client.get(f"/staff/users/{uid}").text
        assert token.group(1) not in listing and "upload script" in listing
        assert listing.count('aria-label="Revoke token') == 2  # the fixture's token and this one

    @pytest.mark.parametrize("days", ["1", "365"])
    def test_bounds_are_accepted(self, client: TestClient, staff: str, engine: Engine, days: str) -> None:
        uid = _user_id(engine, "phys@christie.test")
        r = client.post(f"/staff/users/{uid}/tokens", data={"days": days, "csrf_token": staff})
        assert r.status_code == 200 and "rtqa_" in r.text

    @pytest.mark.parametrize(
        ("days", "message"),
        [
            ("0", "No token issued: expiry 0 is out of range; tokens expire after 1 to 365 days."),
            ("366", "No token issued: expiry 366 is out of range; tokens expire after 1 to 365 days."),
            ("-3", "No token issued: expiry -3 is out of range"),
            ("", "No token issued: write the expiry as a whole number of days from 1 to 365."),
            ("2.5", "No token issued: write the expiry as a whole number of days from 1 to 365."),
        ],
    )
    def test_out_of_bounds_is_refused(
        self, client: TestClient, staff: str, engine: Engine, days: str, message: str
    ) -> None:
        uid = _user_id(engine, "phys@christie.test")
        with Session(engine) as session:
            count = len(session.exec(select(ApiToken)).all())
        r = client.post(f"/staff/users/{uid}/tokens", data={"days": days, "csrf_token": staff})
        assert r.status_code == 422 and message in r.text and "rtqa_" not in r.text.split("<main>")[1]
        with Session(engine) as session:
            assert len(session.exec(select(ApiToken)).all()) == count

    def test_revoke(self, client: TestClient, staff: str, tokens: dict[str, str], engine: Engine) -> None:
        with Session(engine) as session:
            row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == hash_token(tokens["centre"]))).one()
        r = client.post(f"/staff/tokens/{row.id}/revoke", data={"csrf_token": staff}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/staff/users/{row.user_id}?done=revoked"
        assert client.get("/api/v1/me", headers=_bearer(tokens["centre"])).status_code == 401
        assert "revoked " in client.get(f"/staff/users/{row.user_id}").text
        again = client.post(f"/staff/tokens/{row.id}/revoke", data={"csrf_token": staff})
        assert again.status_code == 409 and f"API token {row.id} was already revoked" in again.text
        with Session(engine) as session:
            event = session.exec(select(AuditEvent).where(AuditEvent.action == "token.revoked")).one()
            assert event.actor == "qa@rttqa.test"


class TestApi:
    def test_users(self, client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
        staff = _bearer(tokens["staff"])
        listed = client.get("/api/v1/users", headers=staff).json()
        assert [(u["email"], u["role"], u["provider"], u["active"]) for u in listed] == [
            ("comm@nhs.test", "commissioner", None, True),
            ("phys@christie.test", "centre", "the-christie", True),
            ("qa@rttqa.test", "staff", None, True),
        ]
        r = client.post("/api/v1/users", json={"email": "t@x.test", "name": "T", "role": "commissioner"}, headers=staff)
        assert r.status_code == 201 and r.json()["email"] == "t@x.test"
        r = client.post("/api/v1/users", json={"email": "T@x.test", "name": "T", "role": "staff"}, headers=staff)
        assert r.status_code == 409 and r.json()["detail"] == "email: a user with e-mail 't@x.test' already exists"
        r = client.post(
            "/api/v1/users",
            json={"email": "c@x.test", "name": "C", "role": "centre", "provider": "nowhere"},
            headers=staff,
        )
        assert r.status_code == 422 and r.json()["detail"] == "provider: no provider with code 'nowhere'"
        uid = _user_id(engine, "t@x.test")
        r = client.post(f"/api/v1/users/{uid}/deactivate", json={"reason": "left"}, headers=staff)
        assert r.status_code == 200 and r.json()["active"] is False
        assert client.post(f"/api/v1/users/{uid}/deactivate", headers=staff).status_code == 409
        r = client.post(f"/api/v1/users/{uid}/reactivate", headers=staff)
        assert r.status_code == 200 and r.json()["active"] is True
        assert client.post(f"/api/v1/users/{uid}/reactivate", headers=staff).status_code == 409
        assert client.post("/api/v1/users/999999/reactivate", headers=staff).status_code == 404
        assert client.post("/api/v1/users/999999/deactivate", headers=staff).status_code == 404

    def test_tokens(self, client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
        staff = _bearer(tokens["staff"])
        uid = _user_id(engine, "comm@nhs.test")
        for days in (0, 366):
            r = client.post("/api/v1/tokens", json={"user_id": uid, "days": days}, headers=staff)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "days"]
        r = client.post("/api/v1/tokens", json={"user_id": uid, "label": "x"}, headers=staff)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "days"]  # days is required
        r = client.post("/api/v1/tokens", json={"user_id": uid, "label": "report", "days": 365}, headers=staff)
        assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
        issued = r.json()
        assert client.get("/api/v1/me", headers=_bearer(issued["token"])).json()["email"] == "comm@nhs.test"
        listed = client.get("/api/v1/tokens", params={"user_id": uid}, headers=staff).json()
        assert [(t["label"], t["state"]) for t in listed] == [("", "active"), ("", "expired"), ("report", "active")]
        assert all("token" not in t for t in listed) and issued["token"] not in str(listed)
        r = client.post(f"/api/v1/tokens/{issued['id']}/revoke", json={"reason": "done"}, headers=staff)
        assert r.status_code == 200 and r.json()["state"] == "revoked"
        assert client.post(f"/api/v1/tokens/{issued['id']}/revoke", headers=staff).status_code == 409
        assert client.post("/api/v1/tokens/999999/revoke", headers=staff).status_code == 404
        assert client.post("/api/v1/tokens", json={"user_id": 999999, "days": 5}, headers=staff).status_code == 404
