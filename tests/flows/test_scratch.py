"""Temporary folders left by killed processes are removed; those of running processes and other hosts are not."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from flows.scratch import remove_abandoned, scratch_name


def test_removes_only_folders_of_processes_gone(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    host = socket.gethostname()
    abandoned = tmp_path / f".incoming-{host}-{dead_pid}-abc"
    ours = tmp_path / scratch_name(".incoming-")
    other_host = tmp_path / f".incoming-{host}x-{dead_pid}-abc"
    old_form = tmp_path / ".incoming-0123456789abcdef"
    other_prefix = tmp_path / f".upload-{host}-{dead_pid}-abc"
    for folder in (abandoned, ours, other_host, old_form, other_prefix):
        (folder / "CT").mkdir(parents=True)
        (folder / "CT" / "a.dcm").write_bytes(b"x")
    assert ours.name.startswith(f".incoming-{host}-")
    assert remove_abandoned(tmp_path, ".incoming-") == [abandoned]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (ours, other_host, old_form, other_prefix)
    )
    assert remove_abandoned(tmp_path / "missing", ".incoming-") == []
