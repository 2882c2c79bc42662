"""``rtqa rescore``: score the stored submissions again after a protocol or case reference got a new version.

* ``rtqa rescore --protocol ID --version V``: every decided submission of the protocol's cases, against ``V``
  (the cases move to ``V``).
* ``rtqa rescore --case CODE@VERSION``: every decided submission of the case code, against that version's
  reference.

New results and outcomes are recorded beside the old ones, credentials follow, and a current staff override is
kept and flagged for review (see :mod:`flows.rescoring`). Prints one line per rescored submission whose outcome
or criteria moved, then a summary; ``--json`` prints the flow's summary.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from models.settings import get_settings
from portal.cli_errors import fail, require_initialised

__all__ = ["describe", "rescore"]

console = Console(width=None if sys.stdout.isatty() else 180)


def _words(level: str | None) -> str:
    return (level or "none").replace("_", " ")


def _criterion(change: dict[str, Any]) -> str:
    def value(v: float | None) -> str:
        return "not measured" if v is None else f"{v:.4g}"

    shown = (
        value(change["new_value"])
        if change["old_value"] == change["new_value"]
        else f"{value(change['old_value'])} -> {value(change['new_value'])}"
    )
    levels = ""
    if change["old_levels"] != change["new_levels"]:
        levels = f", levels {change['old_levels']} -> {change['new_levels']}"
    return f"{change['criterion']} {shown}{levels}: {_words(change['old_result'])} -> {_words(change['new_result'])}"


def describe(summary: dict[str, Any]) -> list[str]:
    """The lines ``rtqa rescore`` prints for a flow summary (see :func:`flows.rescore_flows.summarise`)."""
    results = summary["results"]
    rescored = [r for r in results if r["status"] == "rescored"]
    lines = [
        f"rescore {summary['target']}: {len(rescored)} submissions rescored, {len(summary['moved'])} outcomes moved, "
        f"{len(summary['reviews'])} await review, {len(summary['skipped'])} skipped; "
        f"{len(summary['in_progress'])} in progress (not rescored)"
    ]
    if summary.get("cases_moved"):
        lines.append(f"  cases now scored by {summary['target']}: {', '.join(summary['cases_moved'])}")
    for r in results:
        sid = r["submission_id"]
        if r["status"] == "skipped":
            lines.append(f"  submission {sid}: skipped, {r['reason']}")
            continue
        if r["status"] != "rescored":
            continue
        moved = [c for c in r["criteria_changed"] if c["old_result"] != c["new_result"]]
        if r["review_required"]:
            lines.append(
                f"  submission {sid} ({r['what']}): staff override {_words(r['new_outcome'])} kept, rescored automatic "
                f"outcome {_words(r['automatic_outcome'])}; review with `rtqa outcomes override {sid} ...`"
            )
        elif r["old_outcome"] != r["new_outcome"] or moved:
            lines.append(
                f"  submission {sid} ({r['what']}): {_words(r['old_outcome'])} -> {_words(r['new_outcome'])}"
                + "".join(f"; {_criterion(c)}" for c in moved)
            )
    if summary["in_progress"]:
        ids = ", ".join(str(i) for i in summary["in_progress"])
        lines.append(f"  in progress, scored by the case's protocol when they proceed: submissions {ids}")
    return lines


def rescore(
    protocol: Annotated[str | None, typer.Option(help="Protocol id whose new version to rescore against.")] = None,
    version: Annotated[str | None, typer.Option(help="The protocol version (with --protocol).")] = None,
    case: Annotated[str | None, typer.Option(help="CODE@VERSION: a case's new reference version.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON).")] = False,
) -> None:
    """Rescore the stored submissions after a protocol (--protocol ID --version V) or a case reference
    (--case CODE@VERSION) got a new version; credentials follow, current staff overrides are kept for review
    (QA staff)."""
    from benchmarks.protocols import ProtocolError
    from flows.rescore_flows import check_target, run_rescore
    from flows.rescore_plan import RescoreError
    from portal.cli_admin import staff_session_actor

    settings = get_settings()
    require_initialised(settings.resolved_database_url)
    actor = staff_session_actor()
    try:
        check_target(protocol=protocol, version=version, case=case, settings=settings)
        summary = run_rescore(protocol=protocol, version=version, case=case, actor=actor, settings=settings)
    except (RescoreError, ProtocolError) as err:
        raise fail(str(err)) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    for line in describe(summary):
        console.print(escape(line))
