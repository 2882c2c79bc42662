"""QA staff start a flow from the pages in a real browser and watch its run page follow the state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import screenshot, sign_in

CASE = "lung-sabr-outlining-mini"


@pytest.fixture(autouse=True)
def _runs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Prefect server here: the live server runs started flows in-process."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


@pytest.mark.slow
def test_staff_start_a_flow_and_follow_its_run(page: Any, tokens: dict[str, str]) -> None:
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)

    sign_in(page, tokens["staff"], next_path="/staff/flows")
    page.wait_for_url("**/staff/flows")
    assert page.locator("section.flow").count() >= 6
    assert page.locator("nav a[aria-current=page]").inner_text() == "Flows"
    screenshot(page, "staff-flows")

    # A protocol version that does not exist comes back in one line, with what was typed kept.
    rescore = page.locator("#flow-rescore-protocol")
    rescore.locator("input[name=protocol_id]").fill("uk-lung-sabr")
    rescore.locator("input[name=version]").fill("9.9")
    rescore.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "has no version '9.9'" in page.inner_text("[role=alert]")
    assert page.locator("#flow-rescore-protocol input[name=version]").input_value() == "9.9"

    # Publishing builds the case's reference DICOM (seconds): the run page opens before it has finished, and its
    # script follows GET /api/v1/flows/runs/{id} until the state is Completed.
    page.locator("#flow-publish-case input[name=case_code]").fill(CASE)
    page.locator("#flow-publish-case button[type=submit]").click()
    page.wait_for_url("**/staff/flows/runs/*")
    run_id = page.inner_text("[data-run-id]")
    assert page.url.endswith(f"/staff/flows/runs/{run_id}")
    assert page.inner_text("[data-run-state]") in ("Scheduled", "Running")
    assert page.get_attribute("[data-run]", "data-finished") == "no"
    page.wait_for_function("document.querySelector('[data-run-state]').textContent === 'Completed'", timeout=120_000)
    assert page.get_attribute("[data-run]", "data-finished") == "yes"  # set by the script when the run finished
    assert f'"case_code": "{CASE}"' in page.inner_text("[data-run-result]")
    screenshot(page, "staff-flow-run")
    assert external == [], f"the pages fetched from outside the app: {external}"
