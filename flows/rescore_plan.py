"""Which submissions a rescore touches: by protocol version or by case reference version.

See :mod:`flows.rescoring` for the rules; this module lists the submissions (and moves a protocol's cases to its
new version, audited).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from flows.protocol_store import resolve_protocol
from flows.scoring import RESULT_TABLES
from models.audit import record_audit
from models.enums import SubmissionStatus
from models.scoring_runs import current_run
from models.tables import BenchmarkCase, ScoringRun, Submission

__all__ = [
    "IN_PROGRESS",
    "RescoreError",
    "RescoreItem",
    "RescorePlan",
    "parse_case_target",
    "plan_case_rescore",
    "plan_protocol_rescore",
]

IN_PROGRESS = (SubmissionStatus.RECEIVED, SubmissionStatus.VALIDATED, SubmissionStatus.SCORED)


class RescoreError(ValueError):
    """A rescore cannot start (unknown case version, a stage that is not scored); the message says what to do."""


@dataclass(frozen=True)
class RescoreItem:
    """One submission to rescore: against which case's reference, with which protocol version."""

    submission_id: int
    case_id: int
    protocol_id: str
    protocol_version: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "case_id": self.case_id,
            "protocol_id": self.protocol_id,
            "protocol_version": self.protocol_version,
        }


@dataclass(frozen=True)
class RescorePlan:
    """What a rescore will do: its target in words, the submissions to rescore, and those still in progress."""

    target: str
    items: tuple[RescoreItem, ...]
    in_progress: tuple[int, ...]
    cases_moved: tuple[str, ...] = ()


def parse_case_target(text: str) -> tuple[str, str]:
    """``"CODE@VERSION"`` as ``(code, version)``.

    Raises:
        RescoreError: not of that form.
    """
    code, sep, version = text.partition("@")
    if not sep or not code.strip() or not version.strip():
        raise RescoreError(f"--case {text!r}: give the case and its new version as CODE@VERSION, e.g. my-case@1.1")
    return code.strip(), version.strip()


def _decided_needing(
    session: Session, case_ids: list[int], needs: Callable[[ScoringRun | None], bool]
) -> tuple[list[tuple[Submission, ScoringRun | None]], list[int]]:
    """Decided submissions to ``case_ids`` whose current run ``needs(run)`` a rescore, and the ids in progress."""
    subs = session.exec(
        select(Submission).where(col(Submission.case_id).in_(case_ids)).order_by(col(Submission.id))
    ).all()
    chosen: list[tuple[Submission, ScoringRun | None]] = []
    in_progress: list[int] = []
    for sub in subs:
        assert sub.id is not None
        if sub.status in IN_PROGRESS:
            in_progress.append(sub.id)
        elif sub.status is SubmissionStatus.DECIDED:
            run = current_run(session, sub.id)
            if needs(run):
                chosen.append((sub, run))
    return chosen, in_progress


def plan_protocol_rescore(
    session: Session, *, protocol_id: str, version: str, data_dir: Path, actor: str
) -> RescorePlan:
    """Move the cases of protocol ``protocol_id`` to ``version`` (audited) and list the submissions to rescore
    (see the module docstring). The caller commits.

    Raises:
        ProtocolError: no such protocol or version (naming the versions that exist).
    """
    protocol = resolve_protocol(protocol_id, version, data_dir=data_dir)
    cases = session.exec(
        select(BenchmarkCase)
        .where(BenchmarkCase.protocol_id == protocol.id, col(BenchmarkCase.stage).in_(list(RESULT_TABLES)))
        .order_by(col(BenchmarkCase.id))
    ).all()
    moved = []
    for case in cases:
        if case.protocol_version != protocol.version:
            before = {"protocol": f"{case.protocol_id}@{case.protocol_version}"}
            case.protocol_version = protocol.version
            session.add(case)
            record_audit(
                session,
                actor=actor,
                action="case.protocol_changed",
                subject_type="benchmark_case",
                subject_id=case.id or 0,
                before=before,
                after={"protocol": f"{protocol.id}@{protocol.version}"},
                reason=f"rescore: protocol {protocol.id} {before['protocol'].split('@', 1)[1]} -> {protocol.version}",
            )
            moved.append(f"{case.case_code}@{case.version}")
    session.flush()

    def needs(run: ScoringRun | None) -> bool:
        return run is None or (run.protocol_id, run.protocol_version) != (protocol.id, protocol.version)

    chosen, in_progress = _decided_needing(session, [c.id for c in cases if c.id is not None], needs)
    items = tuple(RescoreItem(sub.id or 0, sub.case_id, protocol.id, protocol.version) for sub, _ in chosen)
    return RescorePlan(f"protocol {protocol.id}@{protocol.version}", items, tuple(in_progress), tuple(moved))


def plan_case_rescore(session: Session, *, case_code: str, version: str) -> RescorePlan:
    """List the submissions to rescore against case ``case_code`` at ``version`` (see the module docstring).

    Raises:
        RescoreError: unknown case version, a stage that is not scored, or versions of different stages.
    """
    target = session.exec(
        select(BenchmarkCase).where(BenchmarkCase.case_code == case_code, BenchmarkCase.version == version)
    ).first()
    if target is None or target.id is None:
        known = session.exec(select(BenchmarkCase.version).where(BenchmarkCase.case_code == case_code)).all()
        have = f" (versions: {', '.join(known)})" if known else ""
        raise RescoreError(
            f"unknown case {case_code}@{version}{have}: publish or import the new version first "
            "(`rtqa cases publish` / `rtqa cases import`)"
        )
    if target.stage not in RESULT_TABLES:
        raise RescoreError(f"case {case_code}@{version} is a {target.stage.label}: only scored stages are rescored")
    versions = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == case_code)).all()
    for other in versions:
        if (other.stage, other.technique_id) != (target.stage, target.technique_id):
            raise RescoreError(
                f"case {case_code}@{other.version} is a {other.stage.label} and {case_code}@{version} a "
                f"{target.stage.label} (or their techniques differ): rescoring needs versions of one stage"
            )

    def needs(run: ScoringRun | None) -> bool:
        return run is None or run.case_id != target.id

    chosen, in_progress = _decided_needing(session, [c.id for c in versions if c.id is not None], needs)
    items = tuple(RescoreItem(sub.id or 0, target.id, target.protocol_id, target.protocol_version) for sub, _ in chosen)
    return RescorePlan(f"case {case_code}@{version}", items, tuple(in_progress))
