"""Start and stop a real Prefect server, work pools and workers for tests and benchmarks.

Every process is started in a session of its own and stopped with its whole process group (a worker's flow-run
subprocesses too), also when the test fails. Nothing touches the caller's Prefect profile: each server gets its own
``PREFECT_HOME`` (and so its own SQLite database) under a temporary folder.

Typical use::

    with PrefectServer.started(tmp_path / "prefect") as server:
        server.cli("work-pool", "create", "rtqa", "--type", "process")
        server.cli("deploy", "--name", "credential-submission", cwd=REPO)
        with server.worker("rtqa", cwd=REPO, env={"RTQA_DATABASE_URL": url, "RTQA_DATA_DIR": str(data)}):
            run = server.run_deployment("credential-submission/credential-submission", {...})
            state = server.wait_for_flow_run(run, timeout=300)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
"""The repository root (where ``prefect.yaml`` is)."""

PREFECT = str(Path(sys.executable).with_name("prefect"))
"""The ``prefect`` command of the interpreter running the tests."""

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
"""Prefect state types after which a flow run does not change any more."""

_OWN_SETTINGS = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_PROFILES_PATH", "PREFECT_API_KEY")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], *, timeout: float = 30.0) -> None:
    """Stop ``process``, its process group and every process it started: SIGTERM, then SIGKILL after ``timeout``.

    The process must have been started with ``start_new_session=True`` (its id is then its group's id). Its
    descendants are listed first, by id, so children that moved to a session of their own (a worker's flow runs)
    are stopped too; nothing else is signalled.
    """
    import psutil

    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(descendants, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@dataclass
class PrefectServer:
    """A running ``prefect server start`` with its own ``PREFECT_HOME``."""

    home: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """The environment for a client of this server: the caller's, minus its Prefect profile, plus ``extra``
        (a value of None removes the variable)."""
        env = {k: v for k, v in os.environ.items() if k not in _OWN_SETTINGS}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_CLI_COLORS="false",
            PREFECT_CLI_WRAP_LINES="false",
        )
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    @classmethod
    @contextmanager
    def started(
        cls, home: Path, *, timeout: float = 180.0, args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> Iterator[PrefectServer]:
        """Start a server on a free port, wait until its API answers, and stop it (and any worker) on exit.

        ``args`` go to ``prefect server start`` (e.g. ``["--no-services"]``); ``env`` adds server settings (e.g.
        ``PREFECT_API_DATABASE_CONNECTION_URL`` for a PostgreSQL backend).
        """
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = home / "server.log"
        server_env = {k: v for k, v in os.environ.items() if k not in _OWN_SETTINGS}
        server_env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
        server_env.update(env or {})
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), *args],
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(home=home, port=port, process=process, log_path=log_path)
        try:
            server._wait_healthy(timeout)
            yield server
        finally:
            for worker in server.workers:
                stop_process(worker)
            stop_process(process)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prefect server not healthy after {timeout:.0f} s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        """The end of the server's output."""
        return _tail(self.log_path, tail)

    def cli(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str | None] | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``prefect ARGS`` against this server; raises with its output when it fails."""
        done = subprocess.run(
            [PREFECT, "--no-prompt", *args],
            cwd=cwd,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    @contextmanager
    def worker(
        self, pool: str, *, cwd: Path, env: Mapping[str, str | None] | None = None, poll_seconds: float = 1.0
    ) -> Iterator[subprocess.Popen[bytes]]:
        """A ``prefect worker start --pool POOL`` in ``cwd`` with ``env`` added to :meth:`env` (None removes a
        variable), polling every ``poll_seconds``; stopped with its flow-run processes on exit."""
        log_path = self.home / f"worker-{pool}-{time.monotonic_ns()}.log"
        extra: dict[str, str | None] = {
            "PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds),
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        }
        extra.update(env or {})
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", pool],
                cwd=cwd,
                env=self.env(extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        self.workers.append(process)
        try:
            yield process
        finally:
            stop_process(process)
            self.workers.remove(process)

    def api(self, method: str, path: str, body: Any = None, *, attempts: int = 6) -> Any:
        """One call to the server's REST API; returns the decoded JSON.

        A busy server's SQLite database answers 503 now and then (more so on a loaded machine): such answers and
        dropped connections are retried, waiting 1, 2, 4... seconds.
        """
        for attempt in range(attempts):
            try:
                response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
            else:
                if response.status_code != 503 or attempt == attempts - 1:
                    response.raise_for_status()
                    return response.json() if response.content else None
            time.sleep(2**attempt)
        raise AssertionError("unreachable")

    def deployment_id(self, name: str) -> str:
        """The id of the deployment ``flow-name/deployment-name``."""
        return str(self.api("GET", f"/deployments/name/{name}")["id"])

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        """Create a flow run of a deployment (as ``prefect deployment run`` does); returns its id."""
        run = self.api("POST", f"/deployments/{self.deployment_id(name)}/create_flow_run", {"parameters": parameters})
        return str(run["id"])

    def flow_run(self, run_id: str) -> dict[str, Any]:
        """The flow run as the API returns it."""
        return dict(self.api("GET", f"/flow_runs/{run_id}"))

    def wait_for_flow_run(self, run_id: str, *, timeout: float = 300.0) -> dict[str, Any]:
        """Poll a flow run until its state is final; returns the flow run. Raises TimeoutError with the logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in FINAL_STATES:
                return run
            time.sleep(1.0)
        raise TimeoutError(f"flow run {run_id} not finished after {timeout:.0f} s:\n{self.flow_run_logs(run_id)}")

    def flow_run_logs(self, run_id: str) -> str:
        """Every log line of a flow run (and its task runs), oldest first."""
        logs = self.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"})
        return "\n".join(f"{entry['level']:>2} {entry['message']}" for entry in logs)

    def wait_for_log(self, run_id: str, text: str, *, timeout: float = 60.0) -> str:
        """A flow run's logs once a line holds ``text`` (a run's last logs arrive after its final state); raises
        TimeoutError with the logs so far."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.flow_run_logs(run_id)
            if text in logs:
                return logs
            if time.monotonic() > deadline:
                raise TimeoutError(f"no log line with {text!r} for flow run {run_id} after {timeout:.0f} s:\n{logs}")
            time.sleep(1.0)

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """The artifacts a flow run published."""
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        return list(self.api("POST", "/artifacts/filter", body))

    def task_run_names(self, run_id: str) -> list[str]:
        """Names of a flow run's task runs, in start order."""
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
        return [str(t["name"]) for t in self.api("POST", "/task_runs/filter", body)]


def worker_log(process: subprocess.Popen[bytes], tail: int = 6000) -> str:
    """The end of a worker's output."""
    return _tail(getattr(process, "log_path"), tail)  # noqa: B009


def _tail(path: Path, tail: int) -> str:
    try:
        return path.read_text(errors="replace")[-tail:]
    except FileNotFoundError:
        return ""


__all__ = ["FINAL_STATES", "PREFECT", "REPO", "PrefectServer", "free_port", "stop_process", "worker_log"]
