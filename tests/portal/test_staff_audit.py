"""The audit log page, ``GET /api/v1/audit`` and the CSV export: filters, newest first, pages, safe CSV cells."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.tables import AuditEvent
from tests.portal.staff_util import sign_in


def _event(session: Session, at: datetime, actor: str, action: str, subject: tuple[str, str], **kw: object) -> None:
    """An event at a chosen time (outside the hash chain, which these tests do not read)."""
    session.add(
        AuditEvent(
            at=at,
            actor=actor,
            action=action,
            subject_type=subject[0],
            subject_id=subject[1],
            prev_hash="0" * 64,
            row_hash=uuid.uuid4().hex * 2,
            **kw,  # type: ignore[arg-type]
        )
    )


@pytest.fixture
def trail(engine: Engine, tokens: dict[str, str]) -> None:
    """Five known events on three days of 2030 (after everything the fixtures record at run time)."""
    with Session(engine) as session:
        _event(
            session,
            datetime(2030, 1, 1, 23, 59, tzinfo=UTC),
            "qa@rttqa.test",
            "outcome.overridden",
            ("submission", "7"),
            reason="agreed",
        )
        _event(session, datetime(2030, 1, 2, 0, 0, tzinfo=UTC), "rtqa-flow", "submission.scored", ("submission", "7"))
        _event(
            session,
            datetime(2030, 1, 2, 12, 0, tzinfo=UTC),
            "QA@rttqa.test",
            "token.revoked",
            ("app_user", "3"),
            reason='=HYPERLINK("x")',
        )
        _event(
            session,
            datetime(2030, 1, 3, 8, 0, tzinfo=UTC),
            "rtqa-flow",
            "submission.decided",
            ("submission", "8"),
            after={"status": "decided"},
        )
        _event(session, datetime(2030, 1, 3, 9, 0, tzinfo=UTC), "rtqa-flow", "submission.scored", ("submission", "8"))
        session.commit()


def _api(client: TestClient, token: str, **params: str) -> list[tuple[str, str, str]]:
    r = client.get(
        "/api/v1/audit", params={"since": "2030-01-01", **params}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    return [(e["at"][:16], e["action"], e["subject_id"]) for e in r.json()["items"]]


class TestFilters:
    def test_newest_first(self, client: TestClient, tokens: dict[str, str], trail: None) -> None:
        assert _api(client, tokens["staff"]) == [
            ("2030-01-03T09:00", "submission.scored", "8"),
            ("2030-01-03T08:00", "submission.decided", "8"),
            ("2030-01-02T12:00", "token.revoked", "3"),
            ("2030-01-02T00:00", "submission.scored", "7"),
            ("2030-01-01T23:59", "outcome.overridden", "7"),
        ]

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"actor": "qa@rttqa.test"}, ["token.revoked", "outcome.overridden"]),  # letter case ignored
            ({"actor": "rtqa-flow", "action": "submission.scored"}, ["submission.scored", "submission.scored"]),
            ({"subject_type": "submission", "subject_id": "7"}, ["submission.scored", "outcome.overridden"]),
            ({"subject_type": "app_user"}, ["token.revoked"]),
            ({"subject_id": "8", "action": "submission.decided"}, ["submission.decided"]),
            ({"since": "2030-01-02", "until": "2030-01-02"}, ["token.revoked", "submission.scored"]),  # whole days
            ({"until": "2030-01-01"}, ["outcome.overridden"]),
            ({"since": "2030-01-03"}, ["submission.scored", "submission.decided"]),
            ({"actor": "nobody"}, []),
        ],
    )
    def test_filters(
        self, client: TestClient, tokens: dict[str, str], trail: None, params: dict[str, str], expected: list[str]
    ) -> None:
        assert [a for _, a, _ in _api(client, tokens["staff"], **params)] == expected

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            (
                {"since": "2030-01-03", "until": "2030-01-02"},
                "since/until: the date range is empty: 2030-01-03 is after",
            ),
            ({"since": "01/02/2030"}, "since: '01/02/2030' is not a day; write it as YYYY-MM-DD"),
            ({"until": "2030-02-30"}, "until: '2030-02-30' is not a day"),
        ],
    )
    def test_bad_dates_are_named(
        self, client: TestClient, tokens: dict[str, str], params: dict[str, str], message: str
    ) -> None:
        r = client.get("/api/v1/audit", params=params, headers={"Authorization": f"Bearer {tokens['staff']}"})
        assert r.status_code == 422 and r.json()["detail"].startswith(message)

    def test_paging(self, client: TestClient, tokens: dict[str, str], trail: None) -> None:
        r = client.get(
            "/api/v1/audit",
            params={"since": "2030-01-01", "limit": 2, "offset": 2},
            headers={"Authorization": f"Bearer {tokens['staff']}"},
        )
        body = r.json()
        assert body["total"] == 5 and (body["limit"], body["offset"]) == (2, 2)
        assert [e["action"] for e in body["items"]] == ["token.revoked", "submission.scored"]


class TestPage:
    def _rows(self, client: TestClient, query: str) -> list[str]:
        r = client.get("/staff/audit" + query)
        assert r.status_code == 200, r.text
        return re.findall(r'<tr data-event="\d+">\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>', r.text)

    def test_page_agrees_with_the_api(self, client: TestClient, tokens: dict[str, str], trail: None) -> None:
        sign_in(client, tokens["staff"])
        assert self._rows(client, "?since=2030-01-01&actor=rtqa-flow") == [
            "submission.scored",
            "submission.decided",
            "submission.scored",
        ]
        # an empty form field does not filter
        assert len(self._rows(client, "?actor=&action=&subject_type=&subject_id=&since=2030-01-01&until=")) == 5

    def test_subjects_link_to_their_pages_and_the_csv_keeps_the_filters(
        self, client: TestClient, tokens: dict[str, str], trail: None
    ) -> None:
        sign_in(client, tokens["staff"])
        text = client.get("/staff/audit?since=2030-01-01&subject_type=submission").text
        assert '<a href="/submissions/7/review">submission 7</a>' in text
        assert 'href="/api/v1/audit.csv?subject_type=submission&amp;since=2030-01-01"' in text
        assert "2030-01-01 23:59" in text
        assert '<option value="token.revoked">' in text  # the actions present are offered

    def test_an_empty_range_is_told_on_a_page(self, client: TestClient, tokens: dict[str, str]) -> None:
        sign_in(client, tokens["staff"])
        r = client.get("/staff/audit?since=2030-01-03&until=2030-01-02")
        assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
        assert "the date range is empty" in r.text

    def test_pages_of_fifty(self, client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
        with Session(engine) as session:
            for i in range(60):
                _event(session, datetime(2031, 1, 1, 0, i, tzinfo=UTC), "bulk", "bulk.event", ("x", str(i)))
            session.commit()
        sign_in(client, tokens["staff"])
        text = client.get("/staff/audit?actor=bulk").text
        assert "Showing 1–50 of 60 events" in text and 'href="/staff/audit?actor=bulk&amp;offset=50"' in text
        older = client.get("/staff/audit?actor=bulk&offset=50").text
        assert "Showing 51–60 of 60 events" in older
        assert re.findall(r"<td>x (\d+)</td>", older) == [str(i) for i in range(9, -1, -1)]


class TestCsv:
    def test_export(self, client: TestClient, tokens: dict[str, str], trail: None) -> None:
        r = client.get(
            "/api/v1/audit.csv",
            params={"since": "2030-01-02", "until": "2030-01-03"},
            headers={"Authorization": f"Bearer {tokens['staff']}"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == 'attachment; filename="rtqa-audit.csv"'
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert list(rows[0]) == [
            "id",
            "at",
            "actor",
            "action",
            "subject_type",
            "subject_id",
            "before",
            "after",
            "reason",
        ]
        assert [row["action"] for row in rows] == [
            "submission.scored",
            "submission.decided",
            "token.revoked",
            "submission.scored",
        ]
        assert rows[1]["after"] == '{"status": "decided"}' and rows[1]["before"] == ""
        assert rows[2]["reason"] == '\'=HYPERLINK("x")'  # not run as a formula by a spreadsheet

    def test_export_has_every_match_not_a_page(
        self, client: TestClient, tokens: dict[str, str], engine: Engine
    ) -> None:
        with Session(engine) as session:
            for i in range(120):
                _event(session, datetime(2031, 1, 1, 1, 0, i % 60, tzinfo=UTC), "bulk", "bulk.event", ("x", str(i)))
            session.commit()
        r = client.get("/api/v1/audit.csv?actor=bulk", headers={"Authorization": f"Bearer {tokens['staff']}"})
        assert len(list(csv.DictReader(io.StringIO(r.text)))) == 120
