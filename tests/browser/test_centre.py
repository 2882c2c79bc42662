"""A centre in a real browser: signs in, downloads a case and checks the zip, uploads a simulated submission with
the progress bar, sees the decided outcome appear on the submission page by itself, and answers the facility
questionnaire. Screenshots of each centre page go to docs/screenshots/centre-*.png."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest

from benchmarks.cases import BuiltCase, build_case
from benchmarks.questionnaires import example_answers, load_questionnaire
from benchmarks.simulator import Deviation, simulate_submission
from flows.catalogue import build_reference, register_case
from models.settings import Settings
from tests.browser.conftest import screenshot, sign_in
from tests.portal.conftest import OWN

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CASE = "lung-sabr-outlining-mini"

WATCH_PROGRESS = """() => {
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  new MutationObserver(() => console.log("progress " + bar.value + " | " + text.textContent))
    .observe(bar, { attributes: true });
  new MutationObserver(() => console.log("progress " + bar.value + " | " + text.textContent))
    .observe(text, { childList: true, characterData: true, subtree: true });
}"""
"""Logs every change of the upload page's progress bar and its text to the console (read by the test)."""


@pytest.fixture
def published(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    """The outlining case built and published in the live server's database."""
    root = tmp_path_factory.mktemp("cases")
    built = build_case(CASE, root)
    reference = build_reference.fn(CASE, str(root))
    register_case.fn(reference, actor="tests", database_url=settings.resolved_database_url)
    return built


def _submission_zip(built: BuiltCase, tmp_path: Path) -> tuple[Path, str]:
    """A simulated centre submission as a zip, and the outcome the simulator's oracle expects."""
    sub = simulate_submission(
        built, provider=OWN, deviations=[Deviation.parse("margin_mm:PTV:8")], seed=0, out_dir=tmp_path / "sub"
    )
    target = tmp_path / "submission.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(sub.directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(sub.directory).as_posix())
    return target, sub.expected_outcome.value.replace("_", " ")


def _fill_questionnaire(page: Any, technique: str) -> None:
    form = load_questionnaire(technique)
    for qid, value in example_answers(technique).items():
        question = form.question(qid)
        name = f"answer.{qid}"
        if question.type == "yes_no":
            yes = value is True or str(value).lower() in ("yes", "y", "true")
            page.check(f'input[name="{name}"][value="{"yes" if yes else "no"}"]')
        elif question.type == "choice":
            page.select_option(f'select[name="{name}"]', str(value))
        else:
            page.fill(f'input[name="{name}"]', str(value))


def test_centre_downloads_uploads_and_sees_the_outcome(
    page: Any, tokens: dict[str, str], published: BuiltCase, tmp_path: Path
) -> None:
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    sign_in(page, tokens["centre"])
    assert page.url.endswith("/centre")
    assert "SABR lung" in page.inner_text("main")

    # Download the case and look inside.
    page.goto("/cases")
    row = page.locator(f'tr[data-case="{CASE}"]')
    with page.expect_download() as info:
        row.locator("a", has_text="Download").click()
    download = info.value
    assert download.suggested_filename == f"{CASE}-1.0.zip"
    with zipfile.ZipFile(download.path()) as zf:
        modalities = {
            str(pydicom.dcmread(io.BytesIO(zf.read(n)), stop_before_pixels=True).Modality) for n in zf.namelist()
        }
        assert modalities == {"CT"}, "an outlining case supplies the CT only, never the reference contours"
        assert len(zf.namelist()) == len(list(published.ct_dir.glob("*.dcm")))
    screenshot(page, "centre-cases")

    # Upload a simulated submission through the page, on a slow link so the progress bar moves.
    zip_path, expected = _submission_zip(published, tmp_path)
    row.locator("a", has_text="Upload").click()
    page.wait_for_url(f"**/upload?case={CASE}")
    assert page.eval_on_selector("#case", "s => s.value") == CASE
    assert "send back: structure set (RTSTRUCT)" in page.inner_text("#returns")
    # A refused upload is told in the page, in the server's words.
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("not a zip")
    page.set_input_files("#archive", str(not_a_zip))
    page.click("#send")
    page.wait_for_selector("#upload-error:not([hidden])")
    assert "The upload was refused: the archive is not a readable zip file" in page.inner_text("#upload-error")
    assert page.url.endswith(f"/upload?case={CASE}")
    page.click("#clear")

    page.evaluate(WATCH_PROGRESS)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    upload_bytes_per_s = max(zip_path.stat().st_size // 3, 1)  # about three seconds
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": upload_bytes_per_s},
    )
    page.set_input_files("#archive", str(zip_path))
    page.click("#send")
    page.wait_for_function("document.getElementById('progress').value > 0", polling=50)
    screenshot(page, "centre-upload")
    page.wait_for_url("**/submissions/*", timeout=60_000)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    progress = [line for line in console if line.startswith("progress ")]
    assert any("Sent " in line and "%)" in line for line in progress), progress
    assert any(line.startswith("progress 100") for line in progress), progress
    submission_url = page.url

    # The page follows the submission by itself until it is decided.
    page.wait_for_selector("h2:has-text('Outcome')", timeout=120_000)
    assert page.url == submission_url
    assert page.inner_text("#status") == "decided"
    assert expected in page.inner_text("h2:has-text('Outcome')")
    assert "received as attempt 1" in page.inner_text("#upload-note")
    assert page.locator("ol.steps li.done").count() == 4
    submission_id = submission_url.rsplit("/", 1)[1]
    assert page.get_attribute("a:has-text('Read the report')", "href") == f"/submissions/{submission_id}/report"
    screenshot(page, "centre-submission")

    page.click("a:has-text('Submit again')")
    page.wait_for_url(f"**/upload?case={CASE}")
    page.goto("/submissions")
    assert expected in page.inner_text("table.submissions")
    screenshot(page, "centre-submissions")

    # The facility questionnaire, answered in the form.
    page.goto("/questionnaire")
    page.click("a[href='/questionnaire/sabr_lung']")
    _fill_questionnaire(page, "sabr_lung")
    page.click("button:has-text('Send the answers')")
    page.wait_for_selector("#result")
    assert "Your answers were received and decided" in page.inner_text("#result")
    assert "per protocol" in page.inner_text("#result")
    screenshot(page, "centre-questionnaire")

    page.goto("/centre")
    text = page.inner_text("#sabr_lung")
    assert "facility questionnaire\tpassed" in text and expected in text
    screenshot(page, "centre-home")
    assert external == [], f"the pages fetched from outside the app: {external}"
    assert errors == [], f"script errors: {errors}"
