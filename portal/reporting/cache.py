"""The report cache: ``<data dir>/reports/<submission id>/<key>/`` holds a report's figure files, its
``manifest.json`` and its PDFs.

The key (:attr:`flows.report_data.ReportFacts.key`) changes with the outcome, an override, a rescore or a new report
format, so a changed report lands in a new folder; the old folders of that submission are removed when the new one
is written. A folder is written under a temporary name and renamed into place, so a reader never sees half a
report. One lock per submission keeps two requests from drawing the same report at once; other submissions' reports
and every other request go on meanwhile (the pages call this from FastAPI's thread pool).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

__all__ = [
    "FILE_NAME",
    "KEY",
    "MANIFEST",
    "figure_file",
    "key_dir",
    "read_manifest",
    "submission_lock",
    "write_report",
]

MANIFEST: Final = "manifest.json"
KEY: Final = re.compile(r"^[0-9a-f]{64}$")
"""A report key: SHA-256 hex."""
FILE_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,80}\.(png|svg|pdf)$")
"""Names of the files a report folder may serve."""

_guard = threading.Lock()
_locks: dict[int, threading.Lock] = {}


def _submission_dir(data_dir: Path, submission_id: int) -> Path:
    return Path(data_dir) / "reports" / str(int(submission_id))


def key_dir(data_dir: Path, submission_id: int, key: str) -> Path:
    """The folder of one version of a submission's report.

    Raises:
        ValueError: ``key`` is not a SHA-256 hex digest.
    """
    if not KEY.match(key):
        raise ValueError(f"not a report key: {key!r}")
    return _submission_dir(data_dir, submission_id) / key


@contextmanager
def submission_lock(submission_id: int) -> Iterator[None]:
    """Held while a submission's report is drawn (one drawer per submission in this process)."""
    with _guard:
        lock = _locks.setdefault(int(submission_id), threading.Lock())
    with lock:
        yield


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when the report has not been drawn (or not completely)."""
    try:
        return dict(json.loads((folder / MANIFEST).read_text()))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def write_report(folder: Path, files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> None:
    """Write ``files`` and the manifest as ``folder``, then remove the submission's other report folders."""
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    temporary = parent / f".tmp-{uuid.uuid4().hex}"
    temporary.mkdir()
    try:
        for name, data in files.items():
            if not FILE_NAME.match(name):
                raise ValueError(f"not a report file name: {name!r}")
            (temporary / name).write_bytes(data)
        (temporary / MANIFEST).write_text(json.dumps(dict(manifest), indent=1, default=str))
        try:
            os.rename(temporary, folder)
        except OSError:  # drawn meanwhile by another process: keep theirs
            if read_manifest(folder) is None:
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    for old in parent.iterdir():
        if old != folder and not old.name.startswith(".") and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def figure_file(data_dir: Path, submission_id: int, key: str, name: str) -> Path | None:
    """The cached file ``name`` of that report version, if it exists and the name is one a report writes."""
    if not KEY.match(key) or not FILE_NAME.match(name):
        return None
    path = key_dir(data_dir, submission_id, key) / name
    return path if path.is_file() else None
