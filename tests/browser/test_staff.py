"""QA staff in a real browser: the queue filtered, a decided submission reviewed and overridden, the audit log and
the users page."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.browser.conftest import screenshot, sign_in
from tests.portal.staff_util import build_queue


@pytest.mark.slow
def test_staff_reviews_and_overrides_a_submission(page: Any, tokens: dict[str, str], engine: Engine) -> None:
    queue = build_queue(engine, with_received=False)
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)

    sign_in(page, tokens["staff"])
    page.wait_for_url("**/staff/queue")
    assert page.locator("tr[data-submission]").count() == 4
    page.select_option("select[name=technique]", "sabr_lung")
    page.select_option("select[name=network]", "north-west")
    page.select_option("select[name=status]", "decided")
    page.click("form.inline button[type=submit]")
    page.wait_for_url("**/staff/queue?status=decided*technique=sabr_lung*network=north-west")
    rows = page.locator("tr[data-submission]")
    assert [rows.nth(i).get_attribute("data-submission") for i in range(rows.count())] == [
        str(queue.planning),
        str(queue.second),
        str(queue.first),
    ]
    screenshot(page, "staff-queue")

    page.click(f"tr[data-submission='{queue.second}'] a:has-text('Review')")
    page.wait_for_url(f"**/submissions/{queue.second}/review")
    assert page.inner_text("[data-outcome]") == "unacceptable variation"
    assert "synonym of SpinalCord" in page.inner_text("table.mapping")
    assert page.locator("input[name=confirm_not_latest]").count() == 0  # the latest attempt

    page.select_option("#level", "justified_variation")
    page.fill("#justification", "PTV margin follows the centre's ITV policy, agreed with the trial team")
    page.click("#override button[type=submit]")
    page.wait_for_url(f"**/submissions/{queue.second}/review?done=overridden*")
    assert page.inner_text("[data-outcome]") == "justified variation"
    assert "The outcome was overridden" in page.inner_text("[role=status]")
    history = page.inner_text("table.history")
    assert "agreed with the trial team" in history and "superseded" in history
    screenshot(page, "staff-review")

    page.goto("/staff/audit")
    page.select_option("select[name=action]", "outcome.overridden")
    page.click("form.inline button[type=submit]")
    page.wait_for_url("**/staff/audit?*action=outcome.overridden*")
    assert page.locator("tr[data-event]").count() == 1
    assert "qa@rttqa.test" in page.inner_text("table.audit")
    screenshot(page, "staff-audit")

    page.goto("/staff/users")
    assert page.locator("tr[data-user]").count() == 3
    screenshot(page, "staff-users")
    assert external == [], f"the pages fetched from outside the app: {external}"


@pytest.mark.slow
def test_staff_issues_a_token_shown_once(page: Any, tokens: dict[str, str]) -> None:
    sign_in(page, tokens["staff"], next_path="/staff/users")
    page.click("tr[data-user='comm@nhs.test'] a:has-text('Tokens')")
    page.fill("#label", "monthly report")
    page.fill("#days", "30")
    page.click("form.stack button[type=submit]")
    token = page.inner_text("#token")
    assert token.startswith("rtqa_")
    page.click("button[data-copy]")
    # The status is written when the clipboard's promise settles, after the click returns.
    page.wait_for_function("document.querySelector('[data-copy-status]').textContent !== ''")
    assert page.inner_text("[data-copy-status]") in {"Copied.", "Selected: press Ctrl+C (or ⌘C) to copy."}
    page.click("text=Back to comm@nhs.test")
    assert "monthly report" in page.inner_text("table.tokens") and token not in page.content()
