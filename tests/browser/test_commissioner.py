"""A commissioner in a real browser: the network matrix and its CSV download, a trial, the expiring list and a
provider, on a database seeded with known credentials (tests/portal/commissioning_world.py)."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.browser.conftest import screenshot, sign_in
from tests.portal.commissioning_world import LUNG_ELIGIBLE, seed_credentials

pytestmark = pytest.mark.slow


def test_commissioner_reads_network_trial_expiring_and_provider(
    page: Any, tokens: dict[str, str], engine: Engine
) -> None:
    seed_credentials(engine)
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)

    sign_in(page, tokens["commissioner"])
    assert page.url.endswith("/network")
    assert page.locator("#matrix tr[data-provider]").count() == 52
    assert page.locator("#matrix tbody[data-network]").count() == 11
    leeds = page.locator('tr[data-provider="leeds-teaching-hospitals"]')
    leeds.locator("details.stages summary").first.click()
    stages = leeds.locator("ul.stage-list").first
    assert stages.is_visible()
    assert "planning benchmark" in stages.inner_text() and "failed" in stages.inner_text()
    screenshot(page, "network")

    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert re.fullmatch(r"rtqa-credentials-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    with Path(download.path()).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 52 and len({r["network"] for r in rows}) == 11
    assert {r["provider"] for r in rows if r["sabr_lung_status"] == "credentialed"} == LUNG_ELIGIBLE

    page.select_option("#network-filter", "north-west")
    page.click("main form.inline button[type=submit]")
    page.wait_for_url("**/network?network=north-west")
    assert page.locator("#matrix tr[data-provider]").count() == 3

    page.click('header nav a[href="/trials"]')
    page.click('a[href="/trials/uk-lung-sabr"]')
    page.wait_for_url("**/trials/uk-lung-sabr")
    eligible = page.locator("#eligible-providers tr[data-provider]")
    assert {eligible.nth(i).get_attribute("data-provider") for i in range(eligible.count())} == LUNG_ELIGIBLE
    assert "sabr_lung planning benchmark: failed" in page.inner_text("#not-eligible-providers")
    screenshot(page, "trial")

    page.click('header nav a[href="/expiring"]')
    page.wait_for_url("**/expiring")
    assert page.locator("#expiring tr[data-provider]").count() == 6
    page.fill("#days", "20")
    page.click("main form.inline button[type=submit]")
    page.wait_for_url("**/expiring?days=20")
    assert page.locator("#expiring tr[data-provider]").count() == 4
    screenshot(page, "expiring")
    page.goto("/expiring?days=ten")
    assert "days must be a whole number of days from 0 to 3650" in page.inner_text("[role=alert]")

    page.goto("/expiring")
    page.click('#expiring tr[data-provider="the-royal-marsden"] a[href="/providers/the-royal-marsden"]')
    page.wait_for_url("**/providers/the-royal-marsden")
    assert "4 of 4 stages passed" in page.inner_text("#technique-credentials")
    assert page.locator("#submissions a[href^='/submissions/']").count() == 4
    screenshot(page, "provider")
    assert external == [], f"the pages fetched from outside the app: {external}"
