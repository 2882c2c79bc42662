"""What a submission's report says, read from the stored record: the outcome and its reasons, every criterion with
its measured value, levels and result, the structure-name mapping, the scorer's notes, and a key that changes
whenever any of them could.

The criteria are judged again from the stored results exactly as the decision judged them
(:func:`flows.credentialing.stored_evaluation`): planning and dosimetry results carry their criteria in their
parameters; outlining criteria come from the case's protocol version. Nothing here reads DICOM files (see
:mod:`flows.report_figures`) or knows about the web.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlmodel import Session, col, select

from flows.credentialing import stored_evaluation
from flows.protocol_store import resolve_protocol
from flows.steps import load_submission_and_case, relative_to_submission
from models.enums import QAStage, SubmissionStatus
from models.outcomes import current_outcome
from models.tables import AuditEvent, DoseResult, Outcome, PlanResult, Provider, StructureResult

__all__ = [
    "REPORT_FORMAT",
    "CriterionRow",
    "NameRow",
    "OutcomeFacts",
    "ReportFacts",
    "report_facts",
]

REPORT_FORMAT: Final = "rtqa-report-1"
"""Part of every report's key: change it when the figures or their data change meaning, so cached reports are
made again."""


@dataclass(frozen=True)
class CriterionRow:
    """One protocol criterion as judged on the stored value.

    ``outcome`` is ``per_protocol``, ``acceptable_variation`` or ``unacceptable_variation``; ``value`` is None when
    nothing could be measured, and ``reason`` then says why.
    """

    id: str
    structure: str
    metric: str
    direction: str
    per_protocol: float
    acceptable: float
    unit: str
    value: float | None
    outcome: str
    reason: str
    description: str


@dataclass(frozen=True)
class NameRow:
    """A line of the structure-name mapping: the protocol's TG-263 name, the name the centre used, and why they were
    matched (or why one side is missing: ``structure`` or ``submitted`` is None)."""

    structure: str | None
    submitted: str | None
    reason: str


@dataclass(frozen=True)
class OutcomeFacts:
    """The outcome in force."""

    level: str
    source: str
    decided_by: str
    decided_at: datetime
    reasons: tuple[str, ...]
    justification: str | None
    protocol: str


@dataclass(frozen=True)
class ReportFacts:
    """Everything the report states in words and tables.

    Attributes:
        key: SHA-256 (hex) over what the report depends on: the report format, the submission's status and last
            change, the current outcome, every stored result (value, unit, time computed) and the case's reference
            hash. A new outcome, an override or a rescore changes it.
        notes: what the scorer told the reviewer (name-mapping problems, grid edges, dose conversions), with
            paths relative to the submission.
    """

    submission_id: int
    provider_id: int
    provider_code: str
    provider_name: str
    case_id: int
    case_label: str
    case_title: str
    stage: QAStage
    attempt: int
    status: SubmissionStatus
    received_at: datetime
    rejection_reason: str | None
    outcome: OutcomeFacts | None
    criteria: tuple[CriterionRow, ...]
    names: tuple[NameRow, ...]
    notes: tuple[str, ...]
    key: str

    @property
    def decided(self) -> bool:
        """Whether the submission has an outcome to report (figures apply only then)."""
        return self.status is SubmissionStatus.DECIDED and self.outcome is not None


def _results(session: Session, submission_id: int, stage: QAStage) -> list[Any]:
    table: Any = {
        QAStage.OUTLINING_BENCHMARK: StructureResult,
        QAStage.PLANNING_BENCHMARK: PlanResult,
        QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK: DoseResult,
    }.get(stage)
    if table is None:
        return []
    return list(session.exec(select(table).where(table.submission_id == submission_id).order_by(col(table.id))).all())


def _audit_details(session: Session, submission_id: int, action: str) -> dict[str, Any]:
    """The details recorded with the submission's latest audit event ``action`` (e.g. what the scorer found)."""
    event = session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.subject_type == "submission",
            AuditEvent.subject_id == str(submission_id),
            AuditEvent.action == action,
        )
        .order_by(col(AuditEvent.id).desc())
    ).first()
    return dict(event.after or {}) if event is not None else {}


def _criteria(
    session: Session, submission_id: int, stage: QAStage, protocol_data_dir: Path, case: Any
) -> list[CriterionRow]:
    protocol = resolve_protocol(case.protocol_id, case.protocol_version, data_dir=protocol_data_dir)
    evaluation = stored_evaluation(session, submission_id, stage, protocol)
    return [
        CriterionRow(
            id=r.criterion.id,
            structure=r.criterion.structure,
            metric=r.criterion.metric,
            direction=r.criterion.direction,
            per_protocol=r.criterion.per_protocol,
            acceptable=r.criterion.acceptable,
            unit=r.criterion.unit,
            value=r.value,
            outcome=r.outcome.value,
            reason=r.reason,
            description=r.criterion.description,
        )
        for r in evaluation.results
    ]


def _outlining_names(results: list[StructureResult], details: dict[str, Any]) -> list[NameRow]:
    rows: dict[str, NameRow] = {}
    for r in results:
        reason = str(r.parameters.get("name_match") or "matched")
        rows.setdefault(r.structure, NameRow(r.structure, r.submitted_name, reason))
    out = list(rows.values())
    out += [NameRow(str(name), None, "no submitted structure maps to it") for name in details.get("missing", [])]
    out += [
        NameRow(None, str(name), "maps to no structure the protocol scores (a proposed match needs a reviewer)")
        for name in details.get("unmatched_submitted", [])
    ]
    out += [
        NameRow(None, str(name), f"could be any of {', '.join(map(str, options))}: not used")
        for name, options in dict(details.get("ambiguous", {})).items()
    ]
    return out


def _planning_names(results: list[PlanResult], storage_path: str) -> list[NameRow]:
    rows: dict[str, NameRow] = {}
    for r in results:
        p = r.parameters
        name = r.structure or ""
        if name in rows or not ({"submitted_name", "submitted_names"} & p.keys()):
            continue
        if "composite_of" in p:
            parts = [str(x) for x in p["composite_of"]]
            submitted = " + ".join(str(x) for x in p.get("submitted_names", []))
            rows[name] = NameRow(name, submitted, f"union of {', '.join(parts)}")
        elif "prescription_source" in p:
            source = relative_to_submission(str(p["prescription_source"]), storage_path)
            rows[name] = NameRow(name, str(p["submitted_name"]), f"target; prescription from {source}")
        else:
            rows[name] = NameRow(name, str(p["submitted_name"]), str(p.get("name_match") or "matched"))
    return list(rows.values())


def _key(facts: dict[str, Any], results: list[Any], outcome: Outcome | None, reference_sha256: str) -> str:
    state = {
        "format": REPORT_FORMAT,
        "facts": facts,
        "outcome": None if outcome is None else [outcome.id, outcome.level.value, outcome.decided_at.isoformat()],
        "reference": reference_sha256,
        "results": [
            [type(r).__name__, getattr(r, "structure", None), r.metric, r.value, r.unit, r.computed_at.isoformat()]
            for r in results
        ],
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def report_facts(session: Session, submission_id: int, *, data_dir: Path) -> ReportFacts:
    """The words and tables of submission ``submission_id``'s report (see :class:`ReportFacts`).

    ``data_dir`` is where added protocol versions live (:func:`flows.protocol_store.resolve_protocol`).

    Raises:
        LookupError: no submission has that id.
    """
    sub, case = load_submission_and_case(session, submission_id)
    provider = session.get(Provider, sub.provider_id)
    assert provider is not None and provider.id is not None and case.id is not None and sub.id is not None
    outcome = current_outcome(session, submission_id)
    results = _results(session, submission_id, case.stage)
    details = _audit_details(session, submission_id, "submission.scored")
    dose_notes = _audit_details(session, submission_id, "submission.validated").get("dose_notes", [])
    decided = sub.status is SubmissionStatus.DECIDED and outcome is not None
    criteria = _criteria(session, submission_id, case.stage, data_dir, case) if decided and results else []
    names: list[NameRow] = []
    if decided and case.stage is QAStage.OUTLINING_BENCHMARK:
        names = _outlining_names(results, details)
    elif decided and case.stage is QAStage.PLANNING_BENCHMARK:
        names = _planning_names(results, sub.storage_path)
    notes = [relative_to_submission(str(w), sub.storage_path) for w in [*dose_notes, *details.get("warnings", [])]]
    status_facts = {"status": sub.status.value, "updated_at": sub.updated_at.isoformat(), "attempt": sub.attempt}
    return ReportFacts(
        submission_id=sub.id,
        provider_id=provider.id,
        provider_code=provider.code,
        provider_name=provider.name,
        case_id=case.id,
        case_label=f"{case.case_code}@{case.version}",
        case_title=case.title,
        stage=case.stage,
        attempt=sub.attempt,
        status=sub.status,
        received_at=sub.received_at,
        rejection_reason=sub.rejection_reason,
        outcome=None
        if outcome is None
        else OutcomeFacts(
            level=outcome.level.value,
            source=outcome.source.value,
            decided_by=outcome.decided_by,
            decided_at=outcome.decided_at,
            reasons=tuple(outcome.reasons),
            justification=outcome.justification,
            protocol=f"{outcome.protocol_id}@{outcome.protocol_version}",
        ),
        criteria=tuple(criteria),
        names=tuple(names),
        notes=tuple(dict.fromkeys(notes)) if decided else (),
        key=_key(status_facts, results, outcome, case.reference_sha256),
    )
