"""Temporary folders that a killed process cannot leave behind for good.

A folder made by :func:`scratch_folder` is named ``<prefix><host>-<pid>-<random>``: the host and process that made
it. A process killed before it removes its folder (``kill -9``, a power cut) leaves it there; the next
:func:`remove_abandoned` in the same parent folder removes every such folder whose process no longer runs on this
host. Folders of processes on other hosts, of processes still running, and of names in another form are left
alone (a data directory shared between hosts keeps their leftovers until a process on their host looks).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

__all__ = ["remove_abandoned", "scratch_name"]


def scratch_name(prefix: str) -> str:
    """A new temporary folder name: ``prefix`` then this host, this process id and a random part."""
    return f"{prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_abandoned(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders in ``parent`` named by :func:`scratch_name` with ``prefix`` whose process is gone (made on
    this host by a process id that no longer runs); returns them."""
    host = socket.gethostname()
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in parent.glob(f"{prefix}*"):
        parts = path.name.removeprefix(prefix).rsplit("-", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit() or _running(int(parts[1])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
