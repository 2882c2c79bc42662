"""Browser tests: the app served by uvicorn on a free port (running submissions itself, as `rtqa serve` does),
driven by Playwright in Debian's headless Chromium. Screenshots of each page go to docs/screenshots/.

Chromium is found at ``RTQA_CHROMIUM`` or /usr/bin/chromium (`.ci/run` installs Debian's package); Playwright never
downloads a browser here.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.engine import Engine

from models.settings import Settings
from portal.app import create_app
from tests.portal.conftest import tokens  # noqa: F401  (users and their API tokens)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",  # the machine has no internet; keep Chromium from trying
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    return os.environ.get("RTQA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(settings: Settings, engine: Engine) -> Iterator[str]:
    """The app on http://127.0.0.1:<free port>, running uploaded submissions in-process; stopped after the test."""
    app = create_app(settings.model_copy(update={"run_submissions": True}), engine=engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test web server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API keeps an asyncio loop marked as running in this thread while it is open,
    and later tests in the same worker that call ``asyncio.run`` (or Prefect's sync-compatible client) would then
    fail. Module scope closes it as soon as the worker moves on to another module."""
    executable = _chromium()
    if executable is None:
        pytest.skip("Chromium is not installed (apt install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose relative URLs go to the live server."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    pg = context.new_page()
    yield pg
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """Write a full-page screenshot of ``page`` to docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, token: str, next_path: str = "") -> None:
    """Sign in through the sign-in page as a user would."""
    page.goto("/sign-in" + (f"?next={next_path}" if next_path else ""))
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()
