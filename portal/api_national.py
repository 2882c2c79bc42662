"""``GET /api/v1/national``: every centre's value of one metric of one benchmark case against the national
distribution (the JSON twin of the ``/national`` page; definitions in :mod:`models.national`).

Who sees what:

* staff and commissioners: every provider's value with its name, network, submission, outcome and percentile;
* a centre: only for a case in which it has a decided submission, and then only anonymised values (sorted, without
  names, codes, networks or submission ids) with its own value and percentile, as its report shows them; with fewer
  than :data:`models.national.MIN_OTHER_PROVIDERS_FOR_CENTRES` other providers the values are withheld (403 for a case
  it has no decided submission for).

Without ``metric`` the answer lists the case's metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlmodel import Session

from models.enums import Role
from models.national import (
    MIN_OTHER_PROVIDERS_FOR_CENTRES,
    MetricKey,
    NationalDistribution,
    available_metrics,
    find_case,
    national_distribution,
    quartiles,
)
from models.tables import BenchmarkCase, User
from portal.deps import CurrentUser, SessionDep
from portal.reporting.national import Levels, judged_metrics, national_levels

router = APIRouter(tags=["national"])


def case_or_404(session: Session, text: str) -> BenchmarkCase:
    """The case named ``"<code>@<version>"`` or ``"<code>"`` (newest version); 404 naming it otherwise."""
    case = find_case(session, text)
    if case is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no benchmark case {text!r}: use <code> or <code>@<version>"
        )
    return case


def case_metrics(session: Session, case: BenchmarkCase, *, data_dir: Path) -> list[tuple[MetricKey, str]]:
    """The case's metrics with values, with their units, those a protocol criterion judges first."""
    return available_metrics(session, case, judged=judged_metrics(case, data_dir=data_dir))


def metric_or_404(
    session: Session, case: BenchmarkCase, text: str, *, data_dir: Path
) -> tuple[MetricKey, list[tuple[MetricKey, str]]]:
    """The metric ``text`` of ``case`` and every metric the case has; 404 listing them when it has no such one."""
    metrics = case_metrics(session, case, data_dir=data_dir)
    key = MetricKey.parse(text)
    if key not in {k for k, _ in metrics}:
        known = ", ".join(k.id for k, _ in metrics) or "none yet (no decided submission)"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"case {case.case_code}@{case.version} has no values of metric {text!r}; metrics: {known}",
        )
    return key, metrics


def summary(dist: NationalDistribution) -> dict[str, float] | None:
    """Minimum, quartiles and maximum of the values (None without values)."""
    numbers = dist.numbers
    if not numbers:
        return None
    q1, median, q3 = quartiles(numbers)
    return {"min": numbers[0], "q1": q1, "median": median, "q3": q3, "max": numbers[-1]}


def _levels_json(levels: Levels | None) -> dict[str, Any] | None:
    return None if levels is None else vars(levels)


def _for_centre(user: User, dist: NationalDistribution, base: dict[str, Any]) -> dict[str, Any]:
    own = dist.for_provider(user.provider_id or 0)
    if own is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"a centre sees the national values of {dist.case_label} once it has a decided submission for it",
        )
    enough = len(dist.others(own.provider_id)) >= MIN_OTHER_PROVIDERS_FOR_CENTRES
    return base | {
        "anonymised": True,
        "values": dist.numbers if enough else [],
        "summary": summary(dist) if enough else None,
        "withheld": None
        if enough
        else f"fewer than {MIN_OTHER_PROVIDERS_FOR_CENTRES} other centres have a decided submission for this case",
        "own": {
            "provider": own.provider_code,
            "submission_id": own.submission_id,
            "attempt": own.attempt,
            "value": own.value,
            "percentile": dist.percentile_of(own.value) if enough else None,
        },
    }


@router.get("/api/v1/national")
def national(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    case: Annotated[str, Query(description="<code> (newest version) or <code>@<version>")],
    metric: Annotated[str | None, Query(description="<structure>:<metric> (e.g. PTV:dice) or a dose metric")] = None,
) -> dict[str, Any]:
    """Every centre's value of ``metric`` for ``case`` with its percentile (centres: anonymised, see the module)."""
    found = case_or_404(session, case)
    data_dir = Path(request.app.state.settings.data_dir)
    label = f"{found.case_code}@{found.version}"
    if metric is None:
        return {
            "case": label,
            "stage": found.stage.value,
            "metrics": [
                {"id": k.id, "label": k.label, "unit": u} for k, u in case_metrics(session, found, data_dir=data_dir)
            ],
        }
    key, _ = metric_or_404(session, found, metric, data_dir=data_dir)
    dist = national_distribution(session, found, key)
    levels = national_levels(session, found, key, data_dir=data_dir)
    base = {
        "case": label,
        "stage": found.stage.value,
        "metric": key.id,
        "label": key.label,
        "unit": dist.unit,
        "count": len(dist.values),
        "levels": _levels_json(levels),
        "percentile_definition": "100 x (values below + half the values equal) / count",
    }
    if user.role is Role.CENTRE:
        return _for_centre(user, dist, base)
    return base | {
        "anonymised": False,
        "summary": summary(dist),
        "values": [
            {
                "provider": v.provider_code,
                "provider_name": v.provider_name,
                "network": v.network_code,
                "submission_id": v.submission_id,
                "attempt": v.attempt,
                "value": v.value,
                "percentile": dist.percentile_of(v.value),
                "outcome": v.outcome,
                "decided_at": v.decided_at.isoformat(),
            }
            for v in dist.values
        ],
    }
