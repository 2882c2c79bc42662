"""Judging one scoring run's stored results against a protocol: the decision's evaluation, and what a rescore
changed between two runs.

Outlining results are judged against the protocol's outlining criteria; planning and dosimetry results carry the
criteria they were scored with in their parameters (``criteria``), so they are judged by those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from benchmarks.protocols import GAMMA_STRUCTURE, Protocol
from flows.scoring import criterion_from_json
from models.enums import QAStage
from models.scoring_runs import results_of_run
from models.tables import DoseResult, PlanResult, StructureResult
from qa_checks.protocol import CriterionResult, Evaluation, evaluate

__all__ = ["CriterionChange", "criterion_changes", "evaluate_run"]


def evaluate_run(session: Session, run_id: int, stage: QAStage, protocol: Protocol) -> Evaluation:
    """The protocol evaluation of one scoring run's results (``protocol`` gives the outlining criteria)."""
    if stage is QAStage.OUTLINING_BENCHMARK:
        results = results_of_run(session, StructureResult, run_id)
        measured = {(r.structure, r.metric): r.value for r in results if r.value is not None}
        return evaluate(protocol.outlining_criteria(), measured, present_structures={r.structure for r in results})
    rows: list[tuple[str, str, float | None, dict[str, Any]]]
    if stage is QAStage.PLANNING_BENCHMARK:
        plan_rows = results_of_run(session, PlanResult, run_id)
        rows = [(r.structure or "", r.metric, r.value, dict(r.parameters)) for r in plan_rows]
    else:
        dose_rows = results_of_run(session, DoseResult, run_id)
        rows = [(GAMMA_STRUCTURE, r.metric, r.value, dict(r.parameters)) for r in dose_rows]
    criteria = {c["id"]: criterion_from_json(c) for _, _, _, params in rows for c in params.get("criteria", [])}
    measured = {(s, m): v for s, m, v, _ in rows if v is not None}
    missing_reasons = {(s, m): str(p["reason"]) for s, m, v, p in rows if v is None and p.get("reason")}
    present = {s for s, m, v, _ in rows if m == "Volume" and v} | {GAMMA_STRUCTURE}
    present |= {c.structure for c in criteria.values() if c.key in measured or c.key in missing_reasons}
    return evaluate(list(criteria.values()), measured, present_structures=present, missing_reasons=missing_reasons)


@dataclass(frozen=True)
class CriterionChange:
    """One criterion whose measured value, levels or result differ between two evaluations.

    ``None`` on one side: the criterion exists in only one of them (e.g. the new protocol added or dropped it).
    Levels are ``(per_protocol, acceptable)`` in the criterion's unit.
    """

    criterion_id: str
    structure: str
    metric: str
    unit: str
    old_value: float | None
    new_value: float | None
    old_levels: tuple[float, float] | None
    new_levels: tuple[float, float] | None
    old_result: str | None
    new_result: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the scoring run and in the audit trail)."""
        return {
            "criterion": self.criterion_id,
            "structure": self.structure,
            "metric": self.metric,
            "unit": self.unit,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "old_levels": list(self.old_levels) if self.old_levels else None,
            "new_levels": list(self.new_levels) if self.new_levels else None,
            "old_result": self.old_result,
            "new_result": self.new_result,
        }


def _same_value(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def _same_levels(a: CriterionResult, b: CriterionResult) -> bool:
    ca, cb = a.criterion, b.criterion
    return (ca.direction, ca.per_protocol, ca.acceptable, ca.unit) == (
        cb.direction,
        cb.per_protocol,
        cb.acceptable,
        cb.unit,
    )


def _levels(result: CriterionResult | None) -> tuple[float, float] | None:
    return None if result is None else (result.criterion.per_protocol, result.criterion.acceptable)


def criterion_changes(old: Evaluation | None, new: Evaluation) -> list[CriterionChange]:
    """Every criterion whose value, levels, direction or result differ between ``old`` and ``new``, in the new
    evaluation's order, then criteria only the old one had. Values are compared exactly (a rescore of the same
    files reproduces them bit for bit); ``old`` None (unknown) lists every criterion of ``new``."""
    before = {r.criterion.id: r for r in old.results} if old is not None else {}
    after = {r.criterion.id: r for r in new.results}
    changes: list[CriterionChange] = []
    for cid in [*after, *(c for c in before if c not in after)]:
        a, b = before.get(cid), after.get(cid)
        if a is not None and b is not None and _same_value(a.value, b.value) and _same_levels(a, b):
            continue  # the same value judged by the same levels: the same result
        shown = b or a
        assert shown is not None
        changes.append(
            CriterionChange(
                criterion_id=cid,
                structure=shown.criterion.structure,
                metric=shown.criterion.metric,
                unit=shown.criterion.unit,
                old_value=a.value if a is not None else None,
                new_value=b.value if b is not None else None,
                old_levels=_levels(a),
                new_levels=_levels(b),
                old_result=a.outcome.value if a is not None else None,
                new_result=b.outcome.value if b is not None else None,
            )
        )
    return changes
