"""``rtqa demo``: the whole path from benchmark cases to a commissioner's credential table, on the embedded default.

Creates the schema, the provider registry and the QA stages each protocol requires; publishes the lung SABR
outlining, planning and TPS-check cases; then one simulated centre passes every stage of lung SABR in turn
(facility questionnaire, outlining benchmark, planning benchmark, dosimetry check), its credential printed after
each step as it moves from pending to credentialed, while a second centre's outlining fails. Each decision is shown
beside the simulator's independently expected outcome.

The demo acts as the QA staff user running it (:mod:`portal.cli_identity`); on a database without one it first adds
``NAME@localhost``, mapped to the operating-system account NAME that runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from models.settings import Settings

OUTLINING_CASE = "lung-sabr-outlining-mini"
PLANNING_CASE = "lung-sabr-planning"
TPS_CASE = "lung-sabr-tps-check"
DEMO_CASES = (OUTLINING_CASE, PLANNING_CASE, TPS_CASE)
"""The benchmark cases the demo publishes: one per scored stage of lung SABR."""

PASSING = "the-royal-marsden"
FAILING = "the-christie"
PASSING_CONTOURS = ["margin_mm:PTV:1", "rename:SpinalCord:Cord", "rename:Lung_L:Lt Lung"]
FAILING_CONTOURS = ["margin_mm:PTV:8", "shift_mm:GTV:0,0,10"]
PASSING_TPS = ["dose_scale_percent:1"]
"""Deviations of the simulated centres (see ``rtqa simulate --help`` and ``rtqa cases simulate-plan --help``)."""


def run_demo(settings: Settings, console: Console) -> None:
    """Run the demo against ``settings`` (its data directory and database)."""
    from benchmarks.cases import build_case
    from benchmarks.questionnaires import example_answers
    from flows.catalogue import register_shipped_protocols, run_publish_case
    from flows.questionnaire import submit_answers
    from models.db import create_db_engine, session_scope
    from models.migrate import upgrade
    from models.registry import load_reference_data
    from portal.cli_errors import masked_url
    from portal.cli_identity import demo_actor
    from portal.cli_stages import provider_stage_table
    from portal.report import credential_matrix

    url = settings.resolved_database_url
    console.rule("1. database, registry and the QA stages each protocol requires")
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as session:
        actor, added = demo_actor(session)
        summary = load_reference_data(session, actor=actor)
        protocols = register_shipped_protocols(session, actor=actor)
    engine.dispose()
    if added:
        console.print(added)
    console.print(
        f"{masked_url(url)}: {summary.providers} providers in {summary.networks} networks, {summary.techniques} "
        f"techniques; stage requirements of {len(protocols)} protocols"
    )

    console.rule("2. benchmark cases (lung SABR: outlining, planning, TPS check)")
    built = {}
    for code in DEMO_CASES:
        case_id = run_publish_case(settings, code, actor=actor)
        built[code] = build_case(code, settings.cases_dir)
        console.print(f"{code}: id {case_id}, {built[code].spec.stage.replace('_', ' ')}")

    decisions = Table("step", "provider", "stage", "expected", "decided", "attempt")
    steps: list[tuple[str, str, str, str, dict[str, Any]]] = []

    def show(step: str, provider: str, stage: str, expected: str, result: dict[str, Any]) -> None:
        steps.append((step, provider, stage, expected, result))
        decisions.add_row(step, provider, stage, expected, str(result.get("outcome") or result.get("status")),
                          str(result.get("attempt", "")))  # fmt: skip
        console.print(provider_stage_table(provider))

    console.rule(f"3. {PASSING}: facility questionnaire")
    answered = submit_answers(
        PASSING,
        "sabr_lung",
        example_answers("sabr_lung"),
        actor=actor,
        database_url=url,
        data_dir=settings.data_dir,
        validity_days=settings.credential_validity_days,
    )
    show("3", PASSING, "facility questionnaire", "per_protocol", answered.as_dict())

    console.rule(f"4. {PASSING} and {FAILING}: outlining benchmark")
    for seed, (provider, deviations) in enumerate(((PASSING, PASSING_CONTOURS), (FAILING, FAILING_CONTOURS))):
        expected, result = _contours(settings, built[OUTLINING_CASE], provider, deviations, seed, actor)
        show("4", provider, "outlining benchmark", expected, result)

    console.rule(f"5. {PASSING}: planning benchmark (its own plan, as planned)")
    expected, result = _plan(settings, built[PLANNING_CASE], PASSING, [], check="planning", actor=actor)
    show("5", PASSING, "planning benchmark", expected, result)

    console.rule(f"6. {PASSING}: dosimetry (TPS) check, recalculated 1% high")
    expected, result = _plan(settings, built[TPS_CASE], PASSING, PASSING_TPS, check="tps_check", actor=actor)
    show("6", PASSING, "dosimetry check", expected, result)

    console.rule("7. decisions and credentials")
    console.print(decisions)
    console.print(credential_matrix(url, include_empty=False))
    console.print(
        "Each provider's stages: `rtqa credentials --provider CODE`. Serve the API with `rtqa serve`; add a "
        "commissioner with `rtqa users add` and `rtqa tokens issue`, then GET /api/v1/providers/<code>/credentials."
    )


def _contours(
    settings: Settings, built: Any, provider: str, deviations: list[str], seed: int, actor: str
) -> tuple[str, Any]:
    from benchmarks.simulator import Deviation, simulate_submission

    simulated = simulate_submission(
        built,
        provider=provider,
        deviations=[Deviation.parse(d) for d in deviations],
        seed=seed,
        out_dir=settings.data_dir / "incoming" / provider / built.spec.case_id,
        overwrite=True,
    )
    result = _submit(settings, simulated.directory, provider, built, actor)
    return str(simulated.expected_outcome), result


def _plan(
    settings: Settings, built: Any, provider: str, deviations: list[str], *, check: str, actor: str
) -> tuple[str, Any]:
    from benchmarks.simulator import PlanDeviation, simulate_plan_submission

    simulated = simulate_plan_submission(
        built,
        provider=provider,
        deviations=[PlanDeviation.parse(d) for d in deviations],
        seed=0,
        out_dir=settings.data_dir / "incoming" / provider / built.spec.case_id,
        overwrite=True,
        check=check,  # type: ignore[arg-type]
    )
    result = _submit(settings, simulated.directory, provider, built, actor)
    expected = simulated.expected_outcome.value if simulated.expected_outcome else "not decided in closed form"
    return expected, result


def _submit(settings: Settings, directory: Path, provider: str, built: Any, actor: str) -> dict[str, Any]:
    """Run the credentialing flow on a simulated submission folder."""
    from flows.credentialing import run_credential_submission

    return run_credential_submission(
        settings, str(directory), provider, built.spec.case_id, built.spec.version, actor=actor
    )


__all__ = ["DEMO_CASES", "run_demo"]
