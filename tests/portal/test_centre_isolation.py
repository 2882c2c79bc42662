"""Centre A (the-christie) never sees centre B's (leeds-teaching-hospitals) identifiers or results on any centre
page or its API twin, while B has submissions and questionnaire answers of its own on the same cases."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from benchmarks.cases import BuiltCase
from benchmarks.questionnaires import example_answers
from benchmarks.simulator import Deviation, simulate_submission
from tests.portal.centre_fixtures import (
    OUTLINING,
    bearer,
    built_cases,
    other_token,
    page_client,
    published,
    upload_zip,
    zip_folder,
)
from tests.portal.conftest import OTHER, OWN

__all__ = ["built_cases", "other_token", "published"]

MARKER = "Zebedee Leedsworth"
"""A distinctive answer of centre B's questionnaire."""


def test_centre_a_never_sees_centre_b(
    client: TestClient, tokens: dict[str, str], other_token: str, published: dict[str, BuiltCase], tmp_path: Path
) -> None:
    def submit(token: str, provider: str, deviation: str) -> int:
        sub = simulate_submission(
            published[OUTLINING], provider=provider, deviations=[Deviation.parse(deviation)], seed=1,
            out_dir=tmp_path / provider,
        )  # fmt: skip
        r = upload_zip(client, OUTLINING, zip_folder(sub.directory), bearer(token))
        assert r.status_code == 202, r.text
        return int(r.json()["submission_id"])

    # Centre B acts last, so its submissions are the newest of every case and form.
    own = submit(tokens["centre"], OWN, "margin_mm:PTV:1")
    r = client.post(
        "/api/v1/questionnaires/sabr_lung",
        json={"answers": example_answers("sabr_lung")},
        headers=bearer(tokens["centre"]),
    )
    assert r.status_code == 201
    theirs = [submit(other_token, OTHER, "margin_mm:PTV:8")]
    answers = {**example_answers("sabr_lung"), "lead_physicist": MARKER, "dose_algorithm": "pencil_beam"}
    r = client.post("/api/v1/questionnaires/sabr_lung", json={"answers": answers}, headers=bearer(other_token))
    assert r.status_code == 201
    theirs.append(r.json()["submission_id"])
    client.app.state.runner.drain()  # type: ignore[attr-defined]

    forbidden = [
        re.compile(r"leeds", re.IGNORECASE),
        re.compile(re.escape(MARKER)),
        re.compile(r"pencil beam", re.IGNORECASE),  # B's failing answer's reason
        *(re.compile(rf"/submissions/{sid}(?!\d)") for sid in theirs),
        *(re.compile(rf"/questionnaire/sabr_lung\?submission={sid}(?!\d)") for sid in theirs),
    ]
    browser = page_client(client, tokens["centre"])
    pages = [
        "/centre",
        "/cases",
        "/upload",
        f"/upload?case={OUTLINING}",
        "/submissions",
        "/submissions?status=decided",
        f"/submissions?case={OUTLINING}",
        f"/submissions/{own}",
        "/questionnaire",
        "/questionnaire/sabr_lung",
        *(f"/questionnaire/sabr_lung?submission={sid}&created=true" for sid in theirs),
        "/api/v1/cases",
        f"/api/v1/providers/{OWN}/techniques",
        "/api/v1/submissions",
    ]
    for path in pages:
        r = browser.get(path)
        assert r.status_code == 200, path
        body = r.text
        if path.startswith("/questionnaire/sabr_lung"):
            # The form offers "pencil beam" as an option (and its help text names it): judge the result shown.
            result = re.search(r'<section class="note" id="result">.*?</section>', body, re.S)
            assert result, path
            assert not re.search("pencil", result.group(0), re.IGNORECASE), path
            body = body.replace(result.group(0), "")
            body = re.sub(r"<form .*?</form>", lambda m: re.sub("(?i)pencil beam", "", m.group(0)), body, flags=re.S)
        for pattern in forbidden:
            assert not pattern.search(body), f"{path} shows {pattern.pattern!r}"
    assert "Every answer meets the protocol" in browser.get(f"/questionnaire/sabr_lung?submission={theirs[1]}").text

    for path in (*(f"/submissions/{sid}" for sid in theirs), f"/api/v1/providers/{OTHER}/techniques"):
        r = browser.get(path)
        assert r.status_code == 403, path
        assert not re.search(re.escape(MARKER), r.text)
        assert "Leeds Teaching" not in r.text
