"""QA staff start flows from the pages (``/staff/flows``) and follow the run on its page; the forms carry the page's
CSRF token, and the starts are the API's (same checks, same in-process runs, same audit)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from flows.triggers import TRIGGERABLE
from models.settings import Settings
from models.tables import AuditEvent, BenchmarkCase
from portal.app import create_app
from portal.pages.staff_flows import form_fields, parameters_from_form
from tests.portal.staff_util import csrf, sign_in

CASE = "lung-sabr-outlining-mini"


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The app with flows run in-process whatever the environment says about a Prefect server."""
    inline = settings.model_copy(update={"flow_runs": "inline"})
    with TestClient(create_app(inline, engine=engine)) as c:
        yield c


@pytest.fixture
def staff(client: TestClient, tokens: dict[str, str]) -> str:
    sign_in(client, tokens["staff"])
    return csrf(client, "/staff/flows")


def _run_id(location: str) -> str:
    match = re.fullmatch(r"/staff/flows/runs/([0-9a-f-]{36})", location)
    assert match, location
    return match.group(1)


def _finished_page(client: TestClient, run_id: str, timeout: float = 120) -> str:
    """The run's page once the run has finished (the page's script polls the API the same way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/api/v1/flows/runs/{run_id}").json()["state"]  # the session cookie is enough to read
        if state in ("COMPLETED", "FAILED"):
            return client.get(f"/staff/flows/runs/{run_id}").text
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not finished after {timeout} s")


def test_every_triggerable_flow_has_a_form(client: TestClient, staff: str) -> None:
    text = client.get("/staff/flows").text
    assert '<a href="/staff/flows" aria-current="page">Flows</a>' in text
    for name in TRIGGERABLE:
        section = text[text.index(f'<section class="flow" id="flow-{name}"') :]
        section = section[: section.index("</section>")]
        assert f'action="/staff/flows/{name}/runs"' in section
        assert f'name="csrf_token" value="{staff}"' in section
    rescore = text[text.index('id="flow-rescore-protocol"') :]
    assert 'name="protocol_id" type="text"' in rescore and 'name="version" type="text"' in rescore
    batch = text[text.index('id="flow-score-batch"') :]
    batch = batch[: batch.index("</section>")]
    assert 'name="submission_ids" type="text"' in batch and 'name="case" type="text"' in batch
    assert " required" not in batch  # neither: every unfinished submission
    assert {"rescore-case", "rescore-protocol", "publish-case", "expire-credentials"} <= set(TRIGGERABLE)


@pytest.mark.parametrize("who", ["centre", "commissioner"])
def test_only_staff(client: TestClient, tokens: dict[str, str], who: str) -> None:
    sign_in(client, tokens[who])
    token = csrf(client, "/sign-in")
    assert client.get("/staff/flows").status_code == 403
    assert "/staff/flows" not in client.get("/sign-in").text  # not in their navigation
    refused = client.post("/staff/flows/expire-credentials/runs", data={"csrf_token": token}, follow_redirects=False)
    assert refused.status_code == 403


def test_a_start_without_the_csrf_token_is_refused(client: TestClient, staff: str, engine: Engine) -> None:
    response = client.post("/staff/flows/expire-credentials/runs", data={}, follow_redirects=False)
    assert response.status_code == 403
    with Session(engine) as session:
        assert session.exec(select(AuditEvent).where(AuditEvent.action == "flow.triggered")).first() is None


def test_expire_credentials_from_the_page(client: TestClient, staff: str, engine: Engine) -> None:
    response = client.post("/staff/flows/expire-credentials/runs", data={"csrf_token": staff}, follow_redirects=False)
    assert response.status_code == 303, response.text
    run_id = _run_id(response.headers["location"])
    page = _finished_page(client, run_id)
    assert f"<code data-run-id>{run_id}</code>" in page
    assert '<span class="status" data-run-state aria-live="polite">Completed</span>' in page
    assert "&#34;lapsed&#34;: 0" in page or '"lapsed": 0' in html.unescape(page)
    assert 'http-equiv="refresh"' not in page  # a finished run is not followed any more
    with Session(engine) as session:
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "flow.triggered")).all()
    assert (event.actor, event.subject_id, event.after["flow"]) == ("qa@rttqa.test", run_id, "expire-credentials")


def test_an_unfinished_run_page_follows_the_api(client: TestClient, staff: str) -> None:
    """While a run has not finished its page points its script at the API record (and refreshes without script)."""
    client.get("/api/v1/flows")  # makes the tracker
    tracker = client.app.state.flow_runs  # type: ignore[attr-defined]
    with tracker._run_lock:  # hold the in-process runner: the run stays queued
        response = client.post(
            "/staff/flows/expire-credentials/runs", data={"csrf_token": staff}, follow_redirects=False
        )
        run_id = _run_id(response.headers["location"])
        page = client.get(f"/staff/flows/runs/{run_id}").text
        assert f'data-run="/api/v1/flows/runs/{run_id}" data-finished="no"' in page
        assert '<meta http-equiv="refresh" content="3">' in page and "/static/staff_flows.js" in page
        assert client.get(f"/api/v1/flows/runs/{run_id}").json()["state"] in ("SCHEDULED", "RUNNING")
    assert "Completed" in _finished_page(client, run_id)


@pytest.mark.parametrize(
    ("flow", "data", "message"),
    [
        ("rescore-case", {"case": "no-version"}, "rescore-case not started: case: String should match pattern"),
        ("rescore-case", {"case": "nope@1.0"}, "unknown case nope@1.0: publish or import the new version first"),
        ("rescore-protocol", {"protocol_id": "nope", "version": "1.0"}, "unknown protocol id &#39;nope&#39;"),
        ("credential-submission", {"submission_id": "seven"}, "submission_id: Input should be a valid integer"),
        ("publish-case", {"case_code": "no-such-case"}, "publish-case not started:"),
        ("score-batch", {"submission_ids": "3 seven"}, "submission_ids.1: Input should be a valid integer"),
        ("score-batch", {"submission_ids": "12, 13"}, "submission 12, 13 does not exist"),
    ],
)
def test_bad_parameters_come_back_on_the_page(
    client: TestClient, staff: str, engine: Engine, flow: str, data: dict[str, str], message: str
) -> None:
    response = client.post(f"/staff/flows/{flow}/runs", data={**data, "csrf_token": staff}, follow_redirects=False)
    assert response.status_code == 422
    text = response.text
    error = text[text.index('<p class="error" role="alert">') :].split("</p>")[0]
    assert message in error and "\n" not in error
    section = text[text.index(f'id="flow-{flow}"') :]
    for value in data.values():
        assert f'value="{html.escape(value)}"' in section[: section.index("</section>")]  # what was typed stays
    with Session(engine) as session:
        assert session.exec(select(AuditEvent).where(AuditEvent.action == "flow.triggered")).first() is None


def test_unknown_flow(client: TestClient, staff: str) -> None:
    response = client.post("/staff/flows/no-such-flow/runs", data={"csrf_token": staff}, follow_redirects=False)
    assert response.status_code == 404
    assert client.get("/staff/flows/runs/00000000-0000-4000-8000-000000000000").status_code == 404


def test_form_values_become_parameters() -> None:
    remind = TRIGGERABLE["remind-expiring"]
    [days] = form_fields(remind.parameters)
    assert (days.name, days.kind, days.required, days.minimum, days.maximum) == (
        "within_days",
        "number",
        False,
        0,
        3650,
    )
    assert parameters_from_form(remind, {"within_days": " "}) == {}  # blank optional: the flow's default
    assert parameters_from_form(remind, {"within_days": "30", "extra": "x"}) == {"within_days": "30"}
    assert remind.parameters.model_validate(parameters_from_form(remind, {"within_days": "30"})).within_days == 30
    batch = TRIGGERABLE["score-batch"]
    typed = parameters_from_form(batch, {"submission_ids": " 3, 7 12 ", "case": ""})
    assert typed == {"submission_ids": "3, 7 12"}  # blank case left out
    assert batch.parameters.model_validate(typed).submission_ids == [3, 7, 12]
    publish = TRIGGERABLE["publish-case"]
    assert parameters_from_form(publish, {}) == {"case_code": ""}  # a required field is sent, to be refused by name


@pytest.mark.slow
def test_publish_a_case_from_the_page(client: TestClient, staff: str, engine: Engine) -> None:
    response = client.post(
        "/staff/flows/publish-case/runs", data={"case_code": CASE, "csrf_token": staff}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    page = html.unescape(_finished_page(client, _run_id(response.headers["location"]), timeout=300))
    assert "Completed" in page and f'"case_code": "{CASE}"' in page
    with Session(engine) as session:
        case = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == CASE)).one()
    assert f'"case_id": {case.id}' in page
