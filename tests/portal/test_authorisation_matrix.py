"""Every route of the app, API and pages, called as anonymous, centre A, centre B, commissioner and staff, against
the one declared policy (:data:`portal.policy.ROUTE_POLICY`). A route without a policy entry fails; no answer is a
5xx; centre B's answers never carry centre A's identifiers."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from benchmarks.cases import build_case
from flows.catalogue import build_reference, register_case
from models.auth import issue_token
from models.enums import Role
from models.settings import Settings
from models.tables import ApiToken, Provider, Submission, User
from portal.app import create_app
from portal.policy import ROUTE_POLICY, Access
from tests.portal.commissioning_world import seed_credentials

A, B = "the-christie", "leeds-teaching-hospitals"
ROLES = ("anonymous", "centre_a", "centre_b", "commissioner", "staff")
CASE = "lung-sabr-outlining-mini"
API_PREFIXES = ("/api/", "/health", "/openapi.json", "/dicomweb")

ALLOWED: dict[Access, set[str]] = {
    Access.PUBLIC: set(ROLES),
    Access.SIGNED_IN: {"centre_a", "centre_b", "commissioner", "staff"},
    Access.OWN_PROVIDER: {"centre_a", "commissioner", "staff"},
    Access.OWN_PROVIDER_STAFF: {"centre_a", "staff"},
    Access.CENTRE: {"centre_a", "centre_b"},
    Access.STAFF_OR_COMMISSIONER: {"commissioner", "staff"},
    Access.STAFF: {"staff"},
}
"""Which callers each access kind lets in, when the route's resource (if any) is centre A's."""


@dataclass
class World:
    client: dict[str, TestClient]
    bearer: dict[str, str]
    csrf: dict[str, str]
    values: dict[str, str]
    a_words: tuple[str, ...]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("notes.txt", "not DICOM")
    return buffer.getvalue()


def _request_kwargs(method: str, path: str, world: World) -> dict[str, Any]:
    """A plausible body for the writes, so a role check inside the route is reached."""
    if (method, path) == ("POST", "/api/v1/submissions"):
        return {"data": {"case": CASE, "provider": A}, "files": {"archive": ("a.zip", _zip(), "application/zip")}}
    if (method, path) == ("POST", "/api/v1/submissions/{submission_id}/override"):
        return {"json": {"level": "justified_variation", "justification": "authorisation matrix"}}
    if (method, path) == ("POST", "/api/v1/questionnaires/{technique}"):
        return {"json": {"provider": A, "answers": {}}}
    if (method, path) == ("POST", "/dicomweb/studies"):
        return {"params": {"provider": A}}
    if (method, path) == ("POST", "/sign-in"):
        return {"data": {"token": "rtqa_wrong"}}
    return {}


@pytest.fixture
def world(settings: Settings, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    seed_credentials(engine)
    built = build_case(CASE, tmp_path_factory.mktemp("cases"))
    register_case.fn(build_reference.fn(CASE, str(built.directory.parent)), actor="tests", database_url=str(engine.url))
    with Session(engine) as session:
        providers = {p.code: p for p in session.exec(select(Provider).where(col(Provider.code).in_([A, B])))}
        users = {
            "centre_a": User(email="a@centre.test", name="Centre A", role=Role.CENTRE, provider_id=providers[A].id),
            "centre_b": User(email="b@centre.test", name="Centre B", role=Role.CENTRE, provider_id=providers[B].id),
            "commissioner": User(email="c@nhs.test", name="Commissioner", role=Role.COMMISSIONER),
            "staff": User(email="s@qa.test", name="Staff", role=Role.STAFF),
        }
        session.add_all(users.values())
        session.flush()
        bearer = {k: issue_token(session, user=u, actor="tests") for k, u in users.items()}
        spare = User(email="spare@centre.test", name="Spare", role=Role.CENTRE, provider_id=providers[A].id)
        session.add(spare)
        session.flush()
        issue_token(session, user=spare, actor="tests", label="spare")
        spare_token_id = session.exec(select(ApiToken.id).where(ApiToken.label == "spare")).one()
        spare_id = spare.id
        sub_a = session.exec(
            select(Submission).where(Submission.provider_id == providers[A].id).order_by(col(Submission.id).desc())
        ).first()
        assert sub_a is not None
        a_words = (A, providers[A].name)
        sub_a_id = sub_a.id
        session.commit()
    app = create_app(settings, engine=engine)
    clients: dict[str, TestClient] = {}
    csrf: dict[str, str] = {}
    for role in ROLES:
        c = TestClient(app, follow_redirects=False)
        c.__enter__()
        clients[role] = c
        if role != "anonymous":
            assert c.post("/sign-in", data={"token": bearer[role]}).status_code == 303
            match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', c.get("/sign-in").text)
            assert match
            csrf[role] = match.group(1)
    values = {
        "provider_code": A,
        "submission_id": str(sub_a_id),
        "trial_code": "uk-lung-sabr",
        "technique": "sabr_lung",
        "case_code": CASE,
        "user_id": str(spare_id),  # a user of centre A whose deactivation touches no caller
        "token_id": str(spare_token_id),
        "key": "0",
        "name": "figure.png",
    }
    yield World(clients, bearer, csrf, values, a_words)
    for c in clients.values():
        c.__exit__(None, None, None)


def _routes(app: Any) -> list[tuple[str, str]]:
    out = set()
    for ctx in iter_route_contexts(app.routes):
        for method in ctx.methods or ():
            if method != "HEAD":
                out.add((method, ctx.path))
    # sign-out last: it ends the session the other page calls use
    return sorted(out, key=lambda mp: (mp == ("POST", "/sign-out"), mp[1], mp[0]))


def _call(world: World, role: str, method: str, path: str) -> Any:
    url = path
    for name in re.findall(r"{(\w+)}", path):
        if name not in world.values:
            pytest.fail(f"{method} {path}: the matrix test needs a sample value for {{{name}}}")
        url = url.replace("{" + name + "}", world.values[name])
    kwargs = _request_kwargs(method, path, world)
    headers: dict[str, str] = {}
    if role != "anonymous":
        if path.startswith(API_PREFIXES):
            headers["Authorization"] = f"Bearer {world.bearer[role]}"
        elif method != "GET":
            headers["X-CSRF-Token"] = world.csrf[role]
    if path.startswith(API_PREFIXES) and role != "anonymous":
        client = TestClient(world.client[role].app, follow_redirects=False)  # bearer only: no session cookie
    else:
        client = world.client[role]
    return client.request(method, url, headers=headers, **kwargs)


def _denied(response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code == 303 and response.headers.get("location", "").startswith("/sign-in?next=")


def test_every_route_has_a_policy(settings: Settings, engine: Engine) -> None:
    app = create_app(settings, engine=engine)
    missing = [f"{m} {p}" for m, p in _routes(app) if (m, p) not in ROUTE_POLICY]
    assert missing == [], f"routes without an entry in portal.policy.ROUTE_POLICY: {missing}"
    stale = [f"{m} {p}" for m, p in ROUTE_POLICY if (m, p) not in set(_routes(app))]
    assert stale == [], f"policy entries for routes that no longer exist: {stale}"


@pytest.mark.slow
def test_every_route_answers_every_role_as_declared(world: World) -> None:
    app = world.client["staff"].app
    wrong: list[str] = []
    checked = 0
    for method, path in _routes(app):
        access = ROUTE_POLICY[(method, path)]
        for role in ROLES:
            response = _call(world, role, method, path)
            checked += 1
            label = f"{method} {path} as {role}: {response.status_code}"
            if response.status_code >= 500:
                wrong.append(f"{label} (server error)")
                continue
            should = role in ALLOWED[access]
            if should and _denied(response) and (method, path) != ("POST", "/sign-in"):
                wrong.append(f"{label}, expected to be let in ({access.value})")
            elif not should and not _denied(response):
                wrong.append(f"{label}, expected a refusal ({access.value})")
            if role == "centre_b" and response.status_code < 400:
                body = response.text
                leaked = [w for w in world.a_words if w in body]
                if leaked:
                    wrong.append(f"{label}: centre B sees centre A's {leaked}")
    assert checked >= 5 * len(ROUTE_POLICY)
    assert wrong == [], "\n".join(wrong)
