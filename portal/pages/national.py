"""The national view (staff and commissioners): for a case and a metric, every centre's value against the national
distribution, with a network's providers named (the page twin of ``GET /api/v1/national``).

A metric that the chosen case does not have (e.g. kept from the previous case when the case was changed) falls back
to the case's first metric, saying so.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import col, select

from models.national import MetricKey, available_metrics, national_distribution
from models.tables import BenchmarkCase, Network
from portal.api_national import case_metrics, case_or_404, summary
from portal.deps import SessionDep, StaffOrCommissioner
from portal.pages import render
from portal.reporting.national import national_levels, page_figure

router = APIRouter(include_in_schema=False)


@router.get("/national")
def national_page(
    request: Request,
    user: StaffOrCommissioner,
    session: SessionDep,
    case: Annotated[str | None, Query()] = None,
    metric: Annotated[str | None, Query()] = None,
    network: Annotated[str | None, Query()] = None,
) -> Response:
    cases = list(session.exec(select(BenchmarkCase).order_by(BenchmarkCase.case_code, col(BenchmarkCase.id))).all())
    networks = list(session.exec(select(Network).order_by(Network.name)).all())
    data_dir = Path(request.app.state.settings.data_dir)
    chosen = case_or_404(session, case) if case else next((c for c in cases if available_metrics(session, c)), None)
    metrics = case_metrics(session, chosen, data_dir=data_dir) if chosen is not None else []
    note = None
    key = MetricKey.parse(metric) if metric else None
    if key is not None and key not in {k for k, _ in metrics}:
        note = f"{key.label} has no values for this case; showing its first metric instead"
        key = None
    if key is None and metrics:
        key = metrics[0][0]
    network_code = network if network in {n.code for n in networks} else None
    context: dict[str, Any] = {}
    if chosen is not None and key is not None:
        dist = national_distribution(session, chosen, key)
        levels = national_levels(session, chosen, key, data_dir=data_dir)
        svg = page_figure(dist, network=network_code, levels=levels)
        context = {
            "dist": dist,
            "levels": levels,
            "stats": summary(dist),
            "figure_uri": "data:image/svg+xml;base64," + base64.b64encode(svg).decode(),
            "percentile": {v.provider_id: dist.percentile_of(v.value) for v in dist.values},
        }
    return render(
        request,
        "national/index.html",
        user,
        cases=cases,
        chosen=chosen,
        metrics=metrics,
        key=key,
        networks=networks,
        network=network_code,
        note=note,
        **context,
    )
