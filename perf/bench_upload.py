"""Upload a clinical-size submission zip (about 100 MB) to ``POST /api/v1/submissions`` and measure the answer
time and the web process's peak memory.

The server is ``rtqa serve``'s app under uvicorn in a subprocess, on a fresh SQLite data directory, with the
submission runner off so only the intake is measured (stream to disk, unpack, hash, store, record). The zip holds
the planning submission of ``perf/submission_case.py`` (CT 150 × 512 × 512, RTSTRUCT, RTPLAN, RTDOSE), stored
uncompressed, padded with further CT copies to at least ``--megabytes`` (default 100 MB, 10^6 bytes).

Figures printed (``--repeat`` uploads, each of new content so none is answered "already received"):

* answer time: from the first byte sent to the response; and after the last byte (server-side work after the
  body arrived, which is what a centre waits for once its upload bar is full);
* peak memory: the web process's ``VmHWM`` (maximum resident set) before the first upload and after the last,
  read from /proc; the difference is what uploading cost in memory.

Run: ``python perf/bench_upload.py [--data DIR] [--megabytes 100] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "perf"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vm(pid: int, key: str) -> int:
    """A /proc/<pid>/status memory figure in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def build_zip(data: Path, target: Path, megabytes: float, salt: int) -> int:
    """The planning submission zipped uncompressed; CT copies added until the zip reaches ``megabytes``."""
    import submission_case

    if not (data / submission_case.DONE).exists():
        print(f"building the clinical-size case under {data} (once; about a minute)...", flush=True)
        submission_case.build(data)
    planning = data / "planning"
    files = sorted(p for p in planning.rglob("*") if p.is_file())
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in files:
            zf.write(path, path.relative_to(planning).as_posix())
        first_ct = sorted((planning / "CT").glob("*.dcm"))[0]
        zf.write(first_ct, f"upload-{salt}/{first_ct.name}")  # a path of its own: new content for each upload
        copy = 0
        while target.stat().st_size < megabytes * 1e6:
            copy += 1
            for path in sorted((planning / "CT").glob("*.dcm")):
                zf.write(path, f"CT-copy{copy}-{salt}/{path.name}")
                zf.fp.flush()  # type: ignore[union-attr]
                if target.stat().st_size >= megabytes * 1e6:
                    break
    return target.stat().st_size


class _Reader:
    """A file read in 1 MiB chunks that notes when its last byte was handed to the client."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("rb")
        self.finished_at: float | None = None

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(1 << 20 if size < 0 else min(size, 1 << 20))
        if not chunk and self.finished_at is None:
            self.finished_at = time.perf_counter()
        return chunk


def _setup(home: Path) -> tuple[dict[str, str], str]:
    env = os.environ | {"RTQA_DATA_DIR": str(home / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("RTQA_DATABASE_URL", None)
    script = """
from models.settings import get_settings
from models.db import create_db_engine, session_scope
from models.migrate import upgrade
from models.registry import load_reference_data
from models.auth import issue_token
from models.enums import Role
from models.tables import Provider, User
from flows.catalogue import publish_case
from sqlmodel import select
from datetime import timedelta
from models.types import utcnow
s = get_settings(); upgrade(s.resolved_database_url)
e = create_db_engine(s.resolved_database_url)
with session_scope(e) as session:
    load_reference_data(session, actor="bench")
publish_case("lung-sabr-outlining-mini", actor="bench", data_dir=str(s.data_dir))
with session_scope(e) as session:
    p = session.exec(select(Provider).where(Provider.code == "the-christie")).one()
    u = User(email="bench@centre.test", name="Bench", role=Role.CENTRE, provider_id=p.id)
    session.add(u)
    session.flush()
    print(issue_token(session, user=u, actor="bench", expires_at=utcnow() + timedelta(days=1)))
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    return env, out.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "rtqa-perf-submission")
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rtqa-upload-") as tmp:
        home = Path(tmp)
        zips = [home / f"upload-{i}.zip" for i in range(args.repeat)]
        sizes = [build_zip(args.data, z, args.megabytes, i) for i, z in enumerate(zips)]
        env, token = _setup(home)
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "portal.app:create_app",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=home,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(base + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            headers = {"Authorization": f"Bearer {token}"}
            httpx.get(base + "/api/v1/me", headers=headers)  # warm up: imports, first query
            hwm_before = _vm(server.pid, "VmHWM")
            totals, after_body = [], []
            for path in zips:
                reader = _Reader(path)
                started = time.perf_counter()
                response = httpx.post(
                    base + "/api/v1/submissions",
                    headers=headers,
                    data={"case": "lung-sabr-outlining-mini"},
                    files={"archive": (path.name, reader, "application/zip")},  # type: ignore[dict-item]
                    timeout=600,
                )
                ended = time.perf_counter()
                if response.status_code != 202:
                    raise SystemExit(f"upload answered {response.status_code}: {response.text}")
                totals.append(ended - started)
                after_body.append(ended - (reader.finished_at or ended))
            hwm_after = _vm(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(timeout=30)

    def fmt(values: list[Any]) -> str:
        return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    print(f"zip size: {min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f} MB, stored (uncompressed), {args.repeat} uploads")
    print(f"answer time, first byte to response: {fmt(totals)}")
    print(f"answer time, last byte to response:  {fmt(after_body)}")
    print(
        f"web process peak RSS (VmHWM): {hwm_before / 2**20:.0f} MiB before, {hwm_after / 2**20:.0f} MiB after "
        f"(+{(hwm_after - hwm_before) / 2**20:.0f} MiB for a {max(sizes) / 2**20:.0f} MiB upload)"
    )


if __name__ == "__main__":
    main()
