"""The centre's credential, case and upload pages and their API twins (/api/v1/providers/{code}/techniques,
/api/v1/cases, /api/v1/cases/{code}/download), for every role."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase
from benchmarks.questionnaires import example_answers
from benchmarks.simulator import Deviation, simulate_submission
from models.tables import BenchmarkCase
from tests.portal.centre_fixtures import (
    OUTLINING,
    PLANNING,
    SOP_CLASS,
    TPS,
    bearer,
    built_cases,
    other_token,
    page_client,
    published,
    upload_zip,
    visible_text,
    zip_folder,
    zip_objects,
)
from tests.portal.conftest import OTHER, OWN

__all__ = ["built_cases", "other_token", "published"]

ROLES = ("centre", "staff", "commissioner")


class TestCasesApi:
    def test_lists_the_newest_version_of_each_downloadable_case(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], engine: Engine
    ) -> None:
        client.post(
            "/api/v1/questionnaires/sabr_lung",
            json={"answers": example_answers("sabr_lung")},
            headers=bearer(tokens["centre"]),
        )  # fmt: skip  (registers the questionnaire case, which has nothing to download)
        for role in ROLES:
            r = client.get("/api/v1/cases", headers=bearer(tokens[role]))
            assert r.status_code == 200, r.text
            items = {i["code"]: i for i in r.json()["items"]}
            assert set(items) == {OUTLINING, PLANNING, TPS}
        assert items[OUTLINING]["supplied"] == ["CT"] and items[OUTLINING]["returned"] == ["RTSTRUCT"]
        assert items[PLANNING]["supplied"] == ["CT", "RTSTRUCT"]
        assert items[PLANNING]["returned"] == ["RTSTRUCT", "RTPLAN", "RTDOSE"]
        assert items[TPS]["supplied"] == ["CT", "RTSTRUCT", "RTPLAN"] and items[TPS]["returned"] == ["RTDOSE"]
        assert items[TPS]["download_url"] == f"/api/v1/cases/{TPS}/download?version=1.0"
        assert client.get("/api/v1/cases").status_code == 401

    def test_download_is_a_named_zip_without_answers(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], settings
    ) -> None:
        expected = {
            OUTLINING: {SOP_CLASS["CT"]},
            PLANNING: {SOP_CLASS["CT"], SOP_CLASS["RTSTRUCT"]},
            TPS: {SOP_CLASS["CT"], SOP_CLASS["RTSTRUCT"], SOP_CLASS["RTPLAN"]},
        }
        for code, classes in expected.items():
            r = client.get(f"/api/v1/cases/{code}/download", headers=bearer(tokens["centre"]))
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/zip"
            assert f'filename="{code}-1.0.zip"' in r.headers["content-disposition"]
            assert {sop_class for _, _, sop_class, _ in zip_objects(r.content)} == classes
        again = client.get(f"/api/v1/cases/{TPS}/download?version=1.0", headers=bearer(tokens["staff"]))
        assert again.content == r.content
        assert len(list((settings.data_dir / "downloads").glob("*.zip"))) == 3  # built once per case version

    def test_download_mistakes_are_told_in_words(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], engine: Engine
    ) -> None:
        h = bearer(tokens["centre"])
        r = client.get("/api/v1/cases/no-such-case/download", headers=h)
        assert r.status_code == 404 and "no benchmark case 'no-such-case'" in r.json()["detail"]
        r = client.get(f"/api/v1/cases/{OUTLINING}/download?version=9.9", headers=h)
        assert r.status_code == 404 and "version '9.9'" in r.json()["detail"]
        client.post("/api/v1/questionnaires/sabr_lung", json={"answers": example_answers("sabr_lung")}, headers=h)
        r = client.get("/api/v1/cases/questionnaire-sabr_lung/download", headers=h)
        assert r.status_code == 404 and "facility questionnaire: it has no files" in r.json()["detail"]
        with Session(engine) as session:
            case = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == PLANNING)).one()
            case.reference_path = "/nonexistent/lung-sabr-planning-coarse-1.0"
            session.add(case)
            session.commit()
        r = client.get(f"/api/v1/cases/{PLANNING}/download", headers=h)
        assert r.status_code == 503
        assert (
            "cannot be served (lung-sabr-planning-coarse-1.0: the case folder is missing); tell the QA team"
            in (r.json()["detail"])
        )
        assert "/nonexistent" not in r.json()["detail"]
        assert client.get(f"/api/v1/cases/{OUTLINING}/download").status_code == 401


class TestTechniquesApi:
    def test_access_follows_the_credentials_policy(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase]
    ) -> None:
        url = "/api/v1/providers/{}/techniques"
        assert client.get(url.format(OWN), headers=bearer(tokens["centre"])).status_code == 200
        r = client.get(url.format(OTHER), headers=bearer(tokens["centre"]))
        assert r.status_code == 403 and OTHER in r.json()["detail"]
        assert client.get(url.format("nowhere"), headers=bearer(tokens["centre"])).status_code == 403
        for role in ("staff", "commissioner"):
            assert client.get(url.format(OTHER), headers=bearer(tokens[role])).status_code == 200
            assert client.get(url.format("nowhere"), headers=bearer(tokens[role])).status_code == 404
        assert client.get(url.format(OWN)).status_code == 401

    def test_stages_follow_the_submissions(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase]
    ) -> None:
        h = bearer(tokens["centre"])
        before = client.get(f"/api/v1/providers/{OWN}/techniques", headers=h).json()
        lung = next(t for t in before["techniques"] if t["technique"] == "sabr_lung")
        assert lung["status"] == "pending" and lung["valid_until"] is None
        assert [s["stage"] for s in lung["stages"]] == [
            "facility_questionnaire",
            "outlining_benchmark",
            "planning_benchmark",
            "complex_treatment_dosimetry_check",
        ]
        assert {s["status"] for s in lung["stages"]} == {"missing"}
        client.post("/api/v1/questionnaires/sabr_lung", json={"answers": example_answers("sabr_lung")}, headers=h)
        after = client.get(f"/api/v1/providers/{OWN}/techniques", headers=h).json()
        lung = next(t for t in after["techniques"] if t["technique"] == "sabr_lung")
        questionnaire = lung["stages"][0]
        assert (questionnaire["status"], questionnaire["outcome"]) == ("passed", "per_protocol")
        assert questionnaire["valid_until"] is not None


class TestCentrePage:
    def test_shows_each_stage_and_the_credential(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        h = bearer(tokens["centre"])
        client.post("/api/v1/questionnaires/sabr_lung", json={"answers": example_answers("sabr_lung")}, headers=h)
        sub = simulate_submission(
            published[OUTLINING], provider=OWN, deviations=[Deviation.parse("margin_mm:PTV:8")], seed=0,
            out_dir=tmp_path / "far",
        )  # fmt: skip
        r = upload_zip(client, OUTLINING, zip_folder(sub.directory), h)
        assert r.status_code == 202, r.text
        sid = r.json()["submission_id"]
        browser = page_client(client, tokens["centre"])
        html = browser.get("/centre").text
        text = visible_text(html)
        assert "The Christie" in text and "SABR lung: credentials" not in text
        assert re.search(r"SABR lung\s*pending", text)
        assert re.search(r"facility questionnaire\s*passed\s*questionnaire-sabr_lung@1.0\s*1\s*per protocol", text)
        assert re.search(r"outlining benchmark\s*in progress", text)
        assert f'href="/submissions/{sid}"' in html
        assert re.search(r"planning benchmark\s*not started", text) and 'href="/cases#sabr_lung"' in html

        client.app.state.runner.drain()  # type: ignore[attr-defined]
        text = visible_text(browser.get("/centre").text)
        expected = sub.expected_outcome.value.replace("_", " ")
        status = "failed" if sub.expected_outcome.value == "unacceptable_variation" else "passed"
        assert re.search(rf"outlining benchmark\s*{status}\s*{OUTLINING}@1.0\s*1\s*{expected}", text)
        if status == "failed":
            assert f'href="/upload?case={OUTLINING}"' in browser.get("/centre").text
        # The page and its API twin agree on every stage.
        api = client.get(f"/api/v1/providers/{OWN}/techniques", headers=h).json()
        for technique in api["techniques"]:
            for stage in technique["stages"]:
                assert stage["description"] in text

    @pytest.mark.parametrize("role", ["staff", "commissioner"])
    def test_only_centres_have_it(self, client: TestClient, tokens: dict[str, str], role: str) -> None:
        r = page_client(client, tokens[role]).get("/centre")
        assert r.status_code == 403 and "only centre users have this page" in r.text

    def test_anonymous_is_sent_to_sign_in(self, client: TestClient) -> None:
        for path in ("/centre", "/cases", "/upload?case=x"):
            r = page_client(client, None).get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=")


class TestCasesPage:
    def test_lists_cases_with_downloads_and_the_centres_latest(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        browser = page_client(client, tokens["centre"])
        html = browser.get("/cases").text
        for code in (OUTLINING, PLANNING, TPS):
            assert f'href="/api/v1/cases/{code}/download?version=1.0"' in html
            assert f'href="/upload?case={code}"' in html
        text = visible_text(html)
        assert re.search(r"outlining benchmark\s*CT images\s*structure set \(RTSTRUCT\)", text)
        assert re.search(r"complex treatment dosimetry check\s*CT images, structure set \(RTSTRUCT\), plan", text)
        sub = simulate_submission(published[OUTLINING], provider=OWN, deviations=[], seed=0, out_dir=tmp_path / "s")
        sid = upload_zip(client, OUTLINING, zip_folder(sub.directory), bearer(tokens["centre"])).json()["submission_id"]
        html = browser.get("/cases").text
        assert f'<a href="/submissions/{sid}">attempt 1</a>' in html
        # The download link works with the page session (a GET: no CSRF token needed).
        download = browser.get(f"/api/v1/cases/{OUTLINING}/download?version=1.0")
        assert download.status_code == 200 and {m for _, m, _, _ in zip_objects(download.content)} == {"CT"}

    @pytest.mark.parametrize("role", ["staff", "commissioner"])
    def test_staff_and_commissioners_see_the_list_without_upload(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], role: str
    ) -> None:
        html = page_client(client, tokens[role]).get("/cases").text
        assert f"/api/v1/cases/{TPS}/download" in html and "/upload?case=" not in html


class TestUploadPage:
    def test_offers_the_cases_and_preselects_a_resubmission(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase]
    ) -> None:
        browser = page_client(client, tokens["centre"])
        html = browser.get(f"/upload?case={PLANNING}").text
        assert re.search(rf'<option value="{PLANNING}"[^>]*selected', html)
        assert len(re.findall(r" selected", html)) == 1
        for code in (OUTLINING, TPS):
            assert f'<option value="{code}"' in html
        assert 'id="folder" type="file" webkitdirectory' in html and 'id="files" type="file" multiple' in html
        assert '<script src="/static/upload.js" defer></script>' in html
        assert "rtqa.js" in html and 'name="csrf-token"' in html
        html = browser.get("/upload?case=no-such-case").text
        assert "no published case “no-such-case”" in html and " selected" not in html

    def test_upload_with_the_page_session_needs_the_csrf_token(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        """What the page's script does: POST /api/v1/submissions with the cookie and the X-CSRF-Token header."""
        from tests.portal.centre_fixtures import csrf

        browser = page_client(client, tokens["centre"])
        sub = simulate_submission(published[OUTLINING], provider=OWN, deviations=[], seed=0, out_dir=tmp_path / "s")
        data = zip_folder(sub.directory)
        r = upload_zip(browser, OUTLINING, data, {})
        assert r.status_code == 403 and "reload it" in r.json()["detail"]
        r = upload_zip(browser, OUTLINING, data, {"X-CSRF-Token": csrf(browser, "/upload")})
        assert r.status_code == 202, r.text

    @pytest.mark.parametrize("role", ["staff", "commissioner"])
    def test_only_centres_have_it(self, client: TestClient, tokens: dict[str, str], role: str) -> None:
        assert page_client(client, tokens[role]).get("/upload").status_code == 403
