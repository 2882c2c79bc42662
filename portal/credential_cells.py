"""How one credential reads on the commissioners' pages: its status, how long it is valid, and where each QA stage
it needs stands.

The stage detail is the credential's own evidence (``Credential.evidence["stages"]``, written by
:mod:`models.credentials` each time the credential is evaluated), so a cell shows the same stages the API's
``/api/v1/providers/{code}/credentials`` shows. A provider with no credential for a technique yet reads
``not started``: every stage the technique requires is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.enums import QAStage, StageStatus
from models.tables import Credential

NOT_STARTED = "not started"
"""The status shown for a provider with no credential row for a technique or trial (no decided submission yet)."""


def ymd(when: datetime | None) -> str:
    """A time as its UTC date, ``YYYY-MM-DD``; empty for ``None``."""
    return when.astimezone(UTC).strftime("%Y-%m-%d") if when is not None else ""


def _time(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def words(value: str | None) -> str:
    """A stored vocabulary value in plain words: ``"unacceptable_variation"`` -> ``"unacceptable variation"``."""
    return (value or "").replace("_", " ")


@dataclass(frozen=True)
class StageLine:
    """One required QA stage of a credential and its evidence: the latest attempt at a case of that stage."""

    label: str
    status: str
    case: str | None = None
    submission_id: int | None = None
    attempt: int | None = None
    outcome: str | None = None
    decided_at: datetime | None = None
    valid_until: datetime | None = None

    @classmethod
    def from_evidence(cls, stage: dict[str, Any]) -> StageLine:
        """From one entry of ``Credential.evidence["stages"]`` (:meth:`models.stages.StageState.as_dict`)."""
        return cls(
            label=str(stage.get("description") or words(stage.get("stage"))),
            status=str(stage.get("status") or StageStatus.MISSING.value),
            case=stage.get("case"),
            submission_id=stage.get("submission_id"),
            attempt=stage.get("attempt"),
            outcome=stage.get("outcome"),
            decided_at=_time(stage.get("decided_at")),
            valid_until=_time(stage.get("valid_until")),
        )

    @property
    def passed(self) -> bool:
        return self.status == StageStatus.PASSED.value

    @property
    def text(self) -> str:
        """The stage in one line, e.g. ``"planning benchmark: failed (unacceptable variation, lung-sabr-planning@1.0
        attempt 2, decided 2026-03-01)"``."""
        detail = []
        if self.outcome:
            detail.append(words(self.outcome))
        if self.case:
            detail.append(f"{self.case} attempt {self.attempt}")
        if self.decided_at:
            detail.append(f"decided {ymd(self.decided_at)}")
        return f"{self.label}: {words(self.status)}" + (f" ({', '.join(detail)})" if detail else "")


@dataclass(frozen=True)
class CredentialCell:
    """A provider's credential for one technique or trial, as a table cell shows it."""

    code: str
    status: str
    valid_until: datetime | None
    stages: tuple[StageLine, ...]
    outstanding: tuple[str, ...]

    @property
    def passed(self) -> int:
        """How many required stages have passed."""
        return sum(1 for s in self.stages if s.passed)

    @property
    def stage_summary(self) -> str:
        """``"2 of 4 stages passed"`` (words, not ``2/4``, which spreadsheets read as a date)."""
        if not self.stages:
            return "no stages recorded"
        return f"{self.passed} of {len(self.stages)} stages passed"

    def validity_ended(self, now: datetime) -> bool:
        """Whether the credential still reads credentialed although its validity has ended (not yet lapsed)."""
        return self.status == "credentialed" and self.valid_until is not None and self.valid_until <= now


def cell_from_credential(code: str, cred: Credential) -> CredentialCell:
    """The cell of a stored credential, with the stages and outstanding items of its last evaluation."""
    evidence = dict(cred.evidence)
    return CredentialCell(
        code=code,
        status=cred.status.value,
        valid_until=cred.valid_until,
        stages=tuple(StageLine.from_evidence(s) for s in evidence.get("stages", []) if isinstance(s, dict)),
        outstanding=tuple(str(o) for o in evidence.get("outstanding", [])),
    )


def cell_not_started(code: str, required: Sequence[tuple[QAStage, str]]) -> CredentialCell:
    """The cell of a technique without a credential row: each required stage missing."""
    stages = tuple(
        StageLine(label=description or stage.label, status=StageStatus.MISSING.value) for stage, description in required
    )
    return CredentialCell(
        code=code,
        status=NOT_STARTED,
        valid_until=None,
        stages=stages,
        outstanding=tuple(f"{s.label}: missing" for s in stages) or ("no QA stages are registered",),
    )


def joined(lines: Iterable[str]) -> str:
    """Lines for one CSV cell, separated by ``"; "``."""
    return "; ".join(lines)


__all__ = [
    "NOT_STARTED",
    "CredentialCell",
    "StageLine",
    "cell_from_credential",
    "cell_not_started",
    "joined",
    "words",
    "ymd",
]
