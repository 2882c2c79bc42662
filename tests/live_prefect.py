"""A real Prefect server for tests whose task runs happen in other processes (Dask workers): ``prefect server
start`` on a free local port with a temporary PREFECT_HOME, ready once ``/api/health`` answers, stopped after."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STARTUP_SECONDS = 180.0
"""Starting a server takes 10-30 s on two busy cores; allow for a loaded machine."""

QUIET = ("--no-scheduler", "--no-late-runs")
"""Services a test server does without (nothing is scheduled)."""


def _die_with_parent() -> None:
    """In the server process: be sent SIGTERM when the test process dies (Linux), so a killed test run leaves no
    server behind."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """Run a Prefect server (no UI, no scheduler) under ``home``; yields its API URL. Its other services stay on:
    task runs in other processes are recorded from their events by the server's task run recorder."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    prefect = Path(sys.executable).with_name("prefect")
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(prefect),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-scheduler",
            "--no-late-runs",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {process.returncode}: see {home / 'server.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server not healthy after {STARTUP_SECONDS:.0f} s: see {home / 'server.log'}"
                )
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
