"""A reviewer's look at how a submission's structure names were mapped to AAPM TG-263 names, and what they said.

Definitions:

* the *mapping* of a scored submission lists, per structure used in scoring, the centre's (3006,0026) *ROIName*,
  the TG-263 name it was taken as and the rule that matched it (from the stored results: ``StructureResult``
  ``submitted_name`` and ``parameters["name_match"]``; ``PlanResult`` ``parameters["submitted_name"]`` with
  ``"name_match"``, or ``"prescription_source"`` for a target). The outlining scorer's record of the scoring
  (the ``submission.scored`` audit event) adds the submitted names that matched nothing (``unmatched``), those
  with several candidates (``ambiguous``) and the wanted structures no name matched (``missing``); the planning
  scorer's name warnings are kept as ``notes``.
* *confirming* records the whole mapping as the reviewer saw it (audit ``mapping.confirmed``); the mapping is
  *confirmed* while its latest confirmation lists exactly the current rows.
* *flagging* a row says it is wrong, with a note (audit ``mapping.flagged``). Neither changes any result or
  outcome: a wrong mapping is corrected by an override or a new submission.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from models.audit import record_audit
from models.tables import AuditEvent, PlanResult, StructureResult, Submission

__all__ = [
    "MappingConfirmation",
    "MappingReviewError",
    "MappingRow",
    "NameMappingView",
    "UnknownMappingSubmissionError",
    "confirm_mapping",
    "flag_mapping",
    "name_mapping",
]

CONFIRMED = "mapping.confirmed"
FLAGGED = "mapping.flagged"

_NAME_WARNINGS = ("could be any of", "all map to", "maps to")
"""Phrases of the planning scorer's warnings about structure names (:func:`qa_checks.planning.score_plan`)."""

RowKind = Literal["matched", "unmatched", "ambiguous", "missing"]
"""``matched``: a submitted name taken as a TG-263 name; ``unmatched``: a submitted name matching no wanted
structure; ``ambiguous``: one with several candidates (none chosen); ``missing``: a wanted TG-263 name no submitted
name matched."""


class MappingReviewError(ValueError):
    """A confirmation or flag refused; the message says why."""


class UnknownMappingSubmissionError(MappingReviewError, LookupError):
    """No submission has the given id."""


@dataclass(frozen=True)
class MappingRow:
    """One line of the mapping: ``submitted`` -> ``tg263`` because ``reason`` (either side None when absent)."""

    submitted: str | None
    tg263: str | None
    reason: str
    kind: RowKind
    flags: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the flags)."""
        return {"submitted": self.submitted, "tg263": self.tg263, "reason": self.reason, "kind": self.kind}


@dataclass(frozen=True)
class MappingConfirmation:
    """The latest confirmation: who, when, with what note, and whether it still matches the current rows."""

    actor: str
    at: datetime
    note: str | None
    current: bool


@dataclass(frozen=True)
class NameMappingView:
    """A submission's mapping, the scorer's notes about names, the latest confirmation and every review event."""

    rows: tuple[MappingRow, ...]
    notes: tuple[str, ...] = ()
    confirmation: MappingConfirmation | None = None
    reviews: tuple[AuditEvent, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 UTC times)."""
        c = self.confirmation
        return {
            "mapping": [{**r.as_dict(), "flags": list(r.flags)} for r in self.rows],
            "notes": list(self.notes),
            "confirmation": None
            if c is None
            else {"by": c.actor, "at": c.at.isoformat(), "note": c.note, "matches_current_mapping": c.current},
            "reviews": [
                {
                    "action": e.action,
                    "by": e.actor,
                    "at": e.at.isoformat(),
                    "note": e.reason,
                    **({"row": dict(e.after)} if e.action == FLAGGED and e.after else {}),
                }
                for e in self.reviews
            ],
        }


def _scored_details(session: Session, submission_id: int) -> Mapping[str, Any]:
    event = session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.subject_type == "submission",
            AuditEvent.subject_id == str(submission_id),
            AuditEvent.action == "submission.scored",
        )
        .order_by(col(AuditEvent.id).desc())
    ).first()
    return dict(event.after or {}) if event is not None else {}


def _mapping_rows(session: Session, submission_id: int) -> tuple[list[MappingRow], list[str]]:
    rows: dict[tuple[str | None, str | None], MappingRow] = {}

    def add(submitted: str | None, tg263: str | None, reason: str, kind: RowKind) -> None:
        rows.setdefault((submitted, tg263), MappingRow(submitted, tg263, reason, kind))

    for r in session.exec(
        select(StructureResult).where(StructureResult.submission_id == submission_id).order_by(col(StructureResult.id))
    ).all():
        if r.submitted_name:
            add(r.submitted_name, r.structure, str(r.parameters.get("name_match") or "not recorded"), "matched")
    for p in session.exec(
        select(PlanResult).where(PlanResult.submission_id == submission_id).order_by(col(PlanResult.id))
    ).all():
        params = p.parameters
        if p.structure and params.get("submitted_name"):
            if params.get("prescription_source"):
                reason = f"target of the plan; prescription: {params['prescription_source']}"
            else:
                reason = str(params.get("name_match") or "not recorded")
            add(str(params["submitted_name"]), p.structure, reason, "matched")
        for part, name in zip(params.get("composite_of") or [], params.get("submitted_names") or [], strict=False):
            add(str(name), str(part), f"part of {p.structure}; the matching rule is not recorded", "matched")
    details = _scored_details(session, submission_id)
    for name in details.get("unmatched_submitted") or []:
        add(str(name), None, "matches no structure the protocol asks for (or is only proposed for one)", "unmatched")
    for name, candidates in (details.get("ambiguous") or {}).items():
        add(str(name), None, f"could be any of {', '.join(map(str, candidates))}: none chosen", "ambiguous")
    for name in details.get("missing") or []:
        add(None, str(name), "no submitted structure matches this name", "missing")
    notes = [str(w) for w in details.get("warnings") or [] if any(m in str(w) for m in _NAME_WARNINGS)]
    return list(rows.values()), notes


def _reviews(session: Session, submission_id: int) -> list[AuditEvent]:
    return list(
        session.exec(
            select(AuditEvent)
            .where(
                AuditEvent.subject_type == "submission",
                AuditEvent.subject_id == str(submission_id),
                col(AuditEvent.action).in_([CONFIRMED, FLAGGED]),
            )
            .order_by(col(AuditEvent.id).desc())
        ).all()
    )


def _snapshot(rows: Iterable[MappingRow]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in rows]


def name_mapping(session: Session, submission_id: int) -> NameMappingView:
    """The mapping of submission ``submission_id`` with its notes, latest confirmation and review events (newest
    first); every row carries the flags raised on it."""
    rows, notes = _mapping_rows(session, submission_id)
    reviews = _reviews(session, submission_id)
    flags: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for e in reviews:
        if e.action == FLAGGED and e.after:
            key = (e.after.get("submitted"), e.after.get("tg263"))
            flags.setdefault(key, []).append({"by": e.actor, "at": e.at.isoformat(), "note": e.reason})
    rows = [
        MappingRow(r.submitted, r.tg263, r.reason, r.kind, tuple(flags.get((r.submitted, r.tg263), ()))) for r in rows
    ]
    latest = next((e for e in reviews if e.action == CONFIRMED), None)
    confirmation = None
    if latest is not None:
        confirmed_rows = (latest.after or {}).get("mapping")
        confirmation = MappingConfirmation(
            actor=latest.actor, at=latest.at, note=latest.reason, current=confirmed_rows == _snapshot(rows)
        )
    return NameMappingView(tuple(rows), tuple(notes), confirmation, tuple(reviews))


def _submission(session: Session, submission_id: int) -> Submission:
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise UnknownMappingSubmissionError(f"submission {submission_id} does not exist")
    return sub


def confirm_mapping(session: Session, *, submission_id: int, actor: str, note: str | None = None) -> AuditEvent:
    """Record that ``actor`` checked the whole current mapping (audit ``mapping.confirmed`` with the rows).

    Raises:
        UnknownMappingSubmissionError: no such submission.
        MappingReviewError: the submission has no mapping (not scored, or its stage maps no names).
    """
    _submission(session, submission_id)
    rows, _ = _mapping_rows(session, submission_id)
    if not rows:
        raise MappingReviewError(
            f"submission {submission_id} has no structure-name mapping to confirm "
            "(it is not scored yet, or its stage uses no structure names)"
        )
    return record_audit(
        session,
        actor=actor,
        action=CONFIRMED,
        subject_type="submission",
        subject_id=submission_id,
        after={"mapping": _snapshot(rows)},
        reason=note.strip() if note and note.strip() else None,
    )


def flag_mapping(
    session: Session,
    *,
    submission_id: int,
    submitted: str | None,
    tg263: str | None,
    note: str,
    actor: str,
) -> AuditEvent:
    """Record that the row ``submitted`` -> ``tg263`` is wrong, with ``note`` saying why (audit
    ``mapping.flagged``). Nothing else changes.

    Raises:
        UnknownMappingSubmissionError: no such submission.
        MappingReviewError: a blank note, or no such row in the current mapping.
    """
    _submission(session, submission_id)
    note = note.strip()
    if not note:
        raise MappingReviewError("a flag needs a note: say what is wrong with the mapping and what it should be")
    rows, _ = _mapping_rows(session, submission_id)
    row = next((r for r in rows if (r.submitted, r.tg263) == (submitted or None, tg263 or None)), None)
    if row is None:
        raise MappingReviewError(
            f"submission {submission_id}'s mapping has no row {submitted or '(none)'} -> {tg263 or '(none)'}; "
            "flag one of the rows it lists"
        )
    return record_audit(
        session,
        actor=actor,
        action=FLAGGED,
        subject_type="submission",
        subject_id=submission_id,
        after=row.as_dict(),
        reason=note,
    )
