"""The staff review page and its API twins: outcome, criteria, structure-name mapping (confirm, flag) and override,
an earlier attempt needing explicit confirmation."""

from __future__ import annotations

import html
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.tables import AuditEvent, Outcome
from tests.portal.staff_util import Queue, build_queue, csrf, sign_in


@pytest.fixture
def queue(engine: Engine, tokens: dict[str, str]) -> Queue:
    return build_queue(engine)


@pytest.fixture
def staff(client: TestClient, tokens: dict[str, str], queue: Queue) -> str:
    """The client signed in as staff; returns the CSRF token."""
    sign_in(client, tokens["staff"])
    return csrf(client)


def _text(client: TestClient, sid: int, query: str = "") -> str:
    r = client.get(f"/submissions/{sid}/review{query}")
    assert r.status_code == 200, r.text
    return html.unescape(r.text)


def _outcomes(engine: Engine, sid: int) -> list[tuple[str, bool]]:
    with Session(engine) as session:
        rows = session.exec(select(Outcome).where(Outcome.submission_id == sid).order_by(Outcome.id)).all()  # type: ignore[arg-type]
        return [(o.level.value, o.is_current) for o in rows]


def _api(client: TestClient, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


class TestReviewPage:
    def test_outcome_reasons_and_report_link(self, client: TestClient, staff: str, queue: Queue) -> None:
        text = _text(client, queue.second)
        assert 'data-outcome="unacceptable_variation"' in text
        assert "Dice of PTV 0.65 is below the acceptable level 0.7" in text
        assert f'href="/submissions/{queue.second}/report"' in text
        assert "Attempt</dt><dd>2 of 2" in text and "earlier attempt" not in text
        assert "rescor" not in text.lower()

    def test_criteria_with_levels_and_the_level_reached(self, client: TestClient, staff: str, queue: Queue) -> None:
        text = _text(client, queue.planning)
        row = text[text.index("PTV V100%") :][:600]
        assert "87.5 %" in row and ">= 95.0 %" in row and ">= 90.0 %" in row
        assert "unacceptable variation" in row

    def test_contour_metrics_pivoted(self, client: TestClient, staff: str, queue: Queue) -> None:
        text = _text(client, queue.second)
        assert "<th>dice</th><th>hd95 (mm)</th>" in text
        assert "<tr><td>SpinalCord</td><td>Cord</td>" in text

    def test_the_mapping_with_reasons(self, client: TestClient, staff: str, queue: Queue) -> None:
        text = _text(client, queue.second)
        table = text[text.index('<table class="mapping">') :]
        table = table[: table.index("</table>")]
        rows = [" ".join(r.split()) for r in table.split("<tr")[2:]]
        assert len(rows) == 5
        assert "<td>Cord</td> <td>SpinalCord</td> <td>synonym of SpinalCord</td>" in rows[0]
        assert "<td>PTV</td> <td>PTV</td> <td>exact</td>" in rows[1]
        assert "<td>Zebra</td> <td>—</td>" in rows[2] and "unmatched" in rows[2]
        assert "<td>Lung</td> <td>—</td>" in rows[3] and "could be any of Lung_L, Lung_R" in rows[3]
        assert "<td>—</td> <td>Heart</td>" in rows[4] and "no submitted structure matches" in rows[4]
        assert "not confirmed" in text

    def test_a_received_submission_cannot_be_overridden(
        self, client: TestClient, staff: str, queue: Queue, engine: Engine
    ) -> None:
        text = _text(client, queue.received)
        assert "Only a decided submission's outcome can be overridden; this one is received" in text
        assert "No structure names to review" in text
        r = client.post(
            f"/submissions/{queue.received}/review/override",
            data={"level": "per_protocol", "justification": "x", "csrf_token": staff},
        )
        assert r.status_code == 409 and "only a decided outcome can be overridden" in r.text
        r = client.post(f"/submissions/{queue.received}/review/mapping/confirm", data={"csrf_token": staff})
        assert r.status_code == 409 and "has no structure-name mapping to confirm" in r.text

    def test_unknown_submission_is_404(self, client: TestClient, staff: str) -> None:
        assert client.get("/submissions/999999/review").status_code == 404
        r = client.post(
            "/submissions/999999/review/override",
            data={"level": "per_protocol", "justification": "x", "csrf_token": staff},
        )
        assert r.status_code == 404


class TestOverrideOnThePage:
    def test_the_latest_attempt_is_overridden_and_shown(
        self, client: TestClient, staff: str, queue: Queue, engine: Engine
    ) -> None:
        text = _text(client, queue.second)
        assert "I confirm overriding an earlier attempt" not in text
        r = client.post(
            f"/submissions/{queue.second}/review/override",
            data={"level": "justified_variation", "justification": "3 mm margin agreed", "csrf_token": staff},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert r.headers["location"] == f"/submissions/{queue.second}/review?done=overridden#outcome"
        text = _text(client, queue.second, "?done=overridden")
        assert "The outcome was overridden" in text
        assert 'data-outcome="justified_variation"' in text and "3 mm margin agreed" in text
        assert _outcomes(engine, queue.second) == [("unacceptable_variation", False), ("justified_variation", True)]

    def test_an_earlier_attempt_is_refused_without_the_checkbox(
        self, client: TestClient, staff: str, queue: Queue, engine: Engine
    ) -> None:
        text = _text(client, queue.first)
        assert "I confirm overriding an earlier attempt (attempt 1 of 2)" in text
        r = client.post(
            f"/submissions/{queue.first}/review/override",
            data={"level": "justified_variation", "justification": "agreed", "csrf_token": staff},
        )
        assert r.status_code == 409
        assert "Not overridden: this is attempt 1 of 2, not the provider's latest attempt at this case" in (
            html.unescape(r.text)
        )
        assert ">agreed</textarea>" in r.text  # what was typed is kept
        assert _outcomes(engine, queue.first) == [("unacceptable_variation", True)]

    def test_an_earlier_attempt_with_the_checkbox_shows_as_such(
        self, client: TestClient, staff: str, queue: Queue, engine: Engine
    ) -> None:
        r = client.post(
            f"/submissions/{queue.first}/review/override",
            data={
                "level": "justified_variation",
                "justification": "agreed",
                "confirm_not_latest": "yes",
                "csrf_token": staff,
            },
            follow_redirects=False,
        )
        assert r.status_code == 303
        text = _text(client, queue.first)
        assert "earlier attempt (1 of 2) overridden" in text
        assert "an earlier attempt (attempt 1 of 2) overridden with the reviewer's confirmation" in text
        assert _outcomes(engine, queue.first) == [("unacceptable_variation", False), ("justified_variation", True)]
        # the latest attempt is untouched
        assert _outcomes(engine, queue.second) == [("unacceptable_variation", True)]

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"level": "per_protocol", "justification": "   "}, "an override needs a justification"),
            ({"level": "", "justification": "agreed"}, "Choose the outcome level"),
            ({"level": "fine", "justification": "agreed"}, "Choose the outcome level"),
        ],
    )
    def test_bad_input_is_told_on_the_page(
        self, client: TestClient, staff: str, queue: Queue, engine: Engine, data: dict[str, str], message: str
    ) -> None:
        r = client.post(f"/submissions/{queue.second}/review/override", data={**data, "csrf_token": staff})
        assert r.status_code == 422 and message in r.text
        assert _outcomes(engine, queue.second) == [("unacceptable_variation", True)]


class TestOverrideApi:
    def test_an_earlier_attempt_needs_confirm_not_latest(
        self, client: TestClient, tokens: dict[str, str], queue: Queue, engine: Engine
    ) -> None:
        path = f"/api/v1/submissions/{queue.first}/override"
        body = {"level": "per_protocol", "justification": "agreed"}
        r = _api(client, tokens["staff"], "POST", path, body)
        assert r.status_code == 409
        assert r.json()["detail"] == (
            f"submission {queue.first} is attempt 1 of 2, not the provider's latest attempt at this case: overriding "
            'an earlier attempt needs explicit confirmation; send "confirm_not_latest": true to override it'
        )
        assert _outcomes(engine, queue.first) == [("unacceptable_variation", True)]
        r = _api(client, tokens["staff"], "POST", path, {**body, "confirm_not_latest": True})
        assert r.status_code == 201
        new = r.json()["outcomes"][-1]
        assert new["level"] == "per_protocol" and new["current"]
        assert "an earlier attempt (attempt 1 of 2) overridden with the reviewer's confirmation" in new["reasons"]

    def test_the_latest_attempt_needs_no_confirmation(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        r = _api(
            client,
            tokens["staff"],
            "POST",
            f"/api/v1/submissions/{queue.second}/override",
            {"level": "per_protocol", "justification": "agreed"},
        )
        assert r.status_code == 201 and r.json()["outcomes"][-1]["reasons"] == ["override by qa@rttqa.test: agreed"]


class TestMapping:
    def test_confirm_on_the_page_then_read_it_from_the_api(
        self, client: TestClient, staff: str, tokens: dict[str, str], queue: Queue, engine: Engine
    ) -> None:
        r = client.post(
            f"/submissions/{queue.second}/review/mapping/confirm",
            data={"note": "names checked", "csrf_token": staff},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"].endswith("?done=confirmed#mapping")
        text = _text(client, queue.second, "?done=confirmed")
        assert "was confirmed" in text and "confirmed</span> by qa@rttqa.test" in text
        body = _api(client, tokens["staff"], "GET", f"/api/v1/submissions/{queue.second}/mapping").json()
        assert body["confirmation"]["by"] == "qa@rttqa.test" and body["confirmation"]["note"] == "names checked"
        assert body["confirmation"]["matches_current_mapping"] is True
        assert [(m["submitted"], m["tg263"], m["kind"]) for m in body["mapping"]] == [
            ("Cord", "SpinalCord", "matched"),
            ("PTV", "PTV", "matched"),
            ("Zebra", None, "unmatched"),
            ("Lung", None, "ambiguous"),
            (None, "Heart", "missing"),
        ]
        with Session(engine) as session:
            event = session.exec(select(AuditEvent).where(AuditEvent.action == "mapping.confirmed")).one()
            assert event.after is not None and len(event.after["mapping"]) == 5
            assert (event.actor, event.subject_id, event.reason) == (
                "qa@rttqa.test",
                str(queue.second),
                "names checked",
            )
        # the first attempt's mapping is not confirmed by it
        assert "not confirmed" in _text(client, queue.first)

    def test_flag_a_row_on_the_page(self, client: TestClient, staff: str, queue: Queue, engine: Engine) -> None:
        r = client.post(
            f"/submissions/{queue.second}/review/mapping/flag",
            data={"row": '["Cord", "SpinalCord"]', "note": "Cord is the canal here", "csrf_token": staff},
            follow_redirects=False,
        )
        assert r.status_code == 303
        text = _text(client, queue.second)
        assert "flagged</span> Cord is the canal here" in text
        with Session(engine) as session:
            event = session.exec(select(AuditEvent).where(AuditEvent.action == "mapping.flagged")).one()
            assert event.after == {
                "submitted": "Cord",
                "tg263": "SpinalCord",
                "reason": "synonym of SpinalCord",
                "kind": "matched",
            }
            assert event.reason == "Cord is the canal here"
            assert _outcomes(engine, queue.second) == [("unacceptable_variation", True)]  # nothing automatic

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"row": '["Cord", "SpinalCord"]', "note": " "}, "a flag needs a note"),
            ({"row": "", "note": "wrong"}, "choose the row of the mapping"),
            ({"row": "not json", "note": "wrong"}, "choose the row of the mapping"),
            ({"row": '["Cord", "Heart"]', "note": "wrong"}, "has no row Cord -> Heart"),
        ],
    )
    def test_bad_flags_are_told(
        self, client: TestClient, staff: str, queue: Queue, data: dict[str, str], message: str
    ) -> None:
        r = client.post(f"/submissions/{queue.second}/review/mapping/flag", data={**data, "csrf_token": staff})
        assert r.status_code == 422 and message in html.unescape(r.text)

    def test_flag_and_confirm_through_the_api(self, client: TestClient, tokens: dict[str, str], queue: Queue) -> None:
        staff = tokens["staff"]
        base = f"/api/v1/submissions/{queue.first}/mapping"
        r = _api(client, staff, "POST", f"{base}/flags", {"submitted": None, "tg263": "Heart", "note": "drawn as Hrt"})
        assert r.status_code == 201
        heart = next(m for m in r.json()["mapping"] if m["tg263"] == "Heart")
        assert heart["flags"][0]["note"] == "drawn as Hrt"
        r = _api(client, staff, "POST", f"{base}/flags", {"submitted": "Nope", "tg263": None, "note": "x"})
        assert r.status_code == 422 and "has no row Nope -> (none)" in r.json()["detail"]
        r = _api(client, staff, "POST", f"{base}/flags", {"submitted": "Cord", "tg263": "SpinalCord", "note": " "})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "note"]
        assert _api(client, staff, "POST", f"{base}/confirm").status_code == 201
        reviews = _api(client, staff, "GET", base).json()["reviews"]
        assert [e["action"] for e in reviews] == ["mapping.confirmed", "mapping.flagged"]
        r = _api(client, staff, "POST", f"/api/v1/submissions/{queue.received}/mapping/confirm")
        assert r.status_code == 409 and "no structure-name mapping to confirm" in r.json()["detail"]
        assert _api(client, staff, "GET", "/api/v1/submissions/999999/mapping").status_code == 404
