"""Receive a clinical-size submission by DICOM C-STORE and measure the receiver: time and peak memory.

Run with ``python perf/bench_dicom_receive.py`` (options: ``--repeat N``, ``--data DIR`` to build the DICOM data once
and reuse it). The data is ``perf/submission_case.py``'s planning submission: CT 150 × 512 × 512 (150 files of
0.5 MB), the RT Structure Set (20 structures), the RT Plan and the plan dose (about 2 mm grid), on the frame of
reference of the reference case, which is registered as a planning benchmark case.

Each run uses a fresh SQLite database and data folder, registers the case and the sender's AE title, starts
``rtqa dicom serve`` as a subprocess on a free port (the receiver's own process, as in production) and, once it
listens, pushes the folder with dcmtk's ``storescu``. Timed: from starting ``storescu`` until it exits (association,
transfer and, per instance, the receiver writing the dataset to a file as it arrives, checking it and moving it into
the staging area), then until the submission row exists (the study identified as the case, hashed, copied into the
submission store, audited). Memory: the receiver's peak resident set (``VmHWM`` from ``/proc/PID/status``), read
after start-up (interpreter, imports, the case index with the reference CT's headers) and after the push; the
difference is what receiving cost. CPU: the receiver's user + system seconds during the push (``psutil``).
After each run the same push goes to dcmtk's ``storescp`` (files written to a folder, nothing checked): the floor
for the transfer time on the machine at that moment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AET = "PERF_TPS"
PROVIDER = "the-christie"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vm_hwm_bytes(pid: int) -> int:
    """Peak resident set of process ``pid`` (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def _prepare(workdir: Path, reference: Path) -> str:
    """A migrated SQLite database with the registry, the perf case registered and the sender's AE title."""
    from sqlmodel import Session, select

    from benchmarks.cases import content_hash
    from models.db import create_db_engine
    from models.dicom_ae import add_ae_title
    from models.enums import QAStage
    from models.migrate import upgrade
    from models.registry import load_reference_data
    from models.tables import BenchmarkCase, Technique

    url = f"sqlite:///{workdir / 'rtqa.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    with Session(engine) as session:
        load_reference_data(session, actor="perf")
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        session.add(
            BenchmarkCase(
                case_code="perf-lung-planning",
                version="1.0",
                title="clinical-size lung SABR planning (perf)",
                technique_id=lung.id or 0,
                stage=QAStage.PLANNING_BENCHMARK,
                protocol_id="uk-lung-sabr",
                protocol_version="1.0",
                reference_sha256=content_hash(reference),
                reference_path=str(reference),
            )
        )
        add_ae_title(session, ae_title=AET, provider_code=PROVIDER, actor="perf")
        session.commit()
    engine.dispose()
    return url


def _submissions(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM submission")).scalar_one())
    finally:
        engine.dispose()


def run_once(submission: Path, reference: Path) -> dict[str, Any]:
    """One push into a fresh receiver; returns the timings and memory figures."""
    with tempfile.TemporaryDirectory(prefix="rtqa-perf-receive-") as tmp:
        workdir = Path(tmp)
        url = _prepare(workdir, reference)
        port = _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RTQA_DATABASE_URL": url,
            "RTQA_DATA_DIR": str(workdir / "data"),
            "PREFECT_HOME": str(workdir / "prefect"),
        }
        rtqa = Path(sys.executable).parent / "rtqa"
        receiver = subprocess.Popen(
            [str(rtqa), "dicom", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stderr is not None
            lines = [receiver.stderr.readline()]
            while "receiving as" not in lines[-1] and lines[-1] and len(lines) < 20:  # log lines, then the banner
                lines.append(receiver.stderr.readline())
            if "receiving as" not in lines[-1]:
                raise RuntimeError(f"the receiver did not start: {lines}")
            threading.Thread(target=receiver.stderr.read, daemon=True).start()  # keep the pipe drained
            process = psutil.Process(receiver.pid)
            idle_peak = _vm_hwm_bytes(receiver.pid)
            cpu_before = sum(process.cpu_times()[:2])
            started = time.perf_counter()
            sent = subprocess.run(
                ["storescu", "-nh", "+sd", "+r", "-aet", AET, "-aec", "RTQA", "127.0.0.1", str(port), str(submission)],
                capture_output=True,
                text=True,
                check=False,
            )
            transferred = time.perf_counter()
            if sent.returncode != 0:
                raise RuntimeError(f"storescu failed: {sent.stderr[-2000:]}")
            while _submissions(url) < 1:
                if time.perf_counter() - transferred > 300:
                    raise RuntimeError("no submission after 300 s")
                time.sleep(0.02)
            done = time.perf_counter()
            time.sleep(0.5)  # the association thread finishes its audit record and leaves
            peak = _vm_hwm_bytes(receiver.pid)
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            staged = list((workdir / "data" / "dicom-staging").rglob("*.dcm"))
            stored = [p for p in (workdir / "data" / "submissions").rglob("*.dcm")]
        finally:
            receiver.terminate()
            receiver.wait(60)
    return {
        "transfer_s": transferred - started,
        "finalise_s": done - transferred,
        "total_s": done - started,
        "receiver_cpu_s": cpu,
        "idle_peak_mb": idle_peak / 1e6,
        "peak_mb": peak / 1e6,
        "receiving_mb": (peak - idle_peak) / 1e6,
        "stored_files": len(stored),
        "left_in_staging": len(staged),
    }


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def peer_once(submission: Path) -> dict[str, Any]:
    """The same push into dcmtk's ``storescp`` writing the files to a folder: the transfer with no checks, no
    staging and no database (the floor for ``transfer_s``)."""
    with tempfile.TemporaryDirectory(prefix="rtqa-perf-storescp-") as tmp:
        port = _free_port()
        scp = subprocess.Popen(["storescp", "-aet", "RTQA", "-od", tmp, str(port)])
        try:
            _wait_listening(port)
            started = time.perf_counter()
            sent = subprocess.run(
                ["storescu", "-nh", "+sd", "+r", "-aet", AET, "-aec", "RTQA", "127.0.0.1", str(port), str(submission)],
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.perf_counter() - started
            peak = _vm_hwm_bytes(scp.pid)
            written = len(list(Path(tmp).iterdir()))
        finally:
            scp.terminate()
            scp.wait(30)
    if sent.returncode != 0:
        raise RuntimeError(f"storescu to storescp failed: {sent.stderr[-2000:]}")
    return {"transfer_s": elapsed, "peak_mb": peak / 1e6, "files_written": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder for the DICOM data, built if incomplete, kept")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from perf.submission_case import DONE, build

    data = args.data or Path(tempfile.mkdtemp(prefix="rtqa-perf-data-"))
    if not (data / DONE).is_file():
        started = time.perf_counter()
        build(data)
        print(f"built the data in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    submission, reference = data / "planning", data / "reference"
    files = [p for p in submission.rglob("*.dcm")]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    runs, peers = [], []
    for _ in range(args.repeat):
        runs.append(run_once(submission, reference))
        peers.append(peer_once(submission))
    summary = {
        "files": len(files),
        "megabytes": round(size_mb, 1),
        "largest_file_mb": round(max(p.stat().st_size for p in files) / 1e6, 1),
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0] if k.endswith(("_s", "_mb"))},
        "storescp": peers,
        "storescp_median": {k: statistics.median(r[k] for r in peers) for k in ("transfer_s", "peak_mb")},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
