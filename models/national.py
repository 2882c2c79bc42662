"""The national view: every provider's value of one metric of one benchmark case, against the distribution of all.

Definitions
    - *A provider's value*: the metric of the provider's latest decided submission for the case (the highest attempt
      whose status is decided; a later rejected or undecided attempt does not replace it). Providers whose latest
      decided submission has no value for the metric (e.g. a structure they did not submit) are left out.
    - *A metric* is named ``"<structure>:<metric>"`` for contour and plan results (``"PTV:dice"``, ``"PTV:R50%"``)
      and ``"<metric>"`` for dose results (``"gamma_pass_rate_percent"``).
    - *Percentile rank* of a value x in n values: ``100 × (number below x + ½ × number equal to x) / n`` (the
      mid-rank definition; a value above every other of n gets ``100 × (n − ½) / n``, one in the middle of an odd
      set gets 50). It says where x lies, not whether that is good: the criterion's direction says that.
    - *Quartiles*: linear interpolation between order statistics (``statistics.quantiles(method="inclusive")``,
      numpy's default and matplotlib's box plot).

Centres see other providers' values only without names and only when at least
:data:`MIN_OTHER_PROVIDERS_FOR_CENTRES` other providers contribute (with fewer, a value could be told apart).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from sqlmodel import Session, col, select

from models.enums import QAStage, SubmissionStatus
from models.tables import (
    BenchmarkCase,
    DoseResult,
    Network,
    Outcome,
    PlanResult,
    Provider,
    StructureResult,
    Submission,
)

__all__ = [
    "MIN_OTHER_PROVIDERS_FOR_CENTRES",
    "MetricKey",
    "NationalDistribution",
    "NationalValue",
    "available_metrics",
    "find_case",
    "latest_decided_submissions",
    "national_distribution",
    "percentile_rank",
    "quartiles",
]

MIN_OTHER_PROVIDERS_FOR_CENTRES: Final = 3
"""A centre sees the national distribution only when at least this many other providers contribute a value."""

_TABLES: Final[dict[QAStage, Any]] = {
    QAStage.OUTLINING_BENCHMARK: StructureResult,
    QAStage.PLANNING_BENCHMARK: PlanResult,
    QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK: DoseResult,
}

_UNIT_SUFFIXES: Final = ("_mm", "_percent")
"""Unit suffixes of stored metric names, left out of their labels."""

_NOT_COMPARABLE: Final = frozenset({"gamma_histogram"})
"""Stored metrics that are not a measure of the submission (the histogram's value is a count of points)."""


def percentile_rank(values: Sequence[float], value: float) -> float:
    """Mid-rank percentile rank of ``value`` among ``values`` (see the module docstring), in %.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("a percentile rank needs at least one value, got none")
    below = sum(1 for v in values if v < value)
    equal = sum(1 for v in values if v == value)
    return 100.0 * (below + 0.5 * equal) / len(values)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3) by linear interpolation between order statistics; a single value is all three.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("quartiles need at least one value, got none")
    if len(values) == 1:
        return (values[0], values[0], values[0])
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q1, q2, q3)


@dataclass(frozen=True)
class MetricKey:
    """A metric of a case: ``structure`` None for dose results."""

    structure: str | None
    metric: str

    @property
    def id(self) -> str:
        """``"<structure>:<metric>"``, or ``"<metric>"`` without a structure."""
        return self.metric if self.structure is None else f"{self.structure}:{self.metric}"

    @property
    def label(self) -> str:
        """Words for people, without a unit suffix (the unit is shown beside it): ``"PTV dice"``, ``"GTV hd95"``,
        ``"gamma pass rate"``."""
        metric = self.metric
        for suffix in _UNIT_SUFFIXES:
            if metric.endswith(suffix) and len(metric) > len(suffix):
                metric = metric[: -len(suffix)]
                break
        metric = metric.replace("_", " ")
        return metric if self.structure is None else f"{self.structure} {metric}"

    @classmethod
    def parse(cls, text: str) -> MetricKey:
        """The inverse of :attr:`id`."""
        structure, sep, metric = text.partition(":")
        return cls(structure, metric) if sep else cls(None, text)


@dataclass(frozen=True)
class NationalValue:
    """One provider's value (from its latest decided submission for the case)."""

    provider_id: int
    provider_code: str
    provider_name: str
    network_code: str
    network_name: str
    submission_id: int
    attempt: int
    value: float
    outcome: str | None
    decided_at: datetime


@dataclass(frozen=True)
class NationalDistribution:
    """Every provider's value of one metric of one case, lowest first."""

    case_id: int
    case_label: str
    metric: MetricKey
    unit: str
    values: tuple[NationalValue, ...]

    @property
    def numbers(self) -> list[float]:
        return [v.value for v in self.values]

    def percentile_of(self, value: float) -> float:
        """:func:`percentile_rank` of ``value`` among the distribution's values."""
        return percentile_rank(self.numbers, value)

    def for_provider(self, provider_id: int) -> NationalValue | None:
        """The provider's entry, if it has one."""
        return next((v for v in self.values if v.provider_id == provider_id), None)

    def others(self, provider_id: int) -> list[NationalValue]:
        """Every entry but the provider's."""
        return [v for v in self.values if v.provider_id != provider_id]

    def with_entry(self, entry: NationalValue) -> NationalDistribution:
        """The distribution with ``entry`` standing for its provider (e.g. a report's own, older submission)."""
        values = [*self.others(entry.provider_id), entry]
        return replace(self, values=tuple(sorted(values, key=lambda v: (v.value, v.provider_code))))


def find_case(session: Session, text: str) -> BenchmarkCase | None:
    """The case ``"<code>@<version>"``, or the newest registered version of ``"<code>"``."""
    code, _, version = text.partition("@")
    query = select(BenchmarkCase).where(BenchmarkCase.case_code == code)
    if version:
        query = query.where(BenchmarkCase.version == version)
    return session.exec(query.order_by(col(BenchmarkCase.created_at).desc(), col(BenchmarkCase.id).desc())).first()


def latest_decided_submissions(session: Session, case_id: int) -> list[Submission]:
    """Each provider's latest decided submission for the case (highest attempt), in provider id order."""
    rows = session.exec(
        select(Submission)
        .where(Submission.case_id == case_id, Submission.status == SubmissionStatus.DECIDED)
        .order_by(col(Submission.provider_id), col(Submission.attempt).desc())
    ).all()
    latest: dict[int, Submission] = {}
    for sub in rows:
        latest.setdefault(sub.provider_id, sub)
    return list(latest.values())


def available_metrics(
    session: Session, case: BenchmarkCase, *, judged: Sequence[MetricKey] = ()
) -> list[tuple[MetricKey, str]]:
    """The metrics with a value in any provider's latest decided submission for the case, with their units.

    Metrics judged by a protocol criterion come first: those in ``judged`` in its order (the protocol's), then those
    whose results store their criteria (planning and dosimetry results) in the order they were stored; the others
    follow by structure and name.
    """
    table: Any = _TABLES.get(case.stage, None)
    if table is None or case.id is None:
        return []
    ids = [s.id for s in latest_decided_submissions(session, case.id)]
    if not ids:
        return []
    rows = session.exec(
        select(table).where(col(table.submission_id).in_(ids), col(table.value).is_not(None)).order_by(col(table.id))
    ).all()
    units: dict[MetricKey, str] = {}
    stored_criteria: list[MetricKey] = []
    for r in rows:
        if r.metric in _NOT_COMPARABLE:
            continue
        key = MetricKey(getattr(r, "structure", None), r.metric)
        units.setdefault(key, r.unit)
        if r.parameters.get("criteria") and key not in stored_criteria:
            stored_criteria.append(key)
    first = [k for k in dict.fromkeys([*judged, *stored_criteria]) if k in units]
    rest = sorted(units.keys() - set(first), key=lambda k: (k.structure or "", k.metric))
    return [(k, units[k]) for k in [*first, *rest]]


def national_distribution(session: Session, case: BenchmarkCase, key: MetricKey) -> NationalDistribution:
    """Every provider's value of ``key`` for ``case`` (see the module docstring), lowest first."""
    table: Any = _TABLES.get(case.stage, None)
    assert case.id is not None
    subs = {s.id: s for s in latest_decided_submissions(session, case.id)} if table is not None else {}
    values: list[NationalValue] = []
    unit = ""
    if subs:
        query = select(table).where(
            col(table.submission_id).in_(list(subs)), table.metric == key.metric, col(table.value).is_not(None)
        )
        if key.structure is not None and table is not DoseResult:
            query = query.where(table.structure == key.structure)
        providers = {
            p.id: (p, n)
            for p, n in session.exec(select(Provider, Network).where(Provider.network_id == Network.id)).all()
        }
        outcomes = {
            o.submission_id: o
            for o in session.exec(
                select(Outcome).where(col(Outcome.submission_id).in_(list(subs)), col(Outcome.is_current).is_(True))
            ).all()
        }
        for r in session.exec(query).all():
            sub = subs[r.submission_id]
            provider, network = providers[sub.provider_id]
            outcome = outcomes.get(r.submission_id)
            unit = r.unit
            values.append(
                NationalValue(
                    provider_id=sub.provider_id,
                    provider_code=provider.code,
                    provider_name=provider.name,
                    network_code=network.code,
                    network_name=network.name,
                    submission_id=r.submission_id,
                    attempt=sub.attempt,
                    value=float(r.value),
                    outcome=outcome.level.value if outcome is not None else None,
                    decided_at=outcome.decided_at if outcome is not None else sub.updated_at,
                )
            )
    values.sort(key=lambda v: (v.value, v.provider_code))
    return NationalDistribution(case.id, f"{case.case_code}@{case.version}", key, unit, tuple(values))
