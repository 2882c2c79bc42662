"""The rescore flows, ``rescore-protocol`` and ``rescore-case``, and :func:`run_rescore` behind ``rtqa rescore``.

Each flow lists the affected submissions (:mod:`flows.rescore_plan`), then rescores them one task each
(:func:`flows.rescoring.rescore_submission`: new results and outcome beside the old, differences, credentials,
audit). Tasks take and return ids and plain data. ``python -m flows.rescore_flows --protocol ID --version V`` or
``--case CODE@VERSION`` runs them on the configured database.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from flows._store import engine_for
from flows.deferred import flow, task
from flows.protocol_store import resolve_protocol
from flows.rescore_plan import (
    RescoreError,
    RescoreItem,
    RescorePlan,
    parse_case_target,
    plan_case_rescore,
    plan_protocol_rescore,
)
from flows.rescoring import rescore_submission
from flows.runtime import call, run_flow, with_flow_settings
from flows.scoring import RESULT_TABLES
from models.settings import Settings
from models.tables import BenchmarkCase

__all__ = [
    "check_target",
    "rescore_case",
    "rescore_case_steps",
    "rescore_protocol",
    "rescore_protocol_steps",
    "rescore_task_name",
    "run_rescore",
    "summarise",
]


def _plan_dict(plan: RescorePlan) -> dict[str, Any]:
    return {
        "target": plan.target,
        "items": [i.as_dict() for i in plan.items],
        "in_progress": list(plan.in_progress),
        "cases_moved": list(plan.cases_moved),
    }


@task
def plan_protocol(protocol_id: str, version: str, *, actor: str, database_url: str, data_dir: str) -> dict[str, Any]:
    """Move the protocol's cases to ``version`` and list the submissions to rescore (committed)."""
    with Session(engine_for(database_url)) as session:
        plan = plan_protocol_rescore(
            session, protocol_id=protocol_id, version=version, data_dir=Path(data_dir), actor=actor
        )
        session.commit()
    return _plan_dict(plan)


@task
def plan_case(case_code: str, version: str, *, database_url: str) -> dict[str, Any]:
    """List the submissions to rescore against case ``case_code`` at ``version``."""
    with Session(engine_for(database_url)) as session:
        return _plan_dict(plan_case_rescore(session, case_code=case_code, version=version))


@task
def rescore_one(
    item: dict[str, Any], *, actor: str, database_url: str, data_dir: str, validity_days: int
) -> dict[str, Any]:
    """Rescore one submission (see :func:`flows.rescoring.rescore_submission`)."""
    return rescore_submission(
        RescoreItem(**item),
        actor=actor,
        database_url=database_url,
        data_dir=Path(data_dir),
        validity_days=validity_days,
    )


def summarise(plan: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The flow's answer: the plan, each submission's result, and which submissions' current outcome moved."""
    return {
        **plan,
        "results": results,
        "moved": [
            r["submission_id"] for r in results if r["status"] == "rescored" and r["old_outcome"] != r["new_outcome"]
        ],
        "reviews": [r["submission_id"] for r in results if r.get("review_required")],
        "skipped": [r["submission_id"] for r in results if r["status"] == "skipped"],
    }


def _rescore_all(plan: dict[str, Any], *, actor: str, settings: Settings) -> dict[str, Any]:
    results = [
        call(
            rescore_one,
            item,
            actor=actor,
            database_url=settings.resolved_database_url,
            data_dir=str(settings.data_dir),
            validity_days=settings.credential_validity_days,
            name=rescore_task_name(item),
        )
        for item in plan["items"]
    ]
    return summarise(plan, results)


def rescore_task_name(item: dict[str, Any]) -> str:
    """The task run's name for one submission: ``rescore[submission 7 -> uk-lung-sabr@1.1]``."""
    return f"rescore[submission {item['submission_id']} -> {item['protocol_id']}@{item['protocol_version']}]"


def rescore_protocol_steps(
    settings: Settings, protocol_id: str, version: str, actor: str = "rtqa-flow"
) -> dict[str, Any]:
    """The body of ``rescore-protocol`` (tasks called directly outside a flow run)."""
    plan = call(
        plan_protocol,
        protocol_id,
        version,
        actor=actor,
        database_url=settings.resolved_database_url,
        data_dir=str(settings.data_dir),
        name=f"plan-rescore[protocol {protocol_id}@{version}]",
    )
    return _rescore_all(plan, actor=actor, settings=settings)


def rescore_case_steps(settings: Settings, case: str, actor: str = "rtqa-flow") -> dict[str, Any]:
    """The body of ``rescore-case`` (tasks called directly outside a flow run)."""
    code, version = parse_case_target(case)
    plan = call(
        plan_case, code, version, database_url=settings.resolved_database_url, name=f"plan-rescore[case {case}]"
    )
    return _rescore_all(plan, actor=actor, settings=settings)


@flow(name="rescore-protocol")
def rescore_protocol(protocol_id: str, version: str, actor: str = "rtqa-flow") -> dict[str, Any]:
    """Rescore every decided submission of protocol ``protocol_id``'s cases at ``version`` (see
    :mod:`flows.rescoring`). The database and data directory come from the environment (see
    :mod:`flows.runtime`), never from parameters."""
    return with_flow_settings(rescore_protocol_steps, protocol_id, version, actor)  # type: ignore[no-any-return]


@flow(name="rescore-case")
def rescore_case(case: str, actor: str = "rtqa-flow") -> dict[str, Any]:
    """Rescore every decided submission of case ``CODE`` against its version ``case = "CODE@VERSION"`` (see
    :mod:`flows.rescoring`). The database and data directory come from the environment (see
    :mod:`flows.runtime`), never from parameters."""
    return with_flow_settings(rescore_case_steps, case, actor)  # type: ignore[no-any-return]


def check_target(
    *, protocol: str | None, version: str | None, case: str | None, settings: Settings
) -> tuple[str, str, str]:
    """Check a rescore target before any flow starts: ``("protocol", ID, V)`` or ``("case", CODE, V)``.

    Raises:
        RescoreError: not exactly one of ``--protocol ID --version V`` and ``--case CODE@VERSION``, or an unknown
            or unscored case version.
        ProtocolError: no such protocol or version.
    """
    if (protocol is None) == (case is None):
        raise RescoreError("give either --protocol ID --version V or --case CODE@VERSION (one of them)")
    if protocol is not None:
        if not version:
            raise RescoreError(f"--protocol {protocol}: say which version to rescore against with --version V")
        resolve_protocol(protocol, version, data_dir=settings.data_dir)
        return "protocol", protocol, version
    if version is not None:
        raise RescoreError("--version goes with --protocol; a case target carries its version: --case CODE@VERSION")
    assert case is not None
    code, case_version = parse_case_target(case)
    with Session(engine_for(settings.resolved_database_url)) as session:
        found = session.exec(
            select(BenchmarkCase).where(BenchmarkCase.case_code == code, BenchmarkCase.version == case_version)
        ).first()
        if found is None or found.stage not in RESULT_TABLES:
            plan_case_rescore(session, case_code=code, version=case_version)  # raises, naming what is wrong
    return "case", code, case_version


def run_rescore(
    *, protocol: str | None, version: str | None, case: str | None, actor: str, settings: Settings
) -> dict[str, Any]:
    """Check the target (:func:`check_target`), then run ``rescore-protocol`` or ``rescore-case``; returns the
    flow's summary (see :func:`summarise`)."""
    kind, name, target_version = check_target(protocol=protocol, version=version, case=case, settings=settings)
    if kind == "protocol":
        return run_flow(rescore_protocol, rescore_protocol_steps, settings, name, target_version, actor)
    return run_flow(rescore_case, rescore_case_steps, settings, f"{name}@{target_version}", actor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.rescore_flows", description=__doc__)
    parser.add_argument("--protocol")
    parser.add_argument("--version")
    parser.add_argument("--case", help="CODE@VERSION")
    parser.add_argument("--actor", default="rtqa-flow")
    args = parser.parse_args(argv)
    print(
        run_rescore(protocol=args.protocol, version=args.version, case=args.case, actor=args.actor, settings=Settings())
    )


if __name__ == "__main__":
    main()
