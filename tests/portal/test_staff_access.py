"""Who may see the QA staff pages and their API twins, and that every staff form needs the CSRF token.

Pages: anonymous -> sign-in redirect, centre and commissioner -> 403 page, staff -> 200. API: no token -> 401,
centre and commissioner tokens -> 403, staff -> 200.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from models.tables import ApiToken, AuditEvent, User
from tests.portal.conftest import OTHER
from tests.portal.staff_util import Queue, build_queue, csrf, sign_in


@pytest.fixture
def queue(engine: Engine, tokens: dict[str, str]) -> Queue:
    return build_queue(engine)


def _pages(q: Queue) -> list[str]:
    return [
        "/staff/queue",
        "/staff/queue?status=decided&technique=sabr_lung",
        f"/submissions/{q.first}/review",
        "/staff/audit",
        "/staff/users",
        "/staff/users/1",
    ]


def _apis(q: Queue) -> list[str]:
    return [
        "/api/v1/audit",
        "/api/v1/audit.csv",
        "/api/v1/users",
        "/api/v1/tokens",
        f"/api/v1/submissions/{q.first}/mapping",
    ]


class TestPages:
    def test_anonymous_is_sent_to_sign_in(self, client: TestClient, queue: Queue) -> None:
        for path in _pages(queue):
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next="), path

    @pytest.mark.parametrize("role", ["centre", "commissioner"])
    def test_others_get_a_403_page(self, client: TestClient, tokens: dict[str, str], queue: Queue, role: str) -> None:
        sign_in(client, tokens[role])
        for path in _pages(queue):
            r = client.get(path)
            assert r.status_code == 403, path
            assert r.headers["content-type"].startswith("text/html")
            assert f"only QA staff may do this, not {role} users" in r.text

    def test_staff_get_every_page(self, client: TestClient, tokens: dict[str, str], queue: Queue) -> None:
        sign_in(client, tokens["staff"])
        for path in _pages(queue):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])

    def test_a_centre_sees_no_other_providers_data(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        sign_in(client, tokens["centre"])
        for path in [*_pages(queue), f"/submissions/{queue.leeds}/review", *_apis(queue)]:
            text = client.get(path).text
            assert OTHER not in text and "Leeds" not in text, path


class TestApi:
    def test_no_token_is_401(self, client: TestClient, queue: Queue) -> None:
        for path in _apis(queue):
            assert client.get(path).status_code == 401, path

    @pytest.mark.parametrize("role", ["centre", "commissioner"])
    def test_others_are_403(self, client: TestClient, tokens: dict[str, str], queue: Queue, role: str) -> None:
        for path in _apis(queue):
            r = client.get(path, headers={"Authorization": f"Bearer {tokens[role]}"})
            assert r.status_code == 403 and "only QA staff" in r.json()["detail"], path
        writes: list[tuple[str, dict[str, Any]]] = [
            ("/api/v1/users", {"email": "x@y.test", "name": "X", "role": "staff"}),
            ("/api/v1/users/1/deactivate", {}),
            ("/api/v1/users/1/reactivate", {}),
            ("/api/v1/tokens", {"user_id": 1, "days": 10}),
            ("/api/v1/tokens/1/revoke", {}),
            (f"/api/v1/submissions/{queue.first}/mapping/confirm", {}),
            (
                f"/api/v1/submissions/{queue.first}/mapping/flags",
                {"submitted": "Cord", "tg263": "SpinalCord", "note": "x"},
            ),
        ]
        for path, body in writes:
            r = client.post(path, json=body, headers={"Authorization": f"Bearer {tokens[role]}"})
            assert r.status_code == 403, path

    def test_staff_get_200(self, client: TestClient, tokens: dict[str, str], queue: Queue) -> None:
        for path in _apis(queue):
            assert client.get(path, headers={"Authorization": f"Bearer {tokens['staff']}"}).status_code == 200, path


def _forms(engine: Engine, q: Queue) -> list[tuple[str, dict[str, str]]]:
    with Session(engine) as session:
        centre = session.exec(select(User).where(User.email == "phys@christie.test")).one()
        token = session.exec(select(ApiToken).where(ApiToken.user_id == centre.id)).first()
        assert token is not None
        return [
            (f"/submissions/{q.second}/review/override", {"level": "justified_variation", "justification": "agreed"}),
            (f"/submissions/{q.first}/review/mapping/confirm", {"note": ""}),
            (
                f"/submissions/{q.first}/review/mapping/flag",
                {"row": '["Cord", "SpinalCord"]', "note": "Cord is the spinal canal here"},
            ),
            ("/staff/users", {"email": "new@x.test", "name": "New", "role": "staff", "provider": ""}),
            (f"/staff/users/{centre.id}/tokens", {"label": "ci", "days": "30"}),
            (f"/staff/tokens/{token.id}/revoke", {"reason": ""}),
            (f"/staff/users/{centre.id}/deactivate", {"reason": ""}),
            (f"/staff/users/{centre.id}/reactivate", {"reason": ""}),
        ]


def _audit_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(AuditEvent)).one())


def test_every_staff_form_needs_the_csrf_token(
    client: TestClient, tokens: dict[str, str], queue: Queue, engine: Engine
) -> None:
    sign_in(client, tokens["staff"])
    forms = _forms(engine, queue)
    before = _audit_count(engine)
    for path, data in forms:
        for sent in ({}, {"csrf_token": "0" * 64}):
            r = client.post(path, data={**data, **sent}, follow_redirects=False)
            assert r.status_code == 403 and "reload it" in r.text, path
    assert _audit_count(engine) == before  # nothing was changed
    token = csrf(client)
    for path, data in forms:
        r = client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)
        assert r.status_code in (200, 303), (path, r.status_code, r.text[:300])
    assert _audit_count(engine) > before
