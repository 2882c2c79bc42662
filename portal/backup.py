"""Back up and restore rtqa: the database and the submission store, with a manifest of hashes.

A backup is a folder:

* ``database.pgdump`` (PostgreSQL: ``pg_dump -Fc``) or ``database.sqlite3`` (SQLite: the online backup API);
* ``store/``: a copy of the data directory's stored files (:data:`STORE_PARTS`: submissions, built and imported case
  references, added protocol versions);
* ``manifest.json``: the time, the Alembic revision, the database kind, the audit chain's head, the data directory it
  came from, and the size and SHA-256 of the database file and of every stored file.

The database is dumped before the store is copied: stored files are written once and never changed, so every file
the dump names is in the copy (files stored meanwhile are copied too, harmlessly).

A restore checks every hash first, refuses a database that already holds tables and a data directory whose store
is not empty, then restores the database (``pg_restore`` or the SQLite backup API) and the store. Stored paths
(``submission.storage_path``, ``benchmark_case.reference_path``) that pointed into the old data directory are moved
to the new one, recorded in the audit trail (``backup.restored``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from models.settings import Settings, normalise_database_url
from models.types import utcnow

MANIFEST = "manifest.json"
STORE_DIR = "store"
STORE_PARTS = ("submissions", "cases", "protocols")
"""The data directory's folders a backup holds; uploads in progress, caches, the DICOM staging area, Prefect's home
and the page-signing key are not kept (a new key is made on first use: open pages need a reload)."""

FORMAT = 1


class BackupError(Exception):
    """A backup or restore refused; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class BackupSummary:
    directory: Path
    kind: str
    revision: str | None
    files: int
    audit_events: int
    outside_store: int
    """Stored paths in the database outside the data directory (not in the backup)."""


@dataclass(frozen=True)
class RestoreSummary:
    kind: str
    revision: str | None
    files: int
    relocated: int
    upgraded_to: str | None = None
    """The schema revision the restored database was upgraded to, when the backup's was older."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _kind(url: str) -> str:
    backend = make_url(normalise_database_url(url)).get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise BackupError(f"cannot back up a {backend} database; rtqa supports PostgreSQL and SQLite")
    return backend


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``url`` (no password) and the environment carrying the password."""
    parsed = make_url(normalise_database_url(url))
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(tool: str, args: list[str], env: dict[str, str]) -> None:
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} not found on PATH; install the PostgreSQL client tools (same major version)")
    done = subprocess.run([tool, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(f"{tool} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def _sqlite_path(url: str) -> Path:
    return Path(str(make_url(normalise_database_url(url)).database))


def _facts(url: str) -> tuple[str | None, int, str | None, int]:
    """The Alembic revision, the audit chain's event count and head, and the tables in the database."""
    engine = sa.create_engine(normalise_database_url(url))
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            revision = events = head = None
            if "alembic_version" in tables:
                revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            if "audit_chain_head" in tables:
                row = conn.execute(sa.text("SELECT events, last_hash FROM audit_chain_head")).first()
                events, head = (row[0], row[1]) if row else (0, None)
            return revision, int(events or 0), head, len(tables)
    finally:
        engine.dispose()


def _store_files(root: Path) -> list[Path]:
    return sorted(p for part in STORE_PARTS if (root / part).is_dir() for p in (root / part).rglob("*") if p.is_file())


def _outside(url: str, data_dir: Path) -> int:
    engine = sa.create_engine(normalise_database_url(url))
    prefix = str(data_dir.resolve()) + os.sep
    try:
        with engine.connect() as conn:
            paths = [*conn.execute(sa.text("SELECT storage_path FROM submission")).scalars()]
            paths += [*conn.execute(sa.text("SELECT reference_path FROM benchmark_case")).scalars()]
    finally:
        engine.dispose()
    import benchmarks

    shipped = str(Path(benchmarks.__file__).resolve().parent) + os.sep  # files rtqa ships (questionnaire forms)
    return sum(1 for p in paths if not str(p).startswith((prefix, shipped)))


def backup(settings: Settings, target: Path) -> BackupSummary:
    """Write a backup of the database at ``settings`` and its data directory's store into the new folder ``target``.

    Raises:
        BackupError: ``target`` holds files, the database cannot be dumped, or a tool is missing.
    """
    url = settings.resolved_database_url
    kind = _kind(url)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} already holds files; give a new or empty folder")
    revision, events, head, _ = _facts(url)
    target.mkdir(parents=True, exist_ok=True)
    if kind == "postgresql":
        database = target / "database.pgdump"
        conninfo, env = _libpq(url)
        _run("pg_dump", ["-Fc", "--no-owner", "--no-privileges", "-f", str(database), "-d", conninfo], env)
    else:
        database = target / "database.sqlite3"
        source = sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True)
        copy = sqlite3.connect(database)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    data_dir = settings.data_dir.resolve()
    files = []
    for path in _store_files(data_dir):
        relative = path.relative_to(data_dir)
        destination = target / STORE_DIR / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
        files.append(
            {"path": relative.as_posix(), "size": destination.stat().st_size, "sha256": sha256_file(destination)}
        )
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": utcnow().isoformat(),
        "alembic_revision": revision,
        "database": {"kind": kind, "file": database.name, "sha256": sha256_file(database)},
        "audit": {"events": events, "head": head},
        "data_dir": str(data_dir),
        "store": {"parts": list(STORE_PARTS), "file_count": len(files), "files": files},
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return BackupSummary(target, kind, revision, len(files), events, _outside(url, data_dir))


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of the backup in ``source``, after checking the database file and every stored file against it.

    Raises:
        BackupError: no manifest, or a file missing or differing from its hash.
    """
    path = source / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{source} is not an rtqa backup (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError) as err:
        raise BackupError(f"{path}: cannot read it ({err})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r} is not {FORMAT}; use the matching rtqa")
    try:
        checks = [(source / manifest["database"]["file"], manifest["database"]["sha256"])]
        checks += [(source / STORE_DIR / f["path"], f["sha256"]) for f in manifest["store"]["files"]]
        counted = manifest["store"]["file_count"]
        for key in ("created_at", "alembic_revision", "data_dir", "audit"):  # read by the restore
            manifest[key]
    except (KeyError, TypeError) as err:
        raise BackupError(f"{path}: incomplete manifest (no {err}); use another backup") from None
    for entry in manifest["store"]["files"]:
        parts = Path(str(entry["path"])).parts
        if Path(str(entry["path"])).is_absolute() or ".." in parts or not parts or parts[0] not in STORE_PARTS:
            raise BackupError(f"{path}: stored file {entry['path']!r} is outside the store; nothing was restored")
    if len(manifest["store"]["files"]) != counted:
        raise BackupError(
            f"{path}: the file list and the file count differ; the manifest was changed, use another backup"
        )
    for file, expected in checks:
        if not file.is_file():
            raise BackupError(f"{file}: missing from the backup")
        if sha256_file(file) != expected:
            raise BackupError(f"{file}: differs from the manifest's SHA-256 (damaged or changed); nothing was restored")
    return manifest


def restore(settings: Settings, source: Path, *, actor: str) -> RestoreSummary:
    """Restore the backup in ``source`` into the (empty) database and data directory of ``settings``.

    Raises:
        BackupError: a damaged backup, a database kind other than the backup's, a database that is not empty, a
            store that is not empty, or a tool that failed.
    """
    manifest = read_manifest(source)
    url = settings.resolved_database_url
    kind = _kind(url)
    head = _known_revision(manifest["alembic_revision"])
    if kind != manifest["database"]["kind"]:
        raise BackupError(f"the backup is of a {manifest['database']['kind']} database; RTQA_DATABASE_URL is {kind}")
    if kind == "sqlite" and not _sqlite_path(url).exists():
        _sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    tables = _facts(url)[3]
    if tables:
        from models.db import masked_url

        raise BackupError(f"the database {masked_url(url)} is not empty ({tables} tables); restore into a new database")
    data_dir = settings.data_dir.resolve()
    for part in STORE_PARTS:
        if (data_dir / part).is_dir() and any((data_dir / part).iterdir()):
            raise BackupError(f"{data_dir / part} is not empty; restore into a new data directory (RTQA_DATA_DIR)")
    database = source / manifest["database"]["file"]
    if kind == "postgresql":
        conninfo, env = _libpq(url)
        _run("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error", "-d", conninfo, str(database)], env)
    else:
        backup_copy = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        target = sqlite3.connect(_sqlite_path(url))
        try:
            backup_copy.backup(target)
        finally:
            target.close()
            backup_copy.close()
    upgraded_to = None
    if manifest["alembic_revision"] != head:
        from models.migrate import upgrade

        upgrade(url)
        upgraded_to = head
    for entry in manifest["store"]["files"]:
        destination = data_dir / entry["path"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / STORE_DIR / entry["path"], destination)
    relocated = _relocate(url, Path(manifest["data_dir"]), data_dir, source=source, manifest=manifest, actor=actor)
    return RestoreSummary(kind, manifest["alembic_revision"], len(manifest["store"]["files"]), relocated, upgraded_to)


def _known_revision(revision: str | None) -> str | None:
    """This rtqa's newest schema revision, after checking it knows ``revision`` (the backup's).

    Raises:
        BackupError: the backup was made by an rtqa with a schema this one does not know (a newer one).
    """
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    from models.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        known = revision is not None and script.get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise BackupError(
            f"the backup's schema revision {revision!r} is not one this rtqa knows (made by a newer version?); "
            "restore it with the rtqa that made it"
        )
    return script.get_current_head()


def _relocate(url: str, old: Path, new: Path, *, source: Path, manifest: dict[str, Any], actor: str) -> int:
    """Point stored paths under ``old`` at ``new``; record the restore in the audit trail. Returns the rows moved."""
    from sqlmodel import col, select

    from models.audit import record_audit
    from models.db import create_db_engine, session_scope
    from models.tables import BenchmarkCase, Submission

    moved = 0
    old_prefix, new_prefix = str(old).rstrip("/\\") + os.sep, str(new).rstrip("/\\") + os.sep
    engine = create_db_engine(url)
    try:
        with session_scope(engine) as session:
            if old_prefix != new_prefix:
                for sub in session.exec(select(Submission).where(col(Submission.storage_path).startswith(old_prefix))):
                    sub.storage_path = new_prefix + sub.storage_path[len(old_prefix) :]
                    session.add(sub)
                    moved += 1
                query = select(BenchmarkCase).where(col(BenchmarkCase.reference_path).startswith(old_prefix))
                for case in session.exec(query):
                    case.reference_path = new_prefix + case.reference_path[len(old_prefix) :]
                    session.add(case)
                    moved += 1
            record_audit(
                session,
                actor=actor,
                action="backup.restored",
                subject_type="backup",
                subject_id=manifest["created_at"],
                before={"data_dir": str(old), "audit_head": manifest["audit"]["head"]},
                after={"data_dir": str(new), "stored_paths_moved": moved, "files": manifest["store"]["file_count"]},
                reason=f"restored from {source.resolve()}",
            )
    finally:
        engine.dispose()
    return moved
