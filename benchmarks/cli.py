"""Command-line entry points for the benchmark library (mounted into the ``rtqa`` CLI by ``portal.cli``).

* ``rtqa cases list``: the case library.
* ``rtqa cases build CASE --out DIR``: build a case (idempotent), printing each step.
* ``rtqa cases simulate-plan CASE --provider P --deviation dose_scale_percent:3 ... --out DIR``: a simulated centre
  plan / TPS-check submission of a planning case (RTPLAN + RTDOSE) and the expected effect of each deviation.
* ``rtqa simulate CASE --provider P --deviation margin_mm:PTV:3 ... --out DIR``: a simulated centre submission
  and the oracle's expected outcome.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from benchmarks.cases import BuiltCase, CaseError, build_case, list_cases
from benchmarks.protocols import ProtocolError
from benchmarks.simulator import (
    PlanDeviation,
    SimulationError,
    parse_deviation,
    simulate_plan_submission,
    simulate_submission,
)

__all__ = ["cases_app", "simulate"]

DEFAULT_CASES_DIR = Path(".rtqa") / "cases"
"""Where ``simulate`` builds (or finds) the case when no ``--cases-dir`` is given."""

cases_app = typer.Typer(no_args_is_help=True, help="Benchmark cases: list and build.")
console = Console()

# Options the simulate commands share.
ProviderOption = Annotated[str, typer.Option("--provider", help="Submitting provider (centre) code or name.")]
CasesDirOption = Annotated[Path, typer.Option("--cases-dir", help="Where the case is built (or found already built).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace whatever --out holds.")]


def _fail(exc: Exception) -> typer.Exit:
    """Print ``error: ...`` as one line on standard error; return the exit (status 2) to raise."""
    text = "; ".join(" ".join(line.split()) for line in str(exc).splitlines() if line.strip())
    typer.echo(f"error: {text}", err=True)
    return typer.Exit(code=2)


def _build_with_progress(case_id: str, out_dir: Path) -> BuiltCase:
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task(f"{case_id}: checking", total=None)
        started = time.monotonic()

        def report(text: str) -> None:
            # A persistent line per step (visible in logs and non-interactive terminals) and the live spinner.
            progress.console.print(f"[dim]{time.monotonic() - started:6.1f} s[/dim]  {case_id}: {text}", soft_wrap=True)
            progress.update(task, description=f"{case_id}: {text}")

        return build_case(case_id, out_dir, progress=report)


@cases_app.command("list")
def list_command() -> None:
    """List the benchmark cases."""
    for spec in list_cases():
        console.print(
            f"[bold]{spec.case_id}[/bold] {spec.version}  technique {spec.technique}  stage {spec.stage}  "
            f"protocol {spec.protocol_id}",
            soft_wrap=True,
        )
        console.print(f"    {spec.title}", soft_wrap=True)


@cases_app.command("build")
def build_command(
    case: Annotated[str, typer.Argument(help="Case id (see `rtqa cases list`).")],
    out: Annotated[Path, typer.Option("--out", help="Parent directory; the case goes in <out>/<case>-<version>.")],
) -> None:
    """Build a benchmark case's reference CT and RT Structure Set, and for planning cases the reference RT Plan
    and RT Dose (idempotent; each build step is printed as it starts)."""
    try:
        built = _build_with_progress(case, out)
    except CaseError as exc:
        raise _fail(exc) from None
    console.print(f"{built.spec.case_id} {built.spec.version} in {built.directory}")
    console.print(f"content sha256 {built.content_sha256}")


def simulate(
    case: Annotated[str, typer.Argument(help="Case id (see `rtqa cases list`).")],
    provider: ProviderOption,
    out: Annotated[Path, typer.Option("--out", help="Submission directory to write (CT/ + RTSTRUCT).")],
    deviation: Annotated[
        list[str] | None,
        typer.Option(
            "--deviation",
            "-d",
            help=(
                "kind:structure[:value], repeatable. Kinds: margin_mm (mm, negative shrinks), shift_mm (dz,dy,dx "
                "mm), rename (new name), drop_slices (count; negative = inferior), smooth (sigma mm), "
                "swap_laterality, omit, jitter_mm (mm). Structure '*' means all. "
                "E.g. margin_mm:PTV:3, shift_mm:GTV:0,0,5, rename:SpinalCord:Cord."
            ),
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for UIDs and random deviations.")] = 0,
    cases_dir: CasesDirOption = DEFAULT_CASES_DIR,
    expected_json: Annotated[
        Path | None, typer.Option("--expected-json", help="Also write the oracle's expected outcome here (JSON).")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate a centre's submission for a case and print the outcome the protocol should give."""
    try:
        deviations = [parse_deviation(text) for text in deviation or []]
        built = _build_with_progress(case, cases_dir)
        with console.status("writing the centre's structure set"):
            simulated = simulate_submission(
                built, provider=provider, deviations=deviations, seed=seed, out_dir=out, overwrite=overwrite
            )
    except (CaseError, SimulationError, ProtocolError) as exc:
        raise _fail(exc) from None
    console.print(f"submission of {provider} for {case} in {simulated.directory}")
    console.print(f"expected outcome: [bold]{simulated.expected_outcome.value}[/bold]")
    console.print(f"reason: {simulated.expected_reason}")
    if expected_json is not None:
        expected_json.parent.mkdir(parents=True, exist_ok=True)
        expected_json.write_text(json.dumps(simulated.to_json_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"expected outcome written to {expected_json}")


@cases_app.command("simulate-plan")
def simulate_plan_command(
    case: Annotated[str, typer.Argument(help="Planning case id (see `rtqa cases list`).")],
    provider: ProviderOption,
    out: Annotated[Path, typer.Option("--out", help="Submission directory to write (CT/, RTSTRUCT, RTPLAN, RTDOSE).")],
    deviation: Annotated[
        list[str] | None,
        typer.Option(
            "--deviation",
            "-d",
            help=(
                "kind:value, repeatable. Planning: under_coverage:85 (PTV coverage %), hot_spot:150 (max % of Rx), "
                "poor_conformity:1.5 (R50 factor), organ_overdose:SpinalCord:25 (Gy). TPS check: "
                "dose_scale_percent:3, dose_shift_mm:0,0,2 (dz,dy,dx), dose_noise_percent:2."
            ),
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for UIDs and noise.")] = 0,
    cases_dir: CasesDirOption = DEFAULT_CASES_DIR,
    expected_json: Annotated[
        Path | None, typer.Option("--expected-json", help="Also write the expected effects here (JSON).")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate a centre's plan (or TPS-check dose) for a planning case and print each deviation's expected effect."""
    try:
        deviations = [PlanDeviation.parse(text) for text in deviation or []]
        built = _build_with_progress(case, cases_dir)
        with console.status("modelling and writing the centre's plan and dose"):
            simulated = simulate_plan_submission(
                built, provider=provider, deviations=deviations, seed=seed, out_dir=out, overwrite=overwrite
            )
    except (CaseError, SimulationError) as exc:
        raise _fail(exc) from None
    console.print(f"plan submission of {provider} for {case} in {simulated.directory}", soft_wrap=True)
    for effect in simulated.expected_effects:
        console.print(
            f"{effect.deviation}: {effect.structure or 'dose'} {effect.metric} {effect.reference:.4g} -> expected "
            f"{effect.expected:.4g} +/- {effect.tolerance:.2g} (model {effect.measured:.4g})",
            soft_wrap=True,
        )
    outcome = simulated.expected_outcome.value if simulated.expected_outcome else "not predicted"
    console.print(f"expected {simulated.check.replace('_', ' ')} outcome: [bold]{outcome}[/bold]", soft_wrap=True)
    console.print(f"reason: {simulated.expected_reason}", soft_wrap=True)
    if simulated.borderline:
        console.print(f"borderline (within storage tolerance): {', '.join(simulated.borderline)}", soft_wrap=True)
    if expected_json is not None:
        expected_json.parent.mkdir(parents=True, exist_ok=True)
        expected_json.write_text(json.dumps(simulated.to_json_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"expected effects written to {expected_json}")
