"""``rtqa demo``: the whole path from a benchmark case to a commissioner's credential table, on the embedded default.

Creates the schema and registry, builds a small synthetic lung SABR outlining case, simulates two centres (one
close to the reference, one far from it), runs the credentialing flow on each and prints the results next to the
simulator's expected outcome, then the provider × technique credential table.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from models.settings import Settings

DEMO_CASE = "lung-sabr-outlining-mini"
"""The benchmark case the demo builds."""

DEMO_CENTRES: tuple[tuple[str, list[str]], ...] = (
    ("the-royal-marsden", ["margin_mm:PTV:1", "rename:SpinalCord:Cord", "rename:Lung_L:Lt Lung"]),
    ("the-christie", ["margin_mm:PTV:8", "shift_mm:GTV:0,0,10"]),
)
"""Provider codes and the deviations each simulated centre makes (see ``rtqa simulate --help``)."""


def run_demo(settings: Settings, console: Console) -> None:
    """Run the demo against ``settings`` (its data directory and database)."""
    from benchmarks.cases import build_case
    from benchmarks.simulator import Deviation, simulate_submission
    from flows.catalogue import publish_case
    from flows.credentialing import credential_submission
    from models.db import create_db_engine, session_scope
    from models.migrate import upgrade
    from models.registry import load_reference_data
    from portal.report import credential_matrix

    url = settings.resolved_database_url
    console.rule("1. database")
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as session:
        summary = load_reference_data(session, actor="rtqa-demo")
    engine.dispose()
    console.print(
        f"{url}: {summary.providers} providers in {summary.networks} networks, {summary.techniques} techniques"
    )

    console.rule("2. benchmark case")
    case_id = publish_case(DEMO_CASE, actor="rtqa-demo", database_url=url, data_dir=str(settings.data_dir))
    built = build_case(DEMO_CASE, settings.cases_dir)
    console.print(f"case {DEMO_CASE} (id {case_id}) reference sha256 {built.content_sha256[:16]}… in {built.directory}")

    console.rule("3. centre submissions")
    results = Table("provider", "deviations", "expected", "decided", "attempt", "reasons")
    for seed, (provider, deviations) in enumerate(DEMO_CENTRES):
        simulated = simulate_submission(
            built,
            provider=provider,
            deviations=[Deviation.parse(d) for d in deviations],
            seed=seed,
            out_dir=settings.data_dir / "incoming" / provider,
        )
        outcome = credential_submission(
            str(simulated.directory),
            provider,
            DEMO_CASE,
            built.spec.version,
            actor="rtqa-demo",
            database_url=url,
            data_dir=str(settings.data_dir),
        )
        results.add_row(
            provider,
            ", ".join(deviations),
            simulated.expected_outcome,
            str(outcome["outcome"] or outcome["status"]),
            str(outcome["attempt"]),
            "\n".join(_short(r) for r in outcome["reasons"] if "below" in r or "missing" in r) or "all criteria met",
        )
    console.print(results)

    console.rule("4. credentials")
    console.print(credential_matrix(url, include_empty=True))
    console.print(
        "Serve the API with `rtqa serve`; add a commissioner with `rtqa users add` and `rtqa tokens issue`, then "
        "GET /api/v1/providers/<code>/credentials with the token."
    )


def _short(reason: str, limit: int = 90) -> str:
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
