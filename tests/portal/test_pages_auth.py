"""Page sign-in: an API token becomes a session cookie; CSRF on every cookie-authenticated write; sign-out ends it;
no page or asset is fetched from outside the app."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.auth import WEB_SESSION_LABEL
from models.tables import ApiToken
from portal.deps import SESSION_COOKIE

PORTAL = Path(__file__).resolve().parents[2] / "portal"


def _sign_in(client: TestClient, token: str, next_path: str = "") -> None:
    r = client.post("/sign-in", data={"token": token, "next": next_path}, follow_redirects=False)
    assert r.status_code == 303, r.text


def _csrf(client: TestClient, page: str = "/sign-in") -> str:
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get(page).text)
    assert match, "signed-in pages carry the CSRF token"
    return match.group(1)


def test_pages_need_sign_in_and_keep_the_target(client: TestClient) -> None:
    r = client.get("/?x=1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in?next=/%3Fx%3D1"


def test_sign_in_sets_a_hardened_session_cookie_not_the_api_token(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post("/sign-in", data={"token": tokens["centre"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/centre"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain http in tests; https sets it
    assert tokens["centre"] not in cookie


def test_session_cookie_is_secure_behind_https(settings, engine: Engine, tokens: dict[str, str]) -> None:
    from portal.app import create_app

    with TestClient(create_app(settings, engine=engine), base_url="https://rtqa.test") as c:
        r = c.post("/sign-in", data={"token": tokens["staff"]}, follow_redirects=False)
    assert "Secure" in r.headers["set-cookie"]


def test_wrong_token_gives_a_readable_error(client: TestClient, tokens: dict[str, str]) -> None:
    for bad in ("rtqa_nope", tokens["expired"], ""):
        r = client.post("/sign-in", data={"token": bad})
        assert r.status_code == 401
        assert "unknown, revoked or expired" in r.text
        assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_next_never_leaves_the_site(client: TestClient, tokens: dict[str, str]) -> None:
    for target in ("//evil.test/x", "https://evil.test", "/\\evil.test"):
        r = client.post("/sign-in", data={"token": tokens["staff"], "next": target}, follow_redirects=False)
        assert r.headers["location"] == "/staff/queue"
    r = client.post("/sign-in", data={"token": tokens["staff"], "next": "/trials"}, follow_redirects=False)
    assert r.headers["location"] == "/trials"


def test_cookie_writes_need_the_csrf_token(client: TestClient, tokens: dict[str, str]) -> None:
    _sign_in(client, tokens["staff"])
    assert client.get("/api/v1/me").json()["role"] == "staff"  # reads need no CSRF token
    body = {"level": "per_protocol", "justification": "reviewed"}
    r = client.post("/api/v1/submissions/999999/override", json=body)
    assert r.status_code == 403 and "reload it" in r.json()["detail"]
    r = client.post("/api/v1/submissions/999999/override", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    r = client.post("/api/v1/submissions/999999/override", json=body, headers={"X-CSRF-Token": _csrf(client)})
    assert r.status_code == 404  # past authentication and CSRF: the submission does not exist


def test_bearer_requests_need_no_csrf_token(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(
        "/api/v1/submissions/999999/override",
        json={"level": "per_protocol", "justification": "reviewed"},
        headers={"Authorization": f"Bearer {tokens['staff']}"},
    )
    assert r.status_code == 404


def test_sign_out_revokes_the_session_but_not_the_api_token(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    _sign_in(client, tokens["commissioner"])
    csrf = _csrf(client)
    assert client.post("/sign-out", data={"csrf_token": "wrong"}).status_code == 403
    r = client.post("/sign-out", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    with Session(engine) as session:
        rows = session.exec(select(ApiToken).where(ApiToken.label == WEB_SESSION_LABEL)).all()
        assert len(rows) == 1 and rows[0].revoked_at is not None
    assert client.get("/api/v1/me").status_code == 401
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['commissioner']}"})
    assert r.status_code == 200


def test_page_errors_render_as_pages_and_api_errors_stay_json(client: TestClient, tokens: dict[str, str]) -> None:
    _sign_in(client, tokens["centre"])
    r = client.get("/no-such-page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    r = client.get("/api/v1/trials/none/eligible-providers")
    assert r.status_code == 403 and r.headers["content-type"] == "application/json"


def test_api_docs_are_served_from_vendored_files(client: TestClient) -> None:
    page = client.get("/docs").text
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"url: '([^']+)'", page):
        assert asset.startswith("/"), f"/docs loads {asset} from outside the app"
        assert client.get(asset).status_code == 200, asset


def test_no_template_or_asset_loads_anything_from_outside() -> None:
    external = re.compile(r"""(?:src|href|url\()\s*=?\s*["']?(?:https?:)?//""", re.IGNORECASE)
    for path in [*PORTAL.glob("templates/**/*.html"), *PORTAL.glob("static/**/*.*")]:
        if path.suffix in {".html", ".css", ".js"} and "vendor" not in path.parts:
            assert not external.search(path.read_text()), f"{path.relative_to(PORTAL)} loads an external asset"


def test_a_token_records_its_last_use(client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
    from models.auth import hash_token

    def last_used() -> object:
        with Session(engine) as session:
            row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == hash_token(tokens["staff"]))).one()
            return row.last_used_at

    assert last_used() is None
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['staff']}"}).status_code == 200
    first = last_used()
    assert first is not None
    client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['staff']}"})
    assert last_used() == first  # written at most once a minute
