"""Throw-away databases for tests: SQLite files, or PostgreSQL databases next to ``RTQA_DATABASE_URL``."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from models.settings import normalise_database_url


def base_url() -> str | None:
    """The PostgreSQL URL the tests run against, or None for SQLite."""
    url = os.environ.get("RTQA_DATABASE_URL")
    return normalise_database_url(url) if url else None


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def _admin_engine(url: str) -> sa.Engine:
    return sa.create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def new_database(tmp_dir: Path, *, template: str | None = None) -> str:
    """A fresh empty database (or a copy of ``template``); PostgreSQL if RTQA_DATABASE_URL is set, else SQLite."""
    base = base_url()
    if base is None or not is_postgres(base):
        path = tmp_dir / f"rtqa-{uuid.uuid4().hex[:8]}.db"
        if template is not None:
            shutil.copyfile(make_url(template).database or "", path)
        return f"sqlite:///{path}"
    name = f"{make_url(base).database}_t{uuid.uuid4().hex[:10]}"
    admin = _admin_engine(base)
    try:
        with admin.connect() as conn:
            clause = f' TEMPLATE "{make_url(template).database}"' if template else ""
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{clause}'))
    finally:
        admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Remove a database made by :func:`new_database`."""
    if not is_postgres(url):
        Path(make_url(url).database or "").unlink(missing_ok=True)
        return
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        admin.dispose()
