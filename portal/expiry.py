"""Credentials whose validity ends soon: the ``/expiring`` page and its export.

The rows are exactly :func:`models.credentials.expiring_credentials` (the API's ``/api/v1/credentials/expiring``):
credentialed technique and trial credentials whose validity ends within the window, soonest first. A credential
whose validity has already ended but that has not been marked lapsed yet is included, with a negative number of
days left. *Days left* counts calendar days in UTC from today to the valid-until date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from models.credentials import expiring_credentials
from models.tables import Network, Provider
from portal.credential_cells import ymd
from portal.exports import Cell, ExportTable

MAX_DAYS = 3650
"""The longest window asked about (ten years), as the API's ``within_days`` allows."""


class WindowError(ValueError):
    """The number of days is not a whole number from 0 to :data:`MAX_DAYS`."""


def parse_days(text: str | None, *, default: int, name: str = "days") -> int:
    """The window in days from a query parameter: ``default`` when absent or empty.

    Raises:
        WindowError: not a whole number from 0 to 3650; the message names the parameter and the value.
    """
    if text is None or not text.strip():
        return default
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_DAYS:
        raise WindowError(f"{name} must be a whole number of days from 0 to {MAX_DAYS}, not {text!r}")
    return int(value)


@dataclass(frozen=True)
class ExpiringRow:
    """A credential ending soon."""

    provider_code: str
    provider_name: str
    network_code: str
    network_name: str
    scope: str
    """``technique`` or ``trial``."""
    code: str
    valid_until: datetime
    days_left: int


def expiring_rows(session: Session, *, within_days: int, now: datetime) -> list[ExpiringRow]:
    """Credentials ending within ``within_days`` of ``now``, soonest first, with provider and network."""
    networks = {
        p.code: (n.code, n.name)
        for p, n in session.exec(select(Provider, Network).where(Provider.network_id == Network.id)).all()
    }
    rows = []
    for view in expiring_credentials(session, within_days=within_days, now=now):
        assert view.valid_until is not None  # expiring_credentials only returns credentials with an end
        network_code, network_name = networks[view.provider_code]
        rows.append(
            ExpiringRow(
                provider_code=view.provider_code,
                provider_name=view.provider_name,
                network_code=network_code,
                network_name=network_name,
                scope=view.scope,
                code=view.code,
                valid_until=view.valid_until,
                days_left=(view.valid_until.date() - now.date()).days,
            )
        )
    return rows


def expiring_export(rows: list[ExpiringRow], *, within_days: int, now: datetime) -> ExportTable:
    """The rows as an export table."""
    columns = ("provider", "provider_name", "network", "network_name", "scope", "code", "valid_until", "days_left")
    records: list[dict[str, Cell]] = [
        {
            "provider": r.provider_code,
            "provider_name": r.provider_name,
            "network": r.network_code,
            "network_name": r.network_name,
            "scope": r.scope,
            "code": r.code,
            "valid_until": ymd(r.valid_until),
            "days_left": r.days_left,
        }
        for r in rows
    ]
    return ExportTable(
        filename=f"rtqa-expiring-{within_days}-days-{ymd(now)}",
        columns=columns,
        rows=tuple(records),
        meta={"within_days": within_days, "generated_at": now.isoformat()},
    )


__all__ = ["MAX_DAYS", "ExpiringRow", "WindowError", "expiring_export", "expiring_rows", "parse_days"]
