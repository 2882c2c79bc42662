"""Reports and the national view in a real browser: a centre opens its decided submissions' reports (every figure
loads), QA staff open the national view with a network highlighted. Screenshots: report-outlining,
report-planning, report-dosimetry, national."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from models.settings import Settings
from tests.browser.conftest import screenshot, sign_in
from tests.portal.reports.world import OUTLINING, build_world

pytestmark = pytest.mark.slow  # runs six submissions through the flow first


def _loaded_widths(page: Any) -> list[int]:
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return list(page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)"))


def test_reports_and_national_view(page: Any, settings: Settings, engine: Engine, tmp_path: Path) -> None:
    world = build_world(settings, engine, tmp_path)
    external: list[str] = []
    page.on(
        "request",
        lambda r: external.append(r.url) if r.url.startswith("http") and "127.0.0.1" not in r.url else None,
    )

    sign_in(page, world.tokens["centre"])
    for stage, figures in (("outlining", 8), ("planning", 2), ("dosimetry", 4)):  # + the national strip each
        page.goto(f"/submissions/{world.ids[stage]}/report")
        assert page.locator("#outcome .status").count() == 1
        widths = _loaded_widths(page)
        assert len(widths) == figures and all(w > 0 for w in widths), (stage, widths)
        screenshot(page, f"report-{stage}")
    pdf = page.request.get(f"/submissions/{world.ids['planning']}/report.pdf")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF-")

    page.click("header .signout button")
    page.wait_for_url("**/sign-in")
    sign_in(page, world.tokens["staff"], next_path="/national")
    page.select_option("#case", f"{OUTLINING}@1.0")  # changing the case shows it at once (national.js)
    page.wait_for_load_state()
    page.select_option("#network", "north-west")
    page.wait_for_url("**network=north-west**")
    assert page.locator("tr.highlight").count() == 1  # the Christie is the network's only centre with a value
    widths = _loaded_widths(page)
    assert len(widths) == 1 and widths[0] > 0
    screenshot(page, "national")
    assert external == [], f"the pages fetched from outside the app: {external}"
