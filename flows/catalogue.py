"""Publishing benchmark cases: build the reference files and register the case and its trial in the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from benchmarks.cases import CaseSpec, build_case, get_case
from benchmarks.protocols import Protocol, list_protocols, load_protocol
from flows._store import engine_for
from flows.deferred import flow, task
from flows.runtime import call, run_flow, with_flow_settings
from flows.steps import add_case
from models.audit import record_audit
from models.enums import QAStage
from models.settings import Settings
from models.stages import register_stage_requirements
from models.tables import BenchmarkCase, Technique, Trial, TrialRequirement


class CatalogueError(ValueError):
    """A case or protocol names something the database does not know (e.g. a technique code)."""


@task(retries=1, retry_delay_seconds=2, task_run_name="build-reference[{case_code}]")
def build_reference(case_code: str, cases_dir: str) -> dict[str, Any]:
    """Build (or find, if already built) the reference files of a case; returns where they are and their hash."""
    built = build_case(case_code, Path(cases_dir))
    return {
        "case_code": built.spec.case_id,
        "version": built.spec.version,
        "reference_path": str(built.directory.resolve()),
        "sha256": built.content_sha256,
    }


@task(task_run_name="register-case[{reference[case_code]}]")
def register_case(reference: dict[str, Any], *, actor: str, database_url: str) -> int:
    """Insert the benchmark case (idempotent by code and version) and the trial its protocol defines."""
    spec = get_case(reference["case_code"])
    protocol = load_protocol(spec.protocol_id)
    with Session(engine_for(database_url)) as session:
        technique = session.exec(select(Technique).where(Technique.code == spec.technique)).first()
        if technique is None or technique.id is None:
            raise CatalogueError(f"case {spec.case_id!r}: unknown technique {spec.technique!r}; run `rtqa db init`")
        case = session.exec(
            select(BenchmarkCase).where(BenchmarkCase.case_code == spec.case_id, BenchmarkCase.version == spec.version)
        ).first()
        if case is not None:
            if case.reference_sha256 != reference["sha256"]:
                raise CatalogueError(
                    f"case {spec.case_id}@{spec.version}: rebuilt reference hash {reference['sha256']} differs from "
                    f"the registered {case.reference_sha256}; bump the case version instead of changing it"
                )
        else:
            case = BenchmarkCase(
                case_code=spec.case_id,
                version=spec.version,
                title=spec.title,
                technique_id=technique.id,
                stage=case_stage(spec),
                protocol_id=protocol.id,
                protocol_version=protocol.version,
                reference_sha256=reference["sha256"],
                reference_path=reference["reference_path"],
            )
            add_case(session, case, actor=actor)
        register_protocol(session, protocol, actor=actor)
        session.commit()
        assert case.id is not None
        return case.id


def case_stage(spec: CaseSpec) -> QAStage:
    """The QA stage a library case belongs to."""
    return QAStage(spec.stage)


def register_protocol(session: Session, protocol: Protocol, *, actor: str) -> None:
    """Register the trial a protocol defines, the techniques it requires and the QA stages each credential needs
    (idempotent); audited."""
    _register_trial(
        session,
        protocol_id=protocol.id,
        title=protocol.title,
        technique_codes=sorted({r.technique for r in protocol.required_credentials}),
        actor=actor,
    )
    for scope in ("technique", "trial"):
        chosen = [r for r in protocol.required_credentials if r.scope == scope]
        if chosen:
            register_stage_requirements(
                session,
                protocol_id=protocol.id,
                requirements=[(r.stage, r.technique, r.description) for r in chosen],
                trial_code=protocol.id if scope == "trial" else None,
                actor=actor,
            )


def register_shipped_protocols(session: Session, *, actor: str) -> list[str]:
    """Register every shipped protocol (:func:`register_protocol`); returns their ids."""
    protocols = list_protocols()
    for protocol in protocols:
        register_protocol(session, protocol, actor=actor)
    return [p.id for p in protocols]


def _register_trial(session: Session, *, protocol_id: str, title: str, technique_codes: list[str], actor: str) -> None:
    trial = session.exec(select(Trial).where(Trial.code == protocol_id)).first()
    if trial is None:
        trial = Trial(code=protocol_id, title=title, protocol_id=protocol_id)
        session.add(trial)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="trial.registered",
            subject_type="trial",
            subject_id=trial.id or 0,
            after={"code": protocol_id, "requires": technique_codes},
        )
    assert trial.id is not None
    for code in technique_codes:
        technique = session.exec(select(Technique).where(Technique.code == code)).first()
        if technique is None or technique.id is None:
            raise CatalogueError(f"protocol {protocol_id!r} requires unknown technique {code!r}")
        exists = session.exec(
            select(TrialRequirement).where(
                TrialRequirement.trial_id == trial.id, TrialRequirement.technique_id == technique.id
            )
        ).first()
        if exists is None:
            session.add(TrialRequirement(trial_id=trial.id, technique_id=technique.id))


def publish_steps(settings: Settings, case_code: str, actor: str = "rtqa-flow") -> int:
    """The flow's body: build the case's reference files and register it; returns the case's database id."""
    reference = call(build_reference, case_code, str(settings.cases_dir))
    return int(call(register_case, reference, actor=actor, database_url=settings.resolved_database_url))


@flow(name="publish-case")
def publish_case(case_code: str, actor: str = "rtqa-flow") -> int:
    """Build a benchmark case's reference files and register it; returns the case's database id.

    The database and data directory come from the environment (see :mod:`flows.runtime`).
    """
    return with_flow_settings(publish_steps, case_code, actor)  # type: ignore[no-any-return]


def run_publish_case(settings: Settings, case_code: str, actor: str = "rtqa-flow") -> int:
    """Run :func:`publish_case` for ``settings``: a Prefect flow run or inline (``Settings.flow_runs``)."""
    return run_flow(publish_case, publish_steps, settings, case_code, actor)
