"""The review queue and its JSON twin: filters by status, stage, technique and network, newest first, paged."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.portal.conftest import OTHER, OWN
from tests.portal.staff_util import Queue, build_queue, sign_in


@pytest.fixture
def queue(engine: Engine, tokens: dict[str, str]) -> Queue:
    return build_queue(engine)


def _api_ids(client: TestClient, token: str, **params: Any) -> list[int]:
    r = client.get("/api/v1/submissions", params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


def _page_ids(client: TestClient, query: str = "") -> list[int]:
    r = client.get("/staff/queue" + query)
    assert r.status_code == 200, r.text
    return [int(i) for i in re.findall(r'<tr data-submission="(\d+)">', r.text)]


class TestApiFilters:
    def test_newest_first_with_technique_and_network(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        staff = tokens["staff"]
        q = queue
        assert _api_ids(client, staff) == [q.received, q.leeds, q.planning, q.second, q.first]
        assert _api_ids(client, staff, technique="sabr_lung") == [q.planning, q.second, q.first]
        assert _api_ids(client, staff, technique="sabr_spine") == [q.leeds]
        assert _api_ids(client, staff, network="north-west") == [q.received, q.planning, q.second, q.first]
        assert _api_ids(client, staff, network="yorkshire-humber") == [q.leeds]
        assert _api_ids(client, staff, network="north-west", technique="sabr_spine") == []
        assert _api_ids(client, staff, technique="no-such-technique") == []
        # the filters that were there keep working beside the new ones
        assert _api_ids(client, staff, status="received") == [q.received]
        assert _api_ids(client, staff, stage="planning_benchmark", network="north-west") == [q.planning]
        assert _api_ids(client, staff, provider=OTHER, technique="sabr_spine") == [q.leeds]

    def test_items_name_the_technique_and_network(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        r = client.get("/api/v1/submissions", headers={"Authorization": f"Bearer {tokens['staff']}"})
        item = next(i for i in r.json()["items"] if i["id"] == queue.leeds)
        assert (item["provider"], item["technique"], item["network"]) == (OTHER, "sabr_spine", "yorkshire-humber")

    def test_a_centre_filtering_by_network_still_sees_only_its_own(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        assert _api_ids(client, tokens["centre"], network="yorkshire-humber") == []
        assert queue.leeds not in _api_ids(client, tokens["centre"], technique="sabr_spine")


class TestPage:
    def test_filters_agree_with_the_api(self, client: TestClient, tokens: dict[str, str], queue: Queue) -> None:
        sign_in(client, tokens["staff"])
        cases = [
            {},
            {"status": "decided"},
            {"stage": "outlining_benchmark"},
            {"technique": "sabr_lung"},
            {"network": "yorkshire-humber"},
            {"status": "decided", "technique": "sabr_lung", "network": "north-west"},
        ]
        for params in cases:
            query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
            assert _page_ids(client, query) == _api_ids(client, tokens["staff"], **params), params

    def test_empty_filters_from_the_form_do_not_filter(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        sign_in(client, tokens["staff"])
        assert len(_page_ids(client, "?status=&stage=&technique=&network=")) == 5

    def test_rows_link_to_the_review_page_with_plain_words(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        sign_in(client, tokens["staff"])
        text = client.get("/staff/queue").text
        assert f'href="/submissions/{queue.first}/review"' in text
        assert "unacceptable variation" in text and "The Christie NHS Foundation Trust" in text
        assert "2026-03-01" in text  # received, as a day
        assert '<option value="sabr_lung" selected>' not in text
        filtered = client.get("/staff/queue?technique=sabr_lung").text
        assert '<option value="sabr_lung" selected>' in filtered

    def test_a_bad_status_names_the_allowed_values(
        self, client: TestClient, tokens: dict[str, str], queue: Queue
    ) -> None:
        sign_in(client, tokens["staff"])
        r = client.get("/staff/queue?status=lost")
        assert r.status_code == 422 and "status &#39;lost&#39; is not one of: received" in r.text

    def test_pages_of_fifty_keep_the_filters(
        self, client: TestClient, tokens: dict[str, str], queue: Queue, engine: Engine
    ) -> None:
        from sqlmodel import Session, select

        from models.enums import OutcomeLevel
        from models.tables import BenchmarkCase
        from tests.portal.staff_util import add_submission

        with Session(engine) as session:
            case = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == "lung-outlining")).one()
            for attempt in range(3, 55):
                add_submission(session, provider=OWN, case=case, attempt=attempt, level=OutcomeLevel.PER_PROTOCOL)
            session.commit()
        sign_in(client, tokens["staff"])
        first = client.get("/staff/queue?technique=sabr_lung").text
        assert "Showing 1–50 of 55 submissions" in first
        assert 'href="/staff/queue?technique=sabr_lung&amp;offset=50"' in first
        second = _page_ids(client, "?technique=sabr_lung&offset=50")
        everything = _api_ids(client, tokens["staff"], technique="sabr_lung", limit=100)
        assert second == everything[50:] and len(second) == 5
        assert (
            'href="/staff/queue?technique=sabr_lung"' in client.get("/staff/queue?technique=sabr_lung&offset=50").text
        )
