"""Tables for the terminal: providers × techniques with credential status."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from sqlmodel import Session, col, select

from models.db import create_db_engine
from models.enums import CredentialStatus
from models.tables import Credential, Network, Provider, Technique

_STYLE = {
    CredentialStatus.CREDENTIALED: "bold green",
    CredentialStatus.PENDING: "yellow",
    CredentialStatus.LAPSED: "red",
    CredentialStatus.SUSPENDED: "bold red",
}


def _matrix_data(
    database_url: str,
) -> tuple[list[Technique], list[tuple[Provider, Network]], dict[tuple[int, int | None], Credential]]:
    engine = create_db_engine(database_url)
    try:
        with Session(engine) as session:
            techniques = list(session.exec(select(Technique).order_by(Technique.code)).all())
            rows = list(
                session.exec(
                    select(Provider, Network)
                    .where(Provider.network_id == Network.id)
                    .order_by(Network.name, Provider.name)
                ).all()
            )
            creds = session.exec(select(Credential).where(col(Credential.technique_id).is_not(None))).all()
    finally:
        engine.dispose()
    return techniques, rows, {(c.provider_id, c.technique_id): c for c in creds}


def credential_matrix_records(database_url: str, *, include_empty: bool = True) -> list[dict[str, Any]]:
    """The matrix as JSON-ready records, one per provider (network order, then name)::

        {"provider": code, "network": code,
         "credentials": {technique_code: {"status": ..., "valid_until": ISO 8601 UTC or null} or null}}

    ``null`` means no credential for that technique yet; without ``include_empty`` providers with none are left out.
    """
    techniques, rows, status = _matrix_data(database_url)
    records: list[dict[str, Any]] = []
    for provider, network in rows:
        cells: dict[str, dict[str, Any] | None] = {}
        for t in techniques:
            c = status.get((provider.id or 0, t.id))
            cells[t.code] = (
                None
                if c is None
                else {"status": c.status.value, "valid_until": c.valid_until.isoformat() if c.valid_until else None}
            )
        if include_empty or any(cell is not None for cell in cells.values()):
            records.append({"provider": provider.code, "network": network.code, "credentials": cells})
    return records


def credential_matrix(database_url: str, *, include_empty: bool = True) -> Table:
    """One row per provider, one column per technique; cells show the technique credential's status."""
    techniques, rows, status = _matrix_data(database_url)
    table = Table(title="Credentials: providers × techniques", show_lines=False)
    table.add_column("provider")
    table.add_column("network")
    for t in techniques:
        table.add_column(t.code)
    shown = 0
    for provider, network in rows:
        cells = []
        for t in techniques:
            c = status.get((provider.id or 0, t.id))
            if c is None:
                cells.append("·")
            else:
                until = f" to {c.valid_until:%Y-%m-%d}" if c.valid_until else ""
                cells.append(f"[{_STYLE[c.status]}]{c.status.value}{until}[/]")
        if include_empty or any(cell != "·" for cell in cells):
            table.add_row(provider.code, network.code, *cells)
            shown += 1
    table.caption = f"{shown} of {len(rows)} providers shown; · = no submission yet"
    return table
