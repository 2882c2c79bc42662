"""The commissioners' pages and their CSV/JSON exports: who may see them, what they show for a seeded world whose
credentials are known in advance (tests/portal/commissioning_world.py), and that each export is well-formed and
agrees with its page and with the API."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.settings import Settings
from models.tables import Provider
from models.types import utcnow
from portal.app import create_app
from tests.portal.commissioning_world import LUNG_ELIGIBLE, Seeded, seed_credentials
from tests.portal.conftest import OTHER

PAGES = ["/network", "/network?network=north-west", "/trials", "/trials/uk-lung-sabr", "/expiring", "/expiring?days=5",
         "/providers/the-christie", f"/providers/{OTHER}"]  # fmt: skip
EXPORTS = [
    "/api/v1/credentials/matrix?format=csv",
    "/api/v1/credentials/matrix?format=json",
    "/api/v1/credentials/matrix?network=yorkshire-humber&format=csv",
    "/api/v1/trials/uk-lung-sabr/providers?format=csv",
    "/api/v1/trials/uk-lung-sabr/providers?format=json",
    "/api/v1/credentials/expiring/export?format=csv",
    "/api/v1/credentials/expiring/export?within_days=3650&format=json",
]
TECHNIQUES = ["sabr_liver", "sabr_lung", "sabr_oligomets", "sabr_prostate", "sabr_spine", "srs_brain"]


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_credentials(engine)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sign_in(client: TestClient, token: str) -> None:
    assert client.post("/sign-in", data={"token": token}, follow_redirects=False).status_code == 303


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="rtqa-[a-z0-9-]+\.csv"', response.headers["content-disposition"])
    text = response.content.decode("utf-8")
    assert text.endswith("\r\n") and not text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _as_csv_text(row: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in row.items()}


def _day(seeded: Seeded, days: int) -> str:
    return (seeded.now + timedelta(days=days)).strftime("%Y-%m-%d")


class TestWhoMaySee:
    @pytest.mark.parametrize("path", PAGES)
    def test_anonymous_is_sent_to_sign_in(self, client: TestClient, path: str) -> None:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=")

    @pytest.mark.parametrize("path", EXPORTS)
    def test_exports_need_a_token(self, client: TestClient, path: str) -> None:
        assert client.get(path).status_code == 401

    @pytest.mark.parametrize("path", PAGES)
    def test_centre_gets_403_and_sees_no_other_provider(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded, path: str
    ) -> None:
        _sign_in(client, tokens["centre"])
        r = client.get(path)
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
        assert "Not allowed" in r.text
        for secret in (OTHER, "Leeds", "planning benchmark"):
            assert secret not in r.text.replace(r.request.url.path, "")  # the address itself is echoed nowhere

    @pytest.mark.parametrize("path", EXPORTS)
    def test_centre_export_is_403_without_data(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded, path: str
    ) -> None:
        for r in (client.get(path, headers=_bearer(tokens["centre"])), _signed_in_get(client, tokens["centre"], path)):
            assert r.status_code == 403
            assert r.json() == {"detail": "centre tokens may only read their own provider"}

    @pytest.mark.parametrize("role", ["commissioner", "staff"])
    def test_commissioner_and_staff_see_every_page_and_export(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded, role: str
    ) -> None:
        for path in EXPORTS:
            assert client.get(path, headers=_bearer(tokens[role])).status_code == 200, path
        _sign_in(client, tokens[role])
        for path in PAGES + EXPORTS:
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:500])
        nav = client.get("/network").text
        for link in ("/network", "/trials", "/expiring"):
            assert f'href="{link}"' in nav


def _signed_in_get(client: TestClient, token: str, path: str) -> Any:
    _sign_in(client, token)
    return client.get(path)


class TestNetworkMatrix:
    def test_csv_has_every_provider_once_in_its_network(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded
    ) -> None:
        rows = _csv(client.get("/api/v1/credentials/matrix?format=csv", headers=_bearer(tokens["commissioner"])))
        assert len(rows) == 52
        assert len({r["network"] for r in rows}) == 11
        registry = client.get("/api/v1/providers", headers=_bearer(tokens["staff"])).json()
        assert {r["provider"]: r["network"] for r in rows} == {p["code"]: p["network"]["code"] for p in registry}
        assert list(rows[0])[:4] == ["network", "network_name", "provider", "provider_name"]
        for t in TECHNIQUES:
            assert {f"{t}_status", f"{t}_valid_until", f"{t}_stages", f"{t}_outstanding"} <= set(rows[0])

    def test_cells_tell_each_providers_story(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        rows = _csv(client.get("/api/v1/credentials/matrix?format=csv", headers=_bearer(tokens["commissioner"])))
        by = {r["provider"]: r for r in rows}
        marsden = by["the-royal-marsden"]
        assert marsden["sabr_lung_status"] == "credentialed"
        assert marsden["sabr_lung_valid_until"] == _day(seeded, 30)
        assert marsden["sabr_lung_stages"] == "4 of 4 stages passed" and marsden["sabr_lung_outstanding"] == ""
        assert by["the-christie"]["srs_brain_valid_until"] == _day(seeded, 10)
        leeds = by[OTHER]
        assert (leeds["sabr_lung_status"], leeds["sabr_lung_stages"]) == ("pending", "2 of 4 stages passed")
        assert leeds["sabr_lung_valid_until"] == ""
        assert leeds["sabr_lung_outstanding"].split("; ") == [
            "planning benchmark: failed (unacceptable variation, sabr-lung-planning-benchmark@1.0 attempt 1)",
            "complex treatment dosimetry check: missing",
        ]
        ucl = by["university-college-london-hospitals"]
        assert ucl["sabr_lung_status"] == "lapsed" and ucl["sabr_lung_stages"] == "3 of 4 stages passed"
        assert ucl["sabr_lung_outstanding"].startswith("facility questionnaire: lapsed (per protocol")
        assert by["cambridge-university-hospitals"]["sabr_lung_valid_until"] == _day(seeded, -5)
        oxford = by["oxford-university-hospitals"]
        assert oxford["sabr_spine_stages"] == "1 of 4 stages passed"
        assert (
            "outlining benchmark: in progress (sabr-spine-outlining-benchmark@1.0 attempt 1)"
            in oxford["sabr_spine_outstanding"]
        )
        nothing = by["hull-and-east-yorkshire-hospitals"]
        assert nothing["sabr_lung_status"] == "not started" and nothing["sabr_lung_stages"] == "0 of 4 stages passed"
        assert nothing["sabr_liver_stages"] == "no stages recorded"  # no shipped protocol requires SABR liver
        statuses = [r[f"{t}_status"] for r in rows for t in TECHNIQUES]
        assert statuses.count("credentialed") == 4 and statuses.count("pending") == 2
        assert statuses.count("lapsed") == 1 and statuses.count("not started") == 52 * 6 - 7

    def test_agrees_with_the_terminal_report(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded, settings: Settings
    ) -> None:
        from portal.report import credential_matrix_records

        rows = client.get("/api/v1/credentials/matrix", headers=_bearer(tokens["staff"])).json()["rows"]
        records = credential_matrix_records(settings.resolved_database_url)
        assert [r["provider"] for r in rows] == [r["provider"] for r in records]
        for row, record in zip(rows, records, strict=True):
            for t, cell in record["credentials"].items():
                assert row[f"{t}_status"] == (cell["status"] if cell else "not started")
                assert row[f"{t}_valid_until"] == (cell["valid_until"][:10] if cell and cell["valid_until"] else None)

    def test_json_twin_has_the_csv_rows(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        headers = _bearer(tokens["commissioner"])
        for query in ("", "network=yorkshire-humber&"):
            rows = _csv(client.get(f"/api/v1/credentials/matrix?{query}format=csv", headers=headers))
            body = client.get(f"/api/v1/credentials/matrix?{query}format=json", headers=headers).json()
            assert body["columns"] == list(rows[0])
            assert [_as_csv_text(r) for r in body["rows"]] == rows

    def test_network_filter(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        headers = _bearer(tokens["commissioner"])
        rows = _csv(client.get("/api/v1/credentials/matrix?network=north-west&format=csv", headers=headers))
        assert sorted(r["provider"] for r in rows) == [
            "lancashire-teaching-hospitals", "the-christie", "the-clatterbridge-cancer-centre"
        ]  # fmt: skip
        r = client.get("/api/v1/credentials/matrix?network=atlantis", headers=headers)
        assert r.status_code == 422 and r.json()["detail"].startswith("no network with code 'atlantis'; choose one of:")
        assert "north-west" in r.json()["detail"]
        r = client.get("/api/v1/credentials/matrix?format=xlsx", headers=headers)
        assert r.status_code == 422 and r.json()["detail"] == "format must be csv or json, not 'xlsx'"

    def test_counts_per_network(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        body = client.get("/api/v1/credentials/matrix", headers=_bearer(tokens["commissioner"])).json()
        counts = {c["code"]: c for c in body["counts"]}
        assert len(counts) == 11 and sum(c["providers"] for c in counts.values()) == 52
        expected = {  # (credentialed, pending, lapsed, providers credentialed for a technique)
            "north-west": (2, 0, 0, 1),
            "nw-sw-london-surrey-sussex": (1, 0, 0, 1),
            "east-of-england": (1, 0, 0, 1),
            "yorkshire-humber": (0, 1, 0, 0),
            "thames-valley-wessex": (0, 1, 0, 0),
            "nc-ne-london": (0, 0, 1, 0),
        }
        for code, c in counts.items():
            got = (c["credentialed"], c["pending"], c["lapsed"], c["providers_credentialed"])
            assert got == expected.get(code, (0, 0, 0, 0)), code
            assert c["credentialed"] + c["pending"] + c["lapsed"] + c["suspended"] + c["not_started"] == c[
                "providers"
            ] * len(TECHNIQUES)

    def test_page_shows_the_matrix_grouped_with_stage_detail(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded
    ) -> None:
        _sign_in(client, tokens["commissioner"])
        page = client.get("/network").text
        assert page.count('<tr data-provider="') == 52 and page.count("<tbody data-network=") == 11
        leeds = page[page.index(f'<tr data-provider="{OTHER}"') :].split("</tr>")[0]
        assert "2 of 4 stages passed" in leeds and 'class="status pending"' in leeds
        assert "planning benchmark: failed (unacceptable variation" in leeds  # the tooltip
        assert '<span class="status failed">failed</span> planning benchmark' in leeds  # the expandable list
        cambridge = page[page.index('<tr data-provider="cambridge-university-hospitals"') :].split("</tr>")[0]
        assert f"ended {_day(seeded, -5)}" in cambridge
        assert 'href="/api/v1/credentials/matrix?format=csv" download' in page
        assert 'href="/api/v1/credentials/matrix?format=json"' in page
        assert f'href="/providers/{OTHER}"' in page

    def test_page_filter_and_its_exports(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        _sign_in(client, tokens["staff"])
        page = client.get("/network?network=yorkshire-humber").text
        assert page.count('<tr data-provider="') == 3
        assert '<option value="yorkshire-humber" selected>' in page
        assert 'href="/api/v1/credentials/matrix?network=yorkshire-humber&amp;format=csv"' in page
        r = client.get("/network?network=atlantis")
        assert r.status_code == 422 and "no network with code &#39;atlantis&#39;" in r.text
        assert client.get("/network?network=").text.count('<tr data-provider="') == 52

    def test_csv_cells_cannot_become_formulas(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded, engine: Engine
    ) -> None:
        names = {"the-christie": '=HYPERLINK("http://evil.test","x")', OTHER: "@SUM(A1)", "barts-health": "-2+3"}
        with Session(engine) as session:
            for code, name in names.items():
                provider = session.exec(select(Provider).where(Provider.code == code)).one()
                provider.name = name
                session.add(provider)
            session.commit()
        headers = _bearer(tokens["commissioner"])
        rows = {r["provider"]: r for r in _csv(client.get("/api/v1/credentials/matrix?format=csv", headers=headers))}
        for code, name in names.items():
            assert rows[code]["provider_name"] == "'" + name
        body = client.get("/api/v1/credentials/matrix?format=json", headers=headers).json()
        assert {r["provider"]: r["provider_name"] for r in body["rows"] if r["provider"] in names} == names


class TestTrials:
    def test_trials_page_lists_each_trial_and_its_techniques(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded
    ) -> None:
        _sign_in(client, tokens["commissioner"])
        page = client.get("/trials").text
        for code in ("oligomets-sabr", "prostate-sabr", "spine-sabr", "srs-brain", "uk-lung-sabr"):
            assert f'<a href="/trials/{code}">{code}</a>' in page
        row = page[page.index('<a href="/trials/uk-lung-sabr">') :].split("</tr>")[0]
        assert "SABR lung" in row
        assert [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)] == [3, 1, 1]

    def test_eligible_providers_agree_with_the_api(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded
    ) -> None:
        headers = _bearer(tokens["commissioner"])
        api = client.get("/api/v1/trials/uk-lung-sabr/eligible-providers", headers=headers).json()
        assert {p["provider"] for p in api["providers"]} == LUNG_ELIGIBLE
        rows = _csv(client.get("/api/v1/trials/uk-lung-sabr/providers?format=csv", headers=headers))
        assert len(rows) == 52
        assert {r["provider"] for r in rows if r["eligible"] == "yes"} == LUNG_ELIGIBLE
        assert all(r["status"] == "credentialed" for r in rows if r["eligible"] == "yes")
        body = client.get("/api/v1/trials/uk-lung-sabr/providers", headers=headers).json()
        assert [_as_csv_text(r) for r in body["rows"]] == rows
        assert body["requires"] == ["sabr_lung"]
        srs = _csv(client.get("/api/v1/trials/srs-brain/providers?format=csv", headers=headers))
        api = client.get("/api/v1/trials/srs-brain/eligible-providers", headers=headers).json()
        assert {r["provider"] for r in srs if r["eligible"] == "yes"} == {p["provider"] for p in api["providers"]}
        assert {p["provider"] for p in api["providers"]} == {"the-christie"}

    def test_evidence_and_what_is_lacking(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        body = client.get("/api/v1/trials/uk-lung-sabr/providers", headers=_bearer(tokens["staff"])).json()
        rows = {r["provider"]: r for r in body["rows"]}
        marsden = rows["the-royal-marsden"]
        assert marsden["valid_until"] == _day(seeded, 30) and marsden["outstanding"] is None
        first = marsden["evidence"].split("; ")[0]
        assert first == (
            "sabr_lung facility questionnaire: passed (per protocol, sabr-lung-facility-questionnaire@1.0 "
            f"attempt 1, decided {_day(seeded, -700)})"
        )
        assert len(marsden["evidence"].split("; ")) == 4
        assert rows[OTHER]["eligible"] == "no" and rows[OTHER]["status"] == "pending"
        assert rows[OTHER]["outstanding"].split("; ") == [
            "sabr_lung: pending",
            "sabr_lung planning benchmark: failed (unacceptable variation, sabr-lung-planning-benchmark@1.0 attempt 1)",
            "sabr_lung complex treatment dosimetry check: missing",
        ]
        assert rows["university-college-london-hospitals"]["status"] == "lapsed"
        untouched = rows["the-newcastle-upon-tyne-hospitals"]
        assert (untouched["status"], untouched["evidence"]) == ("not started", None)
        assert untouched["outstanding"] == (
            "sabr_lung: not credentialed (no decided submission; needs facility questionnaire, outlining benchmark, "
            "planning benchmark, complex treatment dosimetry check)"
        )

    def test_trial_page(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        _sign_in(client, tokens["commissioner"])
        page = client.get("/trials/uk-lung-sabr").text
        eligible = page[page.index('id="eligible-providers"') : page.index('id="not-eligible"')]
        assert sorted(re.findall(r'<tr data-provider="([a-z-]+)"', eligible)) == sorted(LUNG_ELIGIBLE)
        assert "Eligible to recruit: 3 providers" in page
        assert "Not eligible yet: 2 providers with evidence" in page and "Not started: 47 providers" in page
        not_eligible = page[page.index('id="not-eligible-providers"') : page.index('id="not-started"')]
        assert "sabr_lung planning benchmark: failed" in not_eligible
        assert 'href="/api/v1/trials/uk-lung-sabr/providers?format=csv" download' in page
        r = client.get("/trials/NOPE")
        assert r.status_code == 404 and "no trial with code &#39;NOPE&#39;" in r.text
        assert client.get("/api/v1/trials/NOPE/providers").status_code == 404


class TestExpiring:
    def _rows(self, client: TestClient, token: str, query: str = "") -> list[dict[str, str]]:
        return _csv(client.get(f"/api/v1/credentials/expiring/export?{query}format=csv", headers=_bearer(token)))

    def test_default_window_and_days_left(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        rows = self._rows(client, tokens["commissioner"])
        today = utcnow().date()
        got = [(r["provider"], r["network"], r["scope"], r["code"], r["valid_until"], r["days_left"]) for r in rows]

        def ends(days: int) -> tuple[str, str]:
            return _day(seeded, days), str(((seeded.now + timedelta(days=days)).date() - today).days)

        assert got == [
            ("cambridge-university-hospitals", "east-of-england", "technique", "sabr_lung", *ends(-5)),
            ("cambridge-university-hospitals", "east-of-england", "trial", "uk-lung-sabr", *ends(-5)),
            ("the-christie", "north-west", "technique", "srs_brain", *ends(10)),
            ("the-christie", "north-west", "trial", "srs-brain", *ends(10)),
            ("the-royal-marsden", "nw-sw-london-surrey-sussex", "technique", "sabr_lung", *ends(30)),
            ("the-royal-marsden", "nw-sw-london-surrey-sussex", "trial", "uk-lung-sabr", *ends(30)),
        ]
        cambridge_left = ends(-5)[1]
        assert cambridge_left == "-5"  # a plain negative number is not escaped as a formula

    @pytest.mark.parametrize(("days", "count"), [("0", 2), ("20", 4), ("60", 6), ("3650", 8)])
    def test_window_agrees_with_the_api(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded, days: str, count: int
    ) -> None:
        rows = self._rows(client, tokens["staff"], f"within_days={days}&")
        api = client.get(f"/api/v1/credentials/expiring?within_days={days}", headers=_bearer(tokens["staff"])).json()
        assert len(rows) == count
        assert [(r["provider"], r["scope"], r["code"]) for r in rows] == [
            (c["provider"], c["scope"], c["code"]) for c in api
        ]
        body = client.get(
            f"/api/v1/credentials/expiring/export?within_days={days}", headers=_bearer(tokens["staff"])
        ).json()
        assert body["within_days"] == int(days) and [_as_csv_text(r) for r in body["rows"]] == rows

    @pytest.mark.parametrize("bad", ["-1", "3651", "abc", "1.5", "٣"])
    def test_bad_windows_are_refused_with_a_clear_message(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded, bad: str
    ) -> None:
        url = "/api/v1/credentials/expiring/export"
        r = client.get(url, params={"within_days": bad}, headers=_bearer(tokens["staff"]))
        assert r.status_code == 422
        assert r.json() == {"detail": f"within_days must be a whole number of days from 0 to 3650, not {bad!r}"}
        _sign_in(client, tokens["commissioner"])
        page = client.get("/expiring", params={"days": bad})
        assert page.status_code == 422
        assert "days must be a whole number of days from 0 to 3650" in page.text and 'role="alert"' in page.text

    def test_page(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        _sign_in(client, tokens["commissioner"])
        page = client.get("/expiring").text
        assert page.count('<tr data-provider="') == 6 and "(the warning period)" in page
        assert "ended 5 days ago" in page and '<a href="/trials/srs-brain">srs-brain</a>' in page
        assert 'href="/api/v1/credentials/expiring/export?within_days=60&amp;format=csv" download' in page
        narrow = client.get("/expiring?days=20").text
        assert narrow.count('<tr data-provider="') == 4 and 'value="20"' in narrow

    def test_default_follows_the_setting(
        self, settings: Settings, engine: Engine, tokens: dict[str, str], seeded: Seeded
    ) -> None:
        app = create_app(settings.model_copy(update={"expiry_warning_days": 20}), engine=engine)
        with TestClient(app) as c:
            body = c.get("/api/v1/credentials/expiring/export", headers=_bearer(tokens["staff"])).json()
            assert body["within_days"] == 20 and len(body["rows"]) == 4
            _sign_in(c, tokens["staff"])
            assert c.get("/expiring").text.count('<tr data-provider="') == 4


class TestProviderPage:
    def test_credentials_with_stages_and_submissions(
        self, client: TestClient, tokens: dict[str, str], seeded: Seeded
    ) -> None:
        _sign_in(client, tokens["commissioner"])
        page = client.get(f"/providers/{OTHER}").text
        assert "Leeds Teaching Hospitals NHS Trust" in page
        assert "2 of 4 stages passed" in page and "planning benchmark: failed" in page
        for sub_id in seeded.submissions[OTHER]:
            assert f'<a href="/submissions/{sub_id}">{sub_id}</a>' in page
        assert page.count('<span class="status unacceptable_variation">') == 1
        assert '<a href="/trials/uk-lung-sabr">uk-lung-sabr</a>' in page

    def test_submission_in_progress_reads_so(self, client: TestClient, tokens: dict[str, str], seeded: Seeded) -> None:
        _sign_in(client, tokens["staff"])
        page = client.get("/providers/oxford-university-hospitals").text
        assert '<span class="status in_progress">in progress</span> outlining benchmark' in page
        assert '<span class="status received">received</span>' in page and "none yet" in page

    def test_unknown_provider(self, client: TestClient, tokens: dict[str, str]) -> None:
        _sign_in(client, tokens["staff"])
        r = client.get("/providers/atlantis")
        assert r.status_code == 404 and "no provider with code &#39;atlantis&#39;" in r.text


def test_export_helpers() -> None:
    from portal.exports import ExportTable, csv_cell

    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "-1.5", "-1+1", "@x", "\tx", "a=b", None, 7)] == [
        "'=1+1", "'+1", "-1", "-1.5", "'-1+1", "'@x", "'\tx", "a=b", "", "7"
    ]  # fmt: skip
    table = ExportTable("t", ("a", "b"), ({"a": 'say "hi", then\nleave', "b": None},))
    assert list(csv.reader(io.StringIO(table.to_csv(), newline=""))) == [["a", "b"], ['say "hi", then\nleave', ""]]
    assert json.loads(json.dumps(table.to_json())) == {
        "columns": ["a", "b"],
        "rows": [{"a": 'say "hi", then\nleave', "b": None}],
    }
    with pytest.raises(ValueError, match=r"row 0 has keys \['b'\], not \['a'\]"):
        ExportTable("t", ("a",), ({"b": 1},))
