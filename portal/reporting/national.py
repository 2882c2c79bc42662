"""The national view's content: a report's strip of its criteria against every other provider (anonymous), and the
national page's strip of one metric with a network's providers named.

Distributions come from :mod:`models.national`. On a report, the submission stands for its provider (even when the
provider has a later attempt); other providers are plain values, sorted, without names, codes or submission ids,
and only when at least :data:`models.national.MIN_OTHER_PROVIDERS_FOR_CENTRES` of them contribute. The report is
the same whoever reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from benchmarks.protocols import GAMMA_STRUCTURE
from flows.protocol_store import resolve_protocol
from flows.report_data import ReportFacts
from models.enums import QAStage
from models.national import (
    MIN_OTHER_PROVIDERS_FOR_CENTRES,
    MetricKey,
    NationalDistribution,
    NationalValue,
    national_distribution,
)
from models.tables import BenchmarkCase, DoseResult, PlanResult, Submission
from portal.reporting.national_plot import StripRow, strip_figure
from portal.reporting.style import svg_bytes

__all__ = [
    "Levels",
    "NationalRow",
    "ReportNational",
    "judged_metrics",
    "metric_key_of",
    "national_levels",
    "page_figure",
    "report_national",
]


@dataclass(frozen=True)
class Levels:
    """A criterion's levels, for drawing."""

    per_protocol: float
    acceptable: float
    direction: str


@dataclass(frozen=True)
class NationalRow:
    """One criterion of a report placed in the national distribution.

    ``others`` is empty (and ``percentile`` None) when too few other providers contribute.
    """

    key: MetricKey
    unit: str
    value: float
    percentile: float | None
    others: tuple[float, ...]
    levels: Levels | None
    count: int
    """Providers in the distribution, this submission's included (also when the others' values are withheld)."""


@dataclass(frozen=True)
class ReportNational:
    """A report's national section: its rows, the figure (SVG) and a digest of both for caching the PDF."""

    rows: tuple[NationalRow, ...]
    svg: bytes | None
    digest: str
    provider_label: str

    def strip_rows(self) -> list[StripRow]:
        return _strip_rows(self.rows, self.provider_label)


def metric_key_of(structure: str, metric: str) -> MetricKey:
    """The national metric key of a criterion (the gamma criterion's structure is the whole dose grid)."""
    return MetricKey(None if structure == GAMMA_STRUCTURE else structure, metric)


def _strip_rows(rows: tuple[NationalRow, ...], label: str) -> list[StripRow]:
    out = []
    for r in rows:
        if r.percentile is None:
            note = f"fewer than {MIN_OTHER_PROVIDERS_FOR_CENTRES} other centres so far: not compared"
        else:
            note = f"percentile {r.percentile:.0f} of {r.count} centres"
        out.append(
            StripRow(
                label=r.key.label,
                unit=r.unit,
                others=r.others,
                highlighted=((r.value, label),),
                note=note,
                per_protocol=r.levels.per_protocol if r.levels else None,
                acceptable=r.levels.acceptable if r.levels else None,
            )
        )
    return out


def report_national(session: Session, facts: ReportFacts, *, cache_dir: Path | None = None) -> ReportNational | None:
    """The national section of a decided submission's report: each criterion's value against the latest decided
    submission of every other provider for the case; None when nothing was measured.

    The figure is kept in ``cache_dir`` (the report's cache folder) under the digest of what it shows, and drawn
    again only when another centre's result changes it.
    """
    if not facts.decided:
        return None
    case = session.get(BenchmarkCase, facts.case_id)
    assert case is not None
    rows: list[NationalRow] = []
    seen: set[MetricKey] = set()
    for c in facts.criteria:
        key = metric_key_of(c.structure, c.metric)
        if c.value is None or key in seen:
            continue
        seen.add(key)
        dist = national_distribution(session, case, key)
        own = NationalValue(
            facts.provider_id,
            facts.provider_code,
            facts.provider_name,
            "",
            "",
            facts.submission_id,
            facts.attempt,
            float(c.value),
            None,
            facts.received_at,
        )
        dist = dist.with_entry(own)
        others = sorted(v.value for v in dist.others(facts.provider_id))
        enough = len(others) >= MIN_OTHER_PROVIDERS_FOR_CENTRES
        rows.append(
            NationalRow(
                key=key,
                unit=c.unit,
                value=float(c.value),
                percentile=dist.percentile_of(float(c.value)) if enough else None,
                others=tuple(others) if enough else (),
                levels=Levels(c.per_protocol, c.acceptable, c.direction),
                count=len(others) + 1,
            )
        )
    if not rows:
        return None
    label = facts.provider_name
    state = [
        [r.key.id, r.value, r.percentile, list(r.others), r.levels and list(vars(r.levels).values())] for r in rows
    ]
    digest = hashlib.sha256(json.dumps([label, facts.case_label, state], default=str).encode()).hexdigest()
    cached = cache_dir / f"national-{digest[:16]}.svg" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return ReportNational(tuple(rows), cached.read_bytes(), digest, label)
    title = f"{facts.case_label}: this submission among the latest decided submission of every centre"
    svg = svg_bytes(strip_figure(_strip_rows(tuple(rows), label), title=title))
    if cached is not None and cached.parent.is_dir():
        temporary = cached.with_name(f".{cached.name}.{os.getpid()}-{threading.get_ident()}")
        temporary.write_bytes(svg)
        os.replace(temporary, cached)
        for old in cached.parent.glob("national-*.svg"):
            if old != cached:
                old.unlink(missing_ok=True)
    return ReportNational(tuple(rows), svg, digest, label)


def judged_metrics(case: BenchmarkCase, *, data_dir: Path) -> list[MetricKey]:
    """The metrics the case's protocol judges outlining by, in the protocol's order (planning and dosimetry results
    store their criteria)."""
    if case.stage is not QAStage.OUTLINING_BENCHMARK:
        return []
    protocol = resolve_protocol(case.protocol_id, case.protocol_version, data_dir=data_dir)
    return list(dict.fromkeys(MetricKey(c.structure, c.metric) for c in protocol.outlining_criteria()))


def national_levels(session: Session, case: BenchmarkCase, key: MetricKey, *, data_dir: Path) -> Levels | None:
    """The metric's criterion levels for the case, when every provider is judged by the same levels: outlining
    criteria from the case's protocol; planning and dosimetry criteria as stored with the results (None when they
    differ between submissions, e.g. R50% levels interpolated for each plan's PTV volume)."""
    if case.stage is QAStage.OUTLINING_BENCHMARK:
        protocol = resolve_protocol(case.protocol_id, case.protocol_version, data_dir=data_dir)
        found = [c for c in protocol.outlining_criteria() if (c.structure, c.metric) == (key.structure, key.metric)]
        return Levels(found[0].per_protocol, found[0].acceptable, found[0].direction) if len(found) == 1 else None
    table: Any = PlanResult if case.stage is QAStage.PLANNING_BENCHMARK else DoseResult
    query = select(table).where(table.metric == key.metric, col(table.submission_id).in_(_case_submissions(case)))
    if table is PlanResult:
        query = query.where(table.structure == key.structure)
    levels = set()
    for r in session.exec(query).all():
        for c in r.parameters.get("criteria", []):
            levels.add((float(c["per_protocol"]), float(c["acceptable"]), str(c["direction"])))
    return Levels(*levels.pop()) if len(levels) == 1 else None


def _case_submissions(case: BenchmarkCase) -> Any:
    return select(Submission.id).where(Submission.case_id == case.id)


def page_figure(dist: NationalDistribution, *, network: str | None, levels: Levels | None) -> bytes:
    """The national page's strip (SVG): every provider a dot; those of ``network`` (a network code) in colour with
    their names; the others unlabelled."""
    named = [v for v in dist.values if network is not None and v.network_code == network]
    others = [v.value for v in dist.values if v not in named]
    note = f"{len(dist.values)} centres"
    if network is not None:
        note += f"; {len(named)} in the network highlighted"
    row = StripRow(
        label=dist.metric.label,
        unit=dist.unit,
        others=tuple(others),
        highlighted=tuple((v.value, v.provider_name) for v in named),
        note=note,
        per_protocol=levels.per_protocol if levels else None,
        acceptable=levels.acceptable if levels else None,
    )
    title = f"{dist.case_label}: latest decided submission of every centre"
    return svg_bytes(strip_figure([row], title=title))
