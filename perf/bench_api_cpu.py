"""CPU per request of the credential status API, ``GET /api/v1/providers/{code}/credentials``, in one process.

The app (``portal.app.create_app``) is called in-process through ``httpx.ASGITransport``, with no socket and no
HTTP parser, on the same seeded database as ``perf/bench_api_load.py`` (52 providers, a credential per technique
and trial each, staff tokens): PostgreSQL from ``RTQA_DATABASE_URL`` (a throw-away database, created and dropped)
or, with ``--sqlite``, a fresh SQLite file. ``--concurrency`` tasks send ``--requests`` requests in all, each for a
random provider, after a warm-up of 200.

Printed: the process's CPU time per request (``time.process_time``, which counts this process's threads, not the
database server's) and wall time per request. The CPU time is the app's cost per request plus httpx's client-side
work (a small, fixed share), without uvicorn's HTTP parsing; it is the figure to compare between versions of the
request path. ``--profile FILE`` writes a cProfile of the measured requests (sequential only).

Run: ``RTQA_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python perf/bench_api_cpu.py``
(``--requests 2000 --concurrency 1``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_api_load import SEED, _psql  # noqa: E402


async def _requests(app: object, tokens: list[str], providers: list[str], n: int, concurrency: int) -> None:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://rtqa.test") as client:
        remaining = [n]

        async def worker(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            while remaining[0] > 0:
                remaining[0] -= 1
                r = await client.get(f"/api/v1/providers/{random.choice(providers)}/credentials", headers=headers)
                if r.status_code != 200:
                    raise SystemExit(f"{r.status_code} {r.text[:200]}")

        await asyncio.gather(*(worker(tokens[i % len(tokens)]) for i in range(concurrency)))


def _measure(url: str, data_dir: Path, args: argparse.Namespace) -> None:
    from models.settings import Settings
    from portal.app import create_app

    seeded = subprocess.run(
        [sys.executable, "-c", SEED, "20"],
        env=os.environ | {"RTQA_DATABASE_URL": url, "RTQA_DATA_DIR": str(data_dir), "PYTHONPATH": str(HERE.parent)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    providers = next(line for line in seeded if line.startswith("PROVIDERS")).split()[1:]
    tokens = [line.split()[1] for line in seeded if line.startswith("TOKEN ")]
    app = create_app(Settings(database_url=url, data_dir=data_dir))
    try:
        asyncio.run(_requests(app, tokens, providers, 200, args.concurrency))
        profile = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        asyncio.run(_requests(app, tokens, providers, args.requests, args.concurrency))
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        app.state.engine.dispose()
    print(
        f"{args.requests} requests, concurrency {args.concurrency}: CPU {cpu / args.requests * 1000:.2f} ms/request, "
        f"wall {wall / args.requests * 1000:.2f} ms/request (load average {os.getloadavg()[0]:.2f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--sqlite", action="store_true", help="a fresh SQLite file instead of PostgreSQL")
    parser.add_argument("--profile", help="write a cProfile of the measured requests to this file")
    args = parser.parse_args(argv)
    url = os.environ.get("RTQA_DATABASE_URL", "")
    if not args.sqlite and not url.startswith("postgresql"):
        raise SystemExit("set RTQA_DATABASE_URL to a PostgreSQL server URL (or pass --sqlite)")
    with tempfile.TemporaryDirectory(prefix="rtqa-cpu-") as tmp:
        home = Path(tmp)
        if args.sqlite:
            _measure(f"sqlite:///{home / 'rtqa.db'}", home / "data", args)
            return
        from sqlalchemy.engine import make_url

        database = f"rtqa_cpu_{os.getpid()}"
        _psql(url, f'CREATE DATABASE "{database}"')
        try:
            _measure(make_url(url).set(database=database).render_as_string(hide_password=False), home / "data", args)
        finally:
            _psql(url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
