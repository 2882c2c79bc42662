"""Signing in and out in a real browser; the API docs render from vendored files."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import screenshot, sign_in


def test_sign_in_error_then_docs_then_sign_out(page: Any, tokens: dict[str, str]) -> None:
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)

    sign_in(page, "rtqa_not-a-token")
    assert "unknown, revoked or expired" in page.inner_text("[role=alert]")
    screenshot(page, "sign-in")

    sign_in(page, tokens["staff"], next_path="/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "rtqa" in page.inner_text(".swagger-ui .info .title")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["rtqa_session"]["httpOnly"] and cookies["rtqa_session"]["sameSite"] == "Lax"

    page.goto("/sign-in")
    page.click("header .signout button")
    page.wait_for_url("**/sign-in")
    page.goto("/")
    assert page.url.endswith("/sign-in?next=/")
    assert external == [], f"the pages fetched from outside the app: {external}"
