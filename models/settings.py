"""Runtime settings, read from ``RTQA_*`` environment variables.

No settings object is created at import time: call :func:`get_settings` (or build :class:`Settings` directly in
tests) and pass it down.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".rtqa")
"""Where the embedded default keeps its SQLite file and stored submissions, relative to the working directory."""


class Settings(BaseSettings):
    """rtqa configuration.

    ``database_url`` defaults to a SQLite file inside ``data_dir``; set ``RTQA_DATABASE_URL`` to use PostgreSQL
    (``postgresql+psycopg://user@host:5432/db``).
    """

    model_config = SettingsConfigDict(env_prefix="RTQA_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Directory for the database file and uploads.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; None means SQLite in data_dir.")
    credential_validity_days: int = Field(
        default=730,
        ge=1,
        description=(
            "Policy setting: how long a credential stays valid after it is granted. Re-credentialing is normally "
            "triggered by changes (new linac, planning system, technique), so this is a backstop, not a fact."
        ),
    )
    expiry_warning_days: int = Field(default=60, ge=0, description="Credentials expiring within this are flagged.")
    max_upload_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Largest upload accepted, in bytes (the zip, or all files together)."
    )
    max_archive_files: int = Field(default=5000, ge=1, description="Most entries a zip upload may hold.")
    max_uncompressed_bytes: int = Field(
        default=8 * 1024**3, ge=1, description="Largest total size a zip upload may expand to, in bytes."
    )
    max_compression_ratio: float = Field(
        default=100.0,
        gt=1.0,
        description="Largest uncompressed / compressed size of any zip entry (and of the whole archive).",
    )
    secret_key: str | None = Field(
        default=None,
        description=(
            "Key for the pages' CSRF tokens. None: a random key kept in data_dir/secret_key (made on first use, "
            "readable by its owner only); set it when several web processes share one database."
        ),
    )
    session_hours: int = Field(default=12, ge=1, le=24 * 7, description="How long a page sign-in lasts, in hours.")
    run_submissions: bool = Field(
        default=False,
        description=(
            "Whether the web service runs uploaded submissions' remaining steps itself (`rtqa serve` turns it on; "
            "with PREFECT_API_URL set they go to the credential-submission deployment instead)."
        ),
    )
    flow_runs: Literal["auto", "prefect", "inline"] = Field(
        default="auto",
        description=(
            "How flows started by this process run: 'prefect' as Prefect flow runs (on the server PREFECT_API_URL "
            "names; without one Prefect starts a temporary local server, several seconds per command); 'inline' by "
            "calling the same task functions directly, with no Prefect run records; 'auto' (default) is 'prefect' "
            "when PREFECT_API_URL is set in the environment, else 'inline'."
        ),
    )
    qa_team_email: str | None = Field(
        default=None,
        description="Address of the QA team, sent a copy of every expiry reminder.",
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server for notifications; unset: the outbox table is the record, unsent."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_from: str = Field(default="rtqa@localhost", description="Sender address of notifications.")
    smtp_username: str | None = Field(default=None, description="SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password (never printed or logged).")
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection with STARTTLS.")

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: ``database_url`` or the SQLite file in ``data_dir``."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'rtqa.db').resolve()}"

    @property
    def submissions_dir(self) -> Path:
        """Where accepted submissions are stored, one folder per content hash."""
        return self.data_dir / "submissions"

    @property
    def uploads_dir(self) -> Path:
        """Where uploads are streamed and unpacked before ingest (emptied again whatever the result)."""
        return self.data_dir / "uploads"

    def resolved_secret_key(self) -> bytes:
        """``secret_key``, or the key kept in ``data_dir/secret_key`` (written once, mode 0600)."""
        if self.secret_key:
            return self.secret_key.encode("utf-8")
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)  # first writer wins; a concurrent writer's key is discarded
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip().encode("utf-8")

    @property
    def cases_dir(self) -> Path:
        """Where built benchmark cases are stored."""
        return self.data_dir / "cases"


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for bare ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_settings() -> Settings:
    """Read settings from the environment now."""
    return Settings()
