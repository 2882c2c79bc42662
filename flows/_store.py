"""Database and file-store access for flow tasks: engines by URL, content hashing, atomic copies."""

from __future__ import annotations

import hashlib
import os
import shutil
from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import Engine

from flows.crashpoints import crash_point
from flows.scratch import remove_abandoned, scratch_name
from models.db import create_db_engine

INCOMING = ".incoming-"
"""Name prefix of a folder being copied into the store."""


@lru_cache(maxsize=8)
def engine_for(database_url: str) -> Engine:
    """One engine per URL per process."""
    return create_db_engine(database_url)


def submission_files(source: Path) -> list[Path]:
    """Regular, non-hidden files under ``source``, sorted by relative path."""
    if not source.is_dir():
        raise FileNotFoundError(f"submission folder {source} does not exist or is not a directory")
    files = [
        p
        for p in source.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
    ]
    if not files:
        raise FileNotFoundError(f"submission folder {source} holds no files")
    return sorted(files, key=lambda p: p.relative_to(source).as_posix())


def content_sha256(source: Path) -> str:
    """SHA-256 over every file's relative path and bytes, in path order: equal for equal uploads."""
    digest = hashlib.sha256()
    for path in submission_files(source):
        digest.update(path.relative_to(source).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def copy_atomically(source: Path, destination: Path) -> bool:
    """Copy ``source`` to ``destination`` through a temporary sibling and a rename.

    Returns False (copying nothing) when ``destination`` already exists. On any failure the temporary copy is
    removed, so no partial folder is left behind; a copy whose process was killed is removed by the next copy into
    the same folder (:func:`flows.scratch.remove_abandoned`).
    """
    remove_abandoned(destination.parent, INCOMING)
    if destination.exists():
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.parent / scratch_name(INCOMING)
    try:
        tmp.mkdir()
        for path in submission_files(source):
            target = tmp / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            crash_point("ingest:copying")
        os.replace(tmp, destination)
        crash_point("ingest:stored")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if destination.exists():  # the same files were stored by a concurrent upload in the meantime
            return False
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True
