"""The network matrix: every provider, grouped by radiotherapy network, against every technique.

Each cell is the provider's technique credential (:mod:`portal.credential_cells`); the counts per network are of
technique credentials by status. The same rows feed the ``/network`` page and its CSV/JSON export, one row per
provider (52 without a filter).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models.enums import CredentialStatus, QAStage
from models.stages import required_stages
from models.tables import Credential, Network, Provider, Technique
from portal.credential_cells import (
    NOT_STARTED,
    CredentialCell,
    cell_from_credential,
    cell_not_started,
    joined,
    ymd,
)
from portal.exports import Cell, ExportTable


class UnknownNetworkError(ValueError):
    """A network filter names no network; the message lists the codes there are."""


@dataclass(frozen=True)
class MatrixRow:
    """One provider and its credential for each technique, in the matrix's technique order."""

    provider_code: str
    provider_name: str
    network_code: str
    network_name: str
    cells: tuple[CredentialCell, ...]


@dataclass(frozen=True)
class NetworkCounts:
    """A network's providers and its technique credentials by status (``not_started``: provider-technique pairs
    with no credential yet)."""

    code: str
    name: str
    providers: int
    credentialed: int
    pending: int
    lapsed: int
    suspended: int
    not_started: int
    providers_credentialed: int
    """Providers credentialed for at least one technique."""


@dataclass(frozen=True)
class CredentialMatrix:
    """The matrix for one network (``network``) or all of them (``None``)."""

    techniques: tuple[tuple[str, str], ...]
    """(code, name) of every technique, by code: the columns."""
    rows: tuple[MatrixRow, ...]
    counts: tuple[NetworkCounts, ...]
    """Every network's counts (not only the filtered one), by network name."""
    network: str | None

    def groups(self) -> list[tuple[str, str, list[MatrixRow]]]:
        """The rows grouped by network: (code, name, rows), in row order."""
        out: list[tuple[str, str, list[MatrixRow]]] = []
        for row in self.rows:
            if not out or out[-1][0] != row.network_code:
                out.append((row.network_code, row.network_name, []))
            out[-1][2].append(row)
        return out

    def export(self, now: datetime) -> ExportTable:
        """One row per provider: network and provider, then per technique its status, valid-until date, stages
        passed and what is outstanding."""
        columns = ["network", "network_name", "provider", "provider_name"]
        for code, _ in self.techniques:
            columns += [f"{code}_status", f"{code}_valid_until", f"{code}_stages", f"{code}_outstanding"]
        rows = []
        for row in self.rows:
            record: dict[str, Cell] = {
                "network": row.network_code,
                "network_name": row.network_name,
                "provider": row.provider_code,
                "provider_name": row.provider_name,
            }
            for (code, _), cell in zip(self.techniques, row.cells, strict=True):
                record[f"{code}_status"] = cell.status
                record[f"{code}_valid_until"] = ymd(cell.valid_until) or None
                record[f"{code}_stages"] = cell.stage_summary
                record[f"{code}_outstanding"] = joined(cell.outstanding) or None
            rows.append(record)
        suffix = f"-{self.network}" if self.network else ""
        return ExportTable(
            filename=f"rtqa-credentials-{ymd(now)}{suffix}",
            columns=tuple(columns),
            rows=tuple(rows),
            meta={
                "network": self.network,
                "generated_at": now.isoformat(),
                "counts": [asdict(c) for c in self.counts],
            },
        )


def network_choices(session: Session) -> list[tuple[str, str]]:
    """(code, name) of every network, by name."""
    return [(n.code, n.name) for n in session.exec(select(Network).order_by(Network.name)).all()]


def credential_matrix(session: Session, *, network: str | None = None) -> CredentialMatrix:
    """Every provider (of ``network``, if given) against every technique.

    Raises:
        UnknownNetworkError: ``network`` is not a network code.
    """
    networks = network_choices(session)
    if network is not None and network not in {code for code, _ in networks}:
        raise UnknownNetworkError(
            f"no network with code {network!r}; choose one of: " + ", ".join(code for code, _ in networks)
        )
    techniques = list(session.exec(select(Technique).order_by(Technique.code)).all())
    required: dict[int, list[tuple[QAStage, str]]] = {
        t.id or 0: required_stages(session, technique_id=t.id or 0) for t in techniques
    }
    creds: dict[tuple[int | None, int | None], Credential] = {
        (c.provider_id, c.technique_id): c
        for c in session.exec(select(Credential).where(col(Credential.technique_id).is_not(None))).all()
    }
    everyone = session.exec(
        select(Provider, Network).where(Provider.network_id == Network.id).order_by(Network.name, Provider.name)
    ).all()
    all_rows = [
        MatrixRow(
            provider_code=p.code,
            provider_name=p.name,
            network_code=n.code,
            network_name=n.name,
            cells=tuple(
                cell_from_credential(t.code, creds[(p.id, t.id)])
                if (p.id, t.id) in creds
                else cell_not_started(t.code, required[t.id or 0])
                for t in techniques
            ),
        )
        for p, n in everyone
    ]
    return CredentialMatrix(
        techniques=tuple((t.code, t.name) for t in techniques),
        rows=tuple(r for r in all_rows if network is None or r.network_code == network),
        counts=tuple(_counts(code, name, [r for r in all_rows if r.network_code == code]) for code, name in networks),
        network=network,
    )


def _counts(code: str, name: str, rows: list[MatrixRow]) -> NetworkCounts:
    by_status = Counter(cell.status for row in rows for cell in row.cells)
    return NetworkCounts(
        code=code,
        name=name,
        providers=len(rows),
        credentialed=by_status[CredentialStatus.CREDENTIALED.value],
        pending=by_status[CredentialStatus.PENDING.value],
        lapsed=by_status[CredentialStatus.LAPSED.value],
        suspended=by_status[CredentialStatus.SUSPENDED.value],
        not_started=by_status[NOT_STARTED],
        providers_credentialed=sum(
            1 for row in rows if any(c.status == CredentialStatus.CREDENTIALED.value for c in row.cells)
        ),
    )


__all__ = ["CredentialMatrix", "MatrixRow", "NetworkCounts", "UnknownNetworkError", "credential_matrix"]
