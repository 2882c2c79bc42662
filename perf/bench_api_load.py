"""Load on the credential status API: ``GET /api/v1/providers/{code}/credentials`` from 100 concurrent clients.

The server is ``rtqa serve``'s app under uvicorn in a subprocess (``--workers`` processes, default 1), on the
database named by ``RTQA_DATABASE_URL`` (PostgreSQL; a throw-away database is created and dropped when the URL
names a server, so nothing of yours is touched) or, with ``--sqlite``, on a fresh SQLite file. The catalogue is
loaded (52 providers in 11 networks) and every provider is given a credential row per technique and per trial, as
after a national credentialing round.

The clients are ``httpx.AsyncClient`` tasks in one asyncio process (the tool: httpx 0.28 over asyncio, no
locust on this machine), each with its own staff bearer token and keep-alive connection, asking for a random
provider's credentials. Two load shapes, each measured after a warm-up:

* **paced** (the expected use: many people and dashboards each asking now and then): each of the 100 clients sends
  one request every ``--interval`` seconds (default 1 s, so about 100 requests/s offered), at random phases;
* **closed loop** (the ceiling): each client sends its next request as soon as the last one is answered, so the
  server is saturated; latency then reflects queueing behind the other 99 clients.

Printed per shape: requests, errors, throughput, and latency p50 / p90 / p99 / max in milliseconds; then the CPU
time spent per answered request by the app (the uvicorn processes) and by PostgreSQL (the server processes of the
benchmark's database; a lower bound, see :meth:`ServerCPU.used`), read from /proc with psutil before and after the
shape, and the machine's 1-minute load average at the end of the shape. The client shares the machine's cores with
the server, as it would on a one-box install; the figure is honest for that. Latency depends on what else the
machine runs (the load average says how busy it was); the CPU per request much less so.

Run: ``RTQA_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python perf/bench_api_load.py``
(``--clients 100 --seconds 20 --interval 1 --workers 1``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = """
import sys
from datetime import timedelta
from sqlmodel import select
from models.auth import issue_token
from models.db import create_db_engine, session_scope
from models.enums import CredentialStatus, Role
from models.migrate import upgrade
from models.registry import load_reference_data
from models.settings import get_settings
from models.tables import Credential, Provider, Technique, Trial, User
from models.types import utcnow

clients = int(sys.argv[1])
s = get_settings()
upgrade(s.resolved_database_url)
e = create_db_engine(s.resolved_database_url)
with session_scope(e) as session:
    load_reference_data(session, actor="bench")
with session_scope(e) as session:
    now = utcnow()
    providers = session.exec(select(Provider)).all()
    for p in providers:
        for t in session.exec(select(Technique)).all():
            session.add(Credential(provider_id=p.id, technique_id=t.id, status=CredentialStatus.CREDENTIALED,
                                   granted_at=now, valid_until=now + timedelta(days=365), evidence={"stages": []}))
        for t in session.exec(select(Trial)).all():
            session.add(Credential(provider_id=p.id, trial_id=t.id, status=CredentialStatus.CREDENTIALED,
                                   granted_at=now, valid_until=now + timedelta(days=365), evidence={"stages": []}))
    users = [User(email=f"load{i}@rttqa.test", name=f"Load {i}", role=Role.STAFF) for i in range(clients)]
    session.add_all(users)
    session.flush()
    print("PROVIDERS", " ".join(p.code for p in providers))
    for u in users:
        print("TOKEN", issue_token(session, user=u, actor="bench", expires_at=now + timedelta(days=1)))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _psql(admin_url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _client(
    client: httpx.AsyncClient,
    providers: list[str],
    stop_at: float,
    interval: float | None,
    out: list[float],
    errors: list[str],
) -> None:
    next_at = time.perf_counter() + (random.random() * interval if interval else 0.0)
    while True:
        if interval:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
        if time.perf_counter() >= stop_at:
            return
        started = time.perf_counter()
        try:
            r = await client.get(f"/api/v1/providers/{random.choice(providers)}/credentials")
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:120]}")
                continue
        except httpx.HTTPError as err:
            errors.append(type(err).__name__)
            continue
        out.append(time.perf_counter() - started)


class ServerCPU:
    """CPU seconds used so far by the app (the uvicorn process and its workers) and by each of PostgreSQL's server
    processes for ``database`` (None: SQLite, no server)."""

    def __init__(self, app_pid: int, database: str | None) -> None:
        self.app = psutil.Process(app_pid)
        self.database = database

    @staticmethod
    def _seconds(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # ended meanwhile
            return 0.0
        return float(times.user + times.system)

    def read(self) -> tuple[float, dict[int, float]]:
        """(app seconds, PostgreSQL seconds by backend process id)."""
        app = sum(self._seconds(p) for p in [self.app, *self.app.children(recursive=True)])
        backends: dict[int, float] = {}
        if self.database is not None:
            marker = f" {self.database} "  # a backend's title: "postgres: 15/main: USER DATABASE HOST(PORT) STATE"
            for proc in psutil.process_iter(["cmdline"]):
                title = " ".join(proc.info["cmdline"] or []) + " "
                if title.startswith("postgres:") and marker in title:
                    backends[proc.pid] = self._seconds(proc)
        return app, backends

    def used(self, since: tuple[float, dict[int, float]]) -> tuple[float, float, int]:
        """CPU seconds of the app and of PostgreSQL since the reading ``since``, and how many PostgreSQL backends
        started meanwhile. A backend that ended meanwhile (a pool's overflow connection closed) is not counted, so
        the PostgreSQL figure is a lower bound; the number started says whether that happened."""
        app, backends = self.read()
        db = sum(seconds - since[1].get(pid, 0.0) for pid, seconds in backends.items())
        return app - since[0], db, len(backends.keys() - since[1].keys())


async def _shape(
    clients: list[httpx.AsyncClient], providers: list[str], seconds: float, interval: float | None
) -> tuple[list[float], list[str], float]:
    out: list[float] = []
    errors: list[str] = []
    cpu = time.process_time()
    server = _SERVER[0].read() if _SERVER else None
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_client(c, providers, stop_at, interval, out, errors) for c in clients))
    elapsed = time.perf_counter() - started
    _CLIENT_CPU.append((time.process_time() - cpu) / elapsed)
    if server is not None:
        _SERVER_CPU.append(_SERVER[0].used(server))
    return out, errors, elapsed


_CLIENT_CPU: list[float] = []
"""Per shape: the load generator's CPU seconds per second (its share of a core), printed with the figures."""

_SERVER: list[ServerCPU] = []
"""The server's CPU probe, once it runs."""

_SERVER_CPU: list[tuple[float, float, int]] = []
"""Per shape: CPU seconds of the app and of PostgreSQL during the shape, and PostgreSQL backends started."""


async def _run(base: str, tokens: list[str], providers: list[str], seconds: float, interval: float) -> None:
    """Open every client first (an AsyncClient is slow to create), warm up, then measure each shape."""
    clients = [
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {t}"}, timeout=60, verify=False)
        for t in tokens
    ]
    try:
        await _shape(clients, providers, 3.0, None)  # warm-up: connections, caches, tokens' last-used times
        for name, pace in ((f"paced {interval:g}s", interval), ("closed loop", None)):
            _report(name, *await _shape(clients, providers, seconds, pace))
    finally:
        for c in clients:
            await c.aclose()


def _report(name: str, latencies: list[float], errors: list[str], elapsed: float) -> None:
    ms = [x * 1000 for x in latencies]
    if not ms:
        raise SystemExit(f"{name}: every request failed ({', '.join(sorted(set(errors)))})")
    print(
        f"{name:12s} requests {len(ms):6d}  errors {len(errors):3d}  throughput {len(ms) / elapsed:7.1f}/s  "
        f"p50 {statistics.median(ms):6.1f} ms  p90 {_percentile(ms, 90):6.1f}  p99 {_percentile(ms, 99):6.1f}  "
        f"max {max(ms):6.1f}  (client CPU {_CLIENT_CPU[-1]:.0%} of a core)"
    )
    app, db, started = _SERVER_CPU[-1]
    print(
        f"{'':12s} server CPU per request: app {app / len(ms) * 1000:.2f} ms, PostgreSQL >= {db / len(ms) * 1000:.2f} "
        f"ms ({started} backends started); load average {os.getloadavg()[0]:.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per load shape")
    parser.add_argument("--interval", type=float, default=1.0, help="paced shape: seconds between a client's requests")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--sqlite", action="store_true", help="a fresh SQLite file instead of PostgreSQL")
    args = parser.parse_args(argv)

    url = os.environ.get("RTQA_DATABASE_URL", "")
    if not args.sqlite and not url.startswith("postgresql"):
        raise SystemExit("set RTQA_DATABASE_URL to a PostgreSQL server URL (or pass --sqlite)")
    with tempfile.TemporaryDirectory(prefix="rtqa-load-") as tmp:
        home = Path(tmp)
        env = os.environ | {"RTQA_DATA_DIR": str(home / "data"), "PYTHONPATH": str(ROOT)}
        database = f"rtqa_load_{os.getpid()}"
        admin = url
        if args.sqlite:
            env.pop("RTQA_DATABASE_URL", None)
        else:
            from sqlalchemy.engine import make_url

            _psql(admin, f'CREATE DATABASE "{database}"')
            env["RTQA_DATABASE_URL"] = make_url(url).set(database=database).render_as_string(hide_password=False)
        try:
            seeded = subprocess.run(
                [sys.executable, "-c", SEED, str(args.clients)], env=env, check=True, capture_output=True, text=True
            ).stdout.splitlines()
            providers = next(line for line in seeded if line.startswith("PROVIDERS")).split()[1:]
            tokens = [line.split()[1] for line in seeded if line.startswith("TOKEN ")]
            port = _free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "portal.app:create_app", "--factory", "--port", str(port),
                 "--log-level", "warning", "--no-access-log", "--workers", str(args.workers)],
                env=env, cwd=home,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"
                for _ in range(600):
                    try:
                        if httpx.get(base + "/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                _SERVER.append(ServerCPU(server.pid, None if args.sqlite else database))
                kind = "SQLite" if args.sqlite else "PostgreSQL"
                print(
                    f"{kind}, {len(providers)} providers, {args.clients} clients, {args.workers} uvicorn worker(s), "
                    f"{os.cpu_count()} cores shared by clients and server, {args.seconds:.0f} s per shape"
                )
                asyncio.run(_run(base, tokens, providers, args.seconds, args.interval))
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            if not args.sqlite:
                _psql(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
