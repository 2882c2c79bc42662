"""Time the score-batch flow (``flows/batch.py``) on simulated submissions against a running Prefect server.

Run with ``python perf/bench_batch.py`` (options: ``--count N`` submissions, default 260; ``--workers 1,2`` the Dask
worker counts to time; ``--data DIR`` to keep the simulated submissions between runs; ``--api-url URL`` to use a
running Prefect server instead of starting one; ``--database-url URL`` a PostgreSQL server on which a database per
run is created and dropped, default SQLite in a temporary folder).

Workload: 52 providers (the registry) × 5 library cases, three outlining benchmarks (``lung-sabr-outlining-mini``,
``prostate-sabr-outlining``, ``spine-sabr-outlining``) and two planning benchmarks (``spine-sabr-planning``,
``oligomets-sabr-planning``), each submission simulated with its own deviation (margins and shifts of the PTV;
under-coverage, hot spots, poor conformity) and the simulator's expected outcome. ``--count N`` takes the first
N in provider order, so every count mixes the five cases. Simulating is done once per ``--data`` folder
(``--keep-data``) and timed apart.

For each worker count: a fresh database (schema, registry, the five cases), every submission stored as an upload
would be (timed apart), then one ``score-batch`` flow run on a LocalCluster of that many worker processes:

* wall time of the flow (cluster start, scoring, credentials) and of its scoring phase; submissions per minute
  over the scoring phase;
* orchestration overhead per submission: worker time not spent inside the scoring task body,
  ``(workers × scoring wall − Σ task body seconds) / N`` (Prefect task-run creation and state reports to the
  server, Dask scheduling, results back, idle workers at the end);
* the same overhead measured directly: ``--noop N`` empty tasks (default 200) through the same task runner,
  ``workers × wall / N``;
* outcomes agreeing with the simulator's oracle, and the mean task body time per case (wall clock, and the
  worker process's CPU time: on a shared machine the difference is time spent waiting for a core).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUTLINING = ("lung-sabr-outlining-mini", "prostate-sabr-outlining", "spine-sabr-outlining")
PLANNING = ("spine-sabr-planning", "oligomets-sabr-planning")
CASES = OUTLINING + PLANNING
CONTOUR_DEVIATIONS = ("margin_mm:PTV:1", "margin_mm:PTV:2", "shift_mm:PTV:0,0,2", "margin_mm:PTV:-1", "")
PLAN_DEVIATIONS = ("", "under_coverage:92", "hot_spot:130", "poor_conformity:1.4", "under_coverage:85")
SERVER_OPTIONS = ("--host", "127.0.0.1", "--no-scheduler", "--no-late-runs")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def workload() -> list[dict[str, Any]]:
    """The 260 submissions, provider by provider (each with the five cases): provider, case, deviation, seed."""
    from models.registry import provider_code, registry_entries

    providers = sorted(provider_code(name) for net in registry_entries() for name in net["providers"])
    assert len(providers) == 52, len(providers)
    return [
        {
            "case": case,
            "provider": provider,
            "seed": i,
            "deviation": (PLAN_DEVIATIONS if case in PLANNING else CONTOUR_DEVIATIONS)[i % 5],
        }
        for i, provider in enumerate(providers)
        for case in CASES
    ]


def simulate(data: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Build the cases and write each submission not yet in ``data`` (a hidden ``.expected.json`` marks one as
    complete; hidden files are not part of a submission). Returns the rows with directory, version, expected."""
    from benchmarks.cases import build_case
    from benchmarks.simulator import Deviation, PlanDeviation, simulate_plan_submission, simulate_submission

    built = {case: build_case(case, data / "cases") for case in sorted({r["case"] for r in rows})}
    out_rows = []
    started = time.perf_counter()
    for n, row in enumerate(rows, start=1):
        out = data / "submissions" / row["case"] / row["provider"]
        marker = out / ".expected.json"
        if not marker.is_file():
            text, case = row["deviation"], built[row["case"]]
            if row["case"] in PLANNING:
                plan = simulate_plan_submission(
                    case,
                    provider=row["provider"],
                    deviations=[PlanDeviation.parse(text)] if text else [],
                    seed=row["seed"],
                    out_dir=out,
                    overwrite=True,
                )
                expected = plan.expected_outcome.value if plan.expected_outcome else None
            else:
                sim = simulate_submission(
                    case,
                    provider=row["provider"],
                    deviations=[Deviation.parse(text)] if text else [],
                    seed=row["seed"],
                    out_dir=out,
                    overwrite=True,
                )
                expected = sim.expected_outcome.value
            marker.write_text(json.dumps({"expected": expected}))
            if n % 25 == 0:
                _log(f"simulated {n} of {len(rows)} submissions ({time.perf_counter() - started:.0f} s)")
        expected = json.loads(marker.read_text())["expected"]
        version = built[row["case"]].spec.version
        out_rows.append({**row, "directory": str(out), "version": version, "expected": expected})
    return out_rows


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """``prefect server start`` on a free port with its own PREFECT_HOME (no UI, no scheduler), until exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("prefect")), "server", "start", *SERVER_OPTIONS, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/api"
        try:
            import httpx

            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prefect server did not start: see {home / 'server.log'}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            yield url
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def fresh_database(server_url: str | None, tmp: Path) -> Iterator[str]:
    """A new empty database: on the PostgreSQL server ``server_url`` (dropped after), else a SQLite file."""
    if server_url is None:
        yield f"sqlite:///{tmp / 'rtqa.db'}"
        return
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from models.settings import normalise_database_url

    base = make_url(normalise_database_url(server_url))
    name = f"rtqa_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from flows._store import engine_for

        engine_for.cache_clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(url: str, data_dir: Path, cases_dir: Path, rows: list[dict[str, Any]]) -> list[int]:
    """Schema, registry, cases; every submission stored (status received). Returns the submission ids."""
    from flows.catalogue import build_reference, register_case
    from flows.credentialing import store_submission
    from models.db import create_db_engine, session_scope
    from models.migrate import upgrade
    from models.registry import load_reference_data

    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as session:
        load_reference_data(session, actor="bench")
    engine.dispose()
    for case in sorted({r["case"] for r in rows}):
        register_case.fn(build_reference.fn(case, str(cases_dir)), actor="bench", database_url=url)
    return [
        store_submission(
            r["directory"],
            provider_code=r["provider"],
            case_code=r["case"],
            case_version=r["version"],
            actor="bench",
            database_url=url,
            data_dir=str(data_dir),
        ).submission_id
        for r in rows
    ]


def _noop(i: int) -> int:
    return i


def noop_overhead(n_tasks: int, workers: int) -> dict[str, float]:
    """Empty tasks through the batch's Dask task runner on a warm cluster: wall seconds per task (what each task
    adds to a batch's duration) and worker seconds per task (``workers × wall / n``)."""
    from prefect import flow, task

    from flows.batch import BatchSettings, batch_task_runner

    empty = task(name="noop", persist_result=False)(_noop)

    @flow(name="noop-batch")
    def noop_batch() -> float:
        with batch_task_runner(workers=workers, batch=BatchSettings()) as runner:
            for f in [runner.submit(empty, {"i": -i}) for i in range(1, 2 * workers + 1)]:
                f.result()  # every worker up and warm before the clock starts
            started = time.perf_counter()
            futures = [runner.submit(empty, {"i": i}) for i in range(n_tasks)]
            for f in futures:
                f.result()
            return time.perf_counter() - started

    wall = noop_batch()
    return {"wall_per_task": wall / n_tasks, "worker_seconds_per_task": workers * wall / n_tasks}


def run_batch(args: argparse.Namespace, rows: list[dict[str, Any]], workers: int, data: Path) -> dict[str, Any]:
    from flows.batch import score_batch
    from flows.runtime import using_settings
    from models.settings import Settings

    with tempfile.TemporaryDirectory(dir=data) as tmp_name:
        tmp = Path(tmp_name)
        with fresh_database(args.database_url, tmp) as url:
            started = time.perf_counter()
            ids = prepare(url, tmp / "data", data / "cases", rows)
            ingest = time.perf_counter() - started
            _log(f"{workers} worker(s): {len(ids)} submissions stored in {ingest:.0f} s; scoring")
            started = time.perf_counter()
            with using_settings(Settings(database_url=url, data_dir=tmp / "data")):
                result = score_batch(ids, actor="bench", workers=workers)
            flow_wall = time.perf_counter() - started
    subs = result["submissions"]
    expected = {i: r for i, r in zip(ids, rows, strict=True)}
    agree = sum(1 for s in subs if s.get("outcome") == expected[s["submission_id"]]["expected"])
    body = [s.get("seconds", 0.0) for s in subs]
    by_case: dict[str, list[float]] = defaultdict(list)
    for s in subs:
        by_case[expected[s["submission_id"]]["case"]].append(s.get("seconds", 0.0))
    scoring = float(result["scoring_seconds"])
    return {
        "workers": workers,
        "count": len(ids),
        "ingest_seconds": ingest,
        "flow_seconds": flow_wall,
        "scoring_seconds": scoring,
        "per_minute": 60.0 * len(ids) / scoring,
        "overhead_seconds": (workers * scoring - sum(body)) / len(ids),
        "body_mean_seconds": statistics.mean(body),
        "body_cpu_mean_seconds": statistics.mean(s.get("cpu_seconds", 0.0) for s in subs),
        "by_case_mean_seconds": {case: statistics.mean(v) for case, v in sorted(by_case.items())},
        "statuses": dict(sorted(Counter(str(s.get("status")) for s in subs).items())),
        "agree_with_oracle": agree,
        "distinct_workers": len(result["workers"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=260)
    parser.add_argument("--workers", default="1,2", help="Comma-separated Dask worker counts to time.")
    parser.add_argument("--noop", type=int, default=200, help="Empty tasks for the direct overhead measure.")
    parser.add_argument("--data", type=Path, default=ROOT / ".rtqa" / "bench-batch")
    parser.add_argument("--api-url", default=None)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server URL (default: SQLite).")
    parser.add_argument("--keep-data", action="store_true", help="Keep the simulated submissions afterwards.")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    started = time.perf_counter()
    args.data.mkdir(parents=True, exist_ok=True)
    rows = simulate(args.data, workload()[: args.count])
    simulated = time.perf_counter() - started
    _log(f"{len(rows)} submissions ready ({simulated:.0f} s)")
    with contextlib.ExitStack() as stack:
        api = args.api_url or stack.enter_context(prefect_server(Path(tempfile.mkdtemp(prefix="prefect-bench-"))))
        os.environ["PREFECT_API_URL"] = api
        _log(f"Prefect server {api}")
        runs = [run_batch(args, rows, int(w), args.data) for w in args.workers.split(",")]
        noop = {int(w): noop_overhead(args.noop, int(w)) for w in args.workers.split(",")}
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=30)  # the runs' last logs reach the server before it stops
    total = time.perf_counter() - started
    if not args.keep_data:
        shutil.rmtree(args.data, ignore_errors=True)
    print()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (shared machine)")
    print(f"submissions: {len(rows)} ({', '.join(sorted({r['case'] for r in rows}))})")
    print(f"total time: {total / 60:.1f} min (simulating {simulated / 60:.1f} min, once per --data folder)")
    for r in runs:
        print(
            f"{r['workers']} worker(s): scoring {r['scoring_seconds']:.0f} s = {r['per_minute']:.1f} submissions/min; "
            f"flow {r['flow_seconds']:.0f} s (cluster start, scoring, credentials); "
            f"storing {r['ingest_seconds']:.0f} s; "
            f"overhead {r['overhead_seconds']:.2f} s/submission; task body mean {r['body_mean_seconds']:.2f} s "
            f"(CPU {r['body_cpu_mean_seconds']:.2f} s); "
            f"statuses {r['statuses']}; agree with the oracle {r['agree_with_oracle']}/{r['count']}; "
            f"workers used {r['distinct_workers']}"
        )
        print("   mean task body by case: " + ", ".join(f"{c} {s:.2f} s" for c, s in r["by_case_mean_seconds"].items()))
    for w, m in noop.items():
        print(
            f"empty tasks, {w} worker(s): {m['wall_per_task']:.3f} s wall per task, "
            f"{m['worker_seconds_per_task']:.3f} s of worker time per task"
        )
    print(json.dumps({"total_seconds": total, "runs": runs, "noop": noop}))


if __name__ == "__main__":
    main()
