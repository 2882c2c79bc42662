"""The submission list and a submission's page: the API's policy for every role, the steps, the outcome with its
reasons, the rejection reason, and the links to the report and to submit again."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks.cases import BuiltCase
from benchmarks.questionnaires import example_answers
from benchmarks.simulator import Deviation, SimulatedSubmission, simulate_submission
from portal.pages.submissions import step_states
from tests.portal.centre_fixtures import (
    OUTLINING,
    bearer,
    built_cases,
    other_token,
    page_client,
    published,
    upload_zip,
    visible_text,
    zip_folder,
)
from tests.portal.conftest import OTHER, OWN

__all__ = ["built_cases", "other_token", "published"]


def _simulate(built: BuiltCase, tmp: Path, name: str, *deviations: str, provider: str = OWN) -> SimulatedSubmission:
    return simulate_submission(
        built, provider=provider, deviations=[Deviation.parse(d) for d in deviations], seed=0, out_dir=tmp / name
    )


def _steps(html: str) -> dict[str, str]:
    """Step -> its state class, for the steps the page shows (not hidden)."""
    return dict(re.findall(r'<li data-step="(\w+)" class="(\w+)">', html))


class TestStepStates:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("received", ["done", "current", "todo", "todo"]),
            ("validated", ["done", "done", "current", "todo"]),
            ("scored", ["done", "done", "done", "current"]),
            ("decided", ["done", "done", "done", "done"]),
            ("rejected", ["done", "skipped", "skipped", "skipped"]),
        ],
    )
    def test_each_status(self, status: str, expected: list[str]) -> None:
        assert [s["state"] for s in step_states(status)] == expected


class TestSubmissionPage:
    def test_follows_a_submission_to_its_outcome(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        far = _simulate(published[OUTLINING], tmp_path, "far", "margin_mm:PTV:8", "shift_mm:GTV:0,0,10")
        assert far.expected_outcome.value == "unacceptable_variation"
        sid = upload_zip(client, OUTLINING, zip_folder(far.directory), bearer(tokens["centre"])).json()["submission_id"]
        browser = page_client(client, tokens["centre"])
        html = browser.get(f"/submissions/{sid}").text
        assert _steps(html) == {"received": "done", "validated": "current", "scored": "todo", "decided": "todo"}
        assert 'data-final="false"' in html and '<meta http-equiv="refresh" content="5">' in html
        assert '<script src="/static/submission.js" defer></script>' in html
        assert f"/submissions/{sid}/report" not in html

        client.app.state.runner.drain()  # type: ignore[attr-defined]
        html = browser.get(f"/submissions/{sid}").text
        assert _steps(html) == {"received": "done", "validated": "done", "scored": "done", "decided": "done"}
        assert 'data-final="true"' in html and "http-equiv" not in html
        detail = client.get(f"/api/v1/submissions/{sid}", headers=bearer(tokens["centre"])).json()
        outcome = detail["outcomes"][0]
        text = visible_text(html)
        assert "Outcome: unacceptable variation" in text
        assert outcome["reasons"] and all(visible_text(reason) in text for reason in outcome["reasons"])
        assert f'href="/submissions/{sid}/report"' in html
        assert f'href="/upload?case={OUTLINING}">Submit again' in html

    def test_a_rejection_shows_its_reason(
        self, client: TestClient, tokens: dict[str, str], published: dict[str, BuiltCase], tmp_path: Path
    ) -> None:
        """CT files only: no RTSTRUCT, so the submission is rejected at the check, naming what is missing."""
        ct_only = tmp_path / "ct-only"
        shutil.copytree(published[OUTLINING].ct_dir, ct_only / "CT")
        sid = upload_zip(client, OUTLINING, zip_folder(ct_only), bearer(tokens["centre"])).json()["submission_id"]
        client.app.state.runner.drain()  # type: ignore[attr-defined]
        html = page_client(client, tokens["centre"]).get(f"/submissions/{sid}").text
        reason = client.get(f"/api/v1/submissions/{sid}", headers=bearer(tokens["centre"])).json()["rejection_reason"]
        assert "no RTSTRUCT file" in reason
        assert _steps(html)["received"] == "done" and _steps(html)["validated"] == "skipped"
        assert re.search(r'<li data-step="rejected" class="failed">', html)
        assert visible_text(reason) in visible_text(html) and "Why it was rejected" in html
        assert "/report" not in html and f'href="/upload?case={OUTLINING}">Submit again' in html

    def test_a_questionnaire_submission_is_answered_again_on_its_form(
        self, client: TestClient, tokens: dict[str, str]
    ) -> None:
        body = {"answers": {**example_answers("sabr_lung"), "dose_algorithm": "pencil_beam"}}
        result = client.post("/api/v1/questionnaires/sabr_lung", json=body, headers=bearer(tokens["centre"])).json()
        html = page_client(client, tokens["centre"]).get(f"/submissions/{result['submission_id']}").text
        assert "Submission {}: facility questionnaire".format(result["submission_id"]) in visible_text(html)
        assert 'href="/questionnaire/sabr_lung">Submit again' in html
        assert all(visible_text(r) in visible_text(html) for r in result["reasons"])

    def test_page_and_api_agree_on_who_may_read(
        self,
        client: TestClient,
        tokens: dict[str, str],
        other_token: str,
        published: dict[str, BuiltCase],
        tmp_path: Path,
    ) -> None:
        sub = _simulate(published[OUTLINING], tmp_path, "own")
        sid = upload_zip(client, OUTLINING, zip_folder(sub.directory), bearer(tokens["centre"])).json()["submission_id"]
        users = {**tokens, "other centre": other_token}
        expected = {"centre": 200, "staff": 200, "commissioner": 200, "other centre": 403}
        for who, code in expected.items():
            api = client.get(f"/api/v1/submissions/{sid}", headers=bearer(users[who])).status_code
            page = page_client(client, users[who]).get(f"/submissions/{sid}")
            assert (api, page.status_code) == (code, code), who
            if code == 200 and who != "centre":
                assert "The Christie" in page.text and OWN in page.text and "Submit again" not in page.text
        assert "only read its own submissions" in page.text
        assert page_client(client, tokens["staff"]).get("/submissions/999999").status_code == 404
        r = page_client(client, None).get(f"/submissions/{sid}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/sign-in?next=/submissions/{sid}"


class TestSubmissionList:
    def test_centres_see_their_own_and_staff_see_all(
        self,
        client: TestClient,
        tokens: dict[str, str],
        other_token: str,
        published: dict[str, BuiltCase],
        tmp_path: Path,
    ) -> None:
        own = _simulate(published[OUTLINING], tmp_path, "own")
        theirs = _simulate(published[OUTLINING], tmp_path, "theirs", "margin_mm:PTV:1", provider=OTHER)
        own_id = upload_zip(client, OUTLINING, zip_folder(own.directory), bearer(tokens["centre"])).json()
        their_id = upload_zip(client, OUTLINING, zip_folder(theirs.directory), bearer(other_token)).json()
        own_link, their_link = (
            f'href="/submissions/{own_id["submission_id"]}"',
            f'href="/submissions/{their_id["submission_id"]}"',
        )

        html = page_client(client, tokens["centre"]).get("/submissions").text
        assert own_link in html and their_link not in html and OTHER not in html
        for role in ("staff", "commissioner"):
            html = page_client(client, tokens[role]).get("/submissions").text
            assert own_link in html and their_link in html and OTHER in html and OWN in html

        browser = page_client(client, tokens["centre"])
        assert own_link not in browser.get("/submissions?status=decided").text
        assert own_link in browser.get("/submissions?status=received").text
        assert own_link not in browser.get("/submissions?case=other-case").text
        assert "No submissions match" in browser.get("/submissions?case=other-case").text
