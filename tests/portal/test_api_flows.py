"""Staff start flows through the API: who may, what is refused, and in-process runs whose state can be followed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import Deviation, simulate_submission
from flows.catalogue import build_reference, register_case
from flows.credentialing import store_submission
from flows.triggers import TRIGGERABLE
from models.settings import Settings
from models.tables import AuditEvent, Submission
from portal.app import create_app
from tests.portal.conftest import OWN

CASE = "lung-sabr-outlining-mini"
FLOWS = "/api/v1/flows"


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The app with flows run in-process whatever the environment says about a Prefect server."""
    inline = settings.model_copy(update={"flow_runs": "inline"})
    with TestClient(create_app(inline, engine=engine)) as c:
        yield c


def _auth(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def _finished(client: TestClient, headers: dict[str, str], status_url: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(status_url, headers=headers).json()
        if body["state"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{status_url} not finished after {timeout} s")


@pytest.mark.parametrize("who", ["centre", "commissioner"])
def test_only_staff(client: TestClient, tokens: dict[str, str], who: str) -> None:
    headers = _auth(tokens, who)
    for response in (
        client.get(FLOWS, headers=headers),
        client.post(f"{FLOWS}/expire-credentials/runs", json={}, headers=headers),
        client.post(f"{FLOWS}/no-such-flow/runs", json={}, headers=headers),
        client.get(f"{FLOWS}/runs/00000000-0000-0000-0000-000000000000", headers=headers),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["detail"] == f"only QA staff may do this, not {who} users"
    assert client.get(FLOWS).status_code == 401


def test_the_triggerable_flows_are_listed(client: TestClient, tokens: dict[str, str]) -> None:
    response = client.get(FLOWS, headers=_auth(tokens, "staff"))
    assert response.status_code == 200
    flows = {f["name"]: f for f in response.json()}
    assert (
        set(flows)
        == set(TRIGGERABLE)
        >= {
            "credential-submission",
            "expire-credentials",
            "publish-case",
            "remind-expiring",
            "rescore-case",
            "rescore-protocol",
            "score-batch",
        }
    )
    assert flows["rescore-case"]["parameters"]["required"] == ["case"]
    assert flows["rescore-protocol"]["parameters"]["required"] == ["protocol_id", "version"]
    assert flows["publish-case"]["parameters"]["required"] == ["case_code"]
    assert flows["credential-submission"]["deployment"] == "credential-submission/credential-submission"
    batch = flows["score-batch"]
    assert batch["deployment"] == "score-batch/score-batch" and "required" not in batch["parameters"]
    assert set(batch["parameters"]["properties"]) == {"submission_ids", "case"}  # ids only, no cluster or setting
    assert {f["runs"] for f in flows.values()} == {"in-process"}


def test_unknown_flow_and_run(client: TestClient, tokens: dict[str, str]) -> None:
    headers = _auth(tokens, "staff")
    response = client.post(f"{FLOWS}/rescore-everything/runs", json={}, headers=headers)
    assert response.status_code == 404
    assert response.json()["detail"].startswith("no flow 'rescore-everything' can be started; flows: ")
    response = client.get(f"{FLOWS}/runs/6d3c2b1a-0000-4000-8000-000000000000", headers=headers)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("flow", "body", "detail"),
    [
        ("publish-case", {}, "parameter 'case_code': Field required"),
        ("publish-case", {"case_code": CASE, "force": True}, "parameter 'force': Extra inputs are not permitted"),
        ("publish-case", {"case_code": "no-such-case"}, "no-such-case"),
        ("credential-submission", {"submission_id": "seven"}, "parameter 'submission_id': Input should be"),
        ("credential-submission", {"submission_id": 999}, "submission 999 does not exist"),
        ("remind-expiring", {"within_days": -1}, "parameter 'within_days': Input should be greater than or equal"),
        ("expire-credentials", {"as_of": "2030-01-01"}, "parameter 'as_of': Extra inputs are not permitted"),
        ("rescore-case", {"case": "no-version"}, "parameter 'case': String should match pattern"),
        ("rescore-case", {"case": "nope@1.0"}, "unknown case nope@1.0: publish or import the new version first"),
        ("rescore-protocol", {"protocol_id": "uk-lung-sabr", "version": "9.9"}, "has no version '9.9'"),
        ("rescore-protocol", {"protocol_id": "nope", "version": "1.0"}, "unknown protocol id 'nope'"),
        ("rescore-protocol", {"protocol_id": "uk-lung-sabr"}, "parameter 'version': Field required"),
        ("score-batch", {}, "no submission is waiting for its remaining steps"),
        ("score-batch", {"submission_ids": []}, "parameter 'submission_ids': List should have at least 1 item"),
        ("score-batch", {"submission_ids": [999, 998]}, "submission 999, 998 does not exist"),
        ("score-batch", {"submission_ids": [4, 4]}, "a submission id is given twice"),
        ("score-batch", {"submission_ids": [0]}, "submission ids are positive integers"),
        ("score-batch", {"submission_ids": [4], "case": f"{CASE}@1.0"}, "give submission_ids or case, not both"),
        ("score-batch", {"case": "nope@1.0"}, "unknown case nope@1.0"),
        ("score-batch", {"address": "tcp://10.0.0.5:8786"}, "parameter 'address': Extra inputs are not permitted"),
        ("score-batch", {"workers": 8}, "parameter 'workers': Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(
    client: TestClient, tokens: dict[str, str], engine: Engine, flow: str, body: dict[str, Any], detail: str
) -> None:
    response = client.post(f"{FLOWS}/{flow}/runs", json=body, headers=_auth(tokens, "staff"))
    assert response.status_code == 422, response.text
    message = response.json()["detail"]
    assert isinstance(message, str) and "\n" not in message and detail in message
    with Session(engine) as session:  # nothing started, nothing audited
        assert session.exec(select(AuditEvent).where(AuditEvent.action == "flow.triggered")).first() is None


@pytest.fixture
def received(settings: Settings, tmp_path: Path) -> tuple[int, str]:
    """A simulated submission stored as received (as an upload leaves it), and the outcome the simulator expects."""
    built: BuiltCase = build_case(CASE, settings.cases_dir)
    reference = build_reference.fn(CASE, str(settings.cases_dir))
    register_case.fn(reference, actor="tests", database_url=settings.resolved_database_url)
    sim = simulate_submission(
        built, provider=OWN, deviations=[Deviation.parse("margin_mm:PTV:8")], seed=0, out_dir=tmp_path / "sim"
    )
    stored = store_submission(
        str(sim.directory),
        provider_code=OWN,
        case_code=CASE,
        case_version=None,
        actor="tests",
        database_url=settings.resolved_database_url,
        data_dir=str(settings.data_dir),
    )
    return stored.submission_id, sim.expected_outcome.value


def test_a_received_submission_runs_in_process(
    client: TestClient, tokens: dict[str, str], engine: Engine, received: tuple[int, str]
) -> None:
    sid, expected = received
    headers = _auth(tokens, "staff")
    response = client.post(f"{FLOWS}/credential-submission/runs", json={"submission_id": sid}, headers=headers)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["mode"] == "in-process" and started["state"] in ("SCHEDULED", "RUNNING", "COMPLETED")
    assert started["parameters"] == {"submission_id": sid}
    run = _finished(client, headers, started["status_url"])
    assert run["state"] == "COMPLETED", run
    assert run["result"]["submission_id"] == sid and run["result"]["status"] == "decided"
    assert run["result"]["outcome"] == expected == "unacceptable_variation"
    assert run["finished_at"] >= run["started_at"] >= run["created_at"]
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None and sub.status.value == "decided"
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "flow.triggered")).all()
        steps = session.exec(select(AuditEvent.actor).where(AuditEvent.action == "outcome.decided")).all()
    assert event.actor == "qa@rttqa.test" and event.subject_id == started["id"]
    assert event.after == {"flow": "credential-submission", "parameters": {"submission_id": sid}, "mode": "in-process"}
    assert steps == ["qa@rttqa.test"]  # the steps are done in the name of who started them
    again = client.post(f"{FLOWS}/credential-submission/runs", json={"submission_id": sid}, headers=headers)
    assert again.status_code == 422 and "is decided" in again.json()["detail"]


def test_expire_credentials_runs_in_process(client: TestClient, tokens: dict[str, str]) -> None:
    headers = _auth(tokens, "staff")
    response = client.post(f"{FLOWS}/expire-credentials/runs", headers=headers)  # no body: no parameters
    assert response.status_code == 202, response.text
    run = _finished(client, headers, response.json()["status_url"])
    assert run["state"] == "COMPLETED" and run["result"]["lapsed"] == 0 and run["flow"] == "expire-credentials"


def test_a_decided_submission_is_rescored_in_process(
    client: TestClient,
    tokens: dict[str, str],
    engine: Engine,
    settings: Settings,
    received: tuple[int, str],
    tmp_path: Path,
) -> None:
    """Staff rescore a protocol from the API: the decided submission gets a second scoring run (against 1.1) in
    the name of who started it; a second rescore finds nothing left to do."""
    from models.scoring_runs import runs_of
    from tests.flows.rescore_world import write_protocol_version

    sid, _ = received
    write_protocol_version(tmp_path, version="1.1", changes={}, data_dir=settings.data_dir)
    headers = _auth(tokens, "staff")
    decided = client.post(f"{FLOWS}/credential-submission/runs", json={"submission_id": sid}, headers=headers)
    assert _finished(client, headers, decided.json()["status_url"])["state"] == "COMPLETED"
    body = {"protocol_id": "uk-lung-sabr", "version": "1.1"}
    response = client.post(f"{FLOWS}/rescore-protocol/runs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    run = _finished(client, headers, response.json()["status_url"])
    assert run["state"] == "COMPLETED", run
    assert run["result"]["target"] == "protocol uk-lung-sabr@1.1"
    assert [(r["submission_id"], r["status"]) for r in run["result"]["results"]] == [(sid, "rescored")]
    with Session(engine) as session:
        assert [(r.protocol_version, r.created_by) for r in runs_of(session, sid)] == [
            ("1.0", "qa@rttqa.test"),
            ("1.1", "qa@rttqa.test"),
        ]
    again = _finished(
        client, headers, client.post(f"{FLOWS}/rescore-protocol/runs", json=body, headers=headers).json()["status_url"]
    )
    assert again["state"] == "COMPLETED" and again["result"]["results"] == []


def test_a_batch_of_a_case_runs_in_process(
    client: TestClient, tokens: dict[str, str], engine: Engine, settings: Settings, received: tuple[int, str]
) -> None:
    """Staff start score-batch for a case: its received submission is decided in the name of who started it; with a
    server the deployment would get the case's submission ids, resolved at the start."""
    sid, expected = received
    entry = TRIGGERABLE["score-batch"]
    body = {"case": f"{CASE}@1.0"}
    assert entry.deployment_parameters(settings, entry.parameters.model_validate(body), "qa@rttqa.test") == {
        "submission_ids": [sid],
        "actor": "qa@rttqa.test",
    }
    headers = _auth(tokens, "staff")
    response = client.post(f"{FLOWS}/score-batch/runs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["mode"] == "in-process" and started["parameters"] == body
    run = _finished(client, headers, started["status_url"])
    assert run["state"] == "COMPLETED", run
    [summary] = run["result"]["submissions"]
    assert (summary["submission_id"], summary["status"], summary["outcome"]) == (sid, "decided", expected)
    with Session(engine) as session:
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "flow.triggered")).all()
        steps = session.exec(select(AuditEvent.actor).where(AuditEvent.action == "outcome.decided")).all()
    assert event.after == {"flow": "score-batch", "parameters": body, "mode": "in-process"}
    assert steps == ["qa@rttqa.test"]
    for again, detail in (
        (body, f"case {CASE}@1.0 has no submission waiting for its remaining steps"),
        ({"submission_ids": [sid]}, f"submission {sid} (decided) has no steps to run"),
    ):
        refused = client.post(f"{FLOWS}/score-batch/runs", json=again, headers=headers)
        assert refused.status_code == 422 and detail in refused.json()["detail"], refused.text
