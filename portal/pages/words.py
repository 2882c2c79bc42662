"""Plain words for the centre pages: statuses, outcomes, stages and dates as people read them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from models.enums import QAStage

SUBMISSION_STEPS: Final = (
    ("received", "Received", "the files are stored"),
    ("validated", "Checked", "the files are readable and fit the case"),
    ("scored", "Scored", "measured against the reference and the protocol"),
    ("decided", "Decided", "the outcome is recorded"),
)
"""The steps of a submission in order: (status value, name, what it means). A rejection can end any step."""

STATUS_WORDS: Final = {
    "received": "received",
    "validated": "checked",
    "scored": "scored",
    "decided": "decided",
    "rejected": "rejected",
    "passed": "passed",
    "failed": "failed",
    "missing": "not started",
    "lapsed": "lapsed",
    "in_progress": "in progress",
    "pending": "pending",
    "credentialed": "credentialed",
    "suspended": "suspended",
    "per_protocol": "per protocol",
    "acceptable_variation": "acceptable variation",
    "unacceptable_variation": "unacceptable variation",
    "justified_variation": "justified variation",
}
"""Status, stage-state, credential and outcome values in words."""

MODALITY_WORDS: Final = {
    "CT": "CT images",
    "RTSTRUCT": "structure set (RTSTRUCT)",
    "RTPLAN": "plan (RTPLAN)",
    "RTDOSE": "dose (RTDOSE)",
}
"""DICOM modalities in words."""

FINAL_STATUSES: Final = frozenset({"decided", "rejected"})
"""Submission statuses after which nothing more happens by itself."""


def say(value: Any) -> str:
    """A status or outcome value in words (``"in_progress"`` -> ``"in progress"``); ``""`` for ``None``."""
    if value is None:
        return ""
    text = str(getattr(value, "value", value))
    return STATUS_WORDS.get(text, text.replace("_", " "))


def stage_words(stage: Any) -> str:
    """A QA stage value in words (``"planning_benchmark"`` -> ``"planning benchmark"``)."""
    text = str(getattr(stage, "value", stage))
    try:
        return QAStage(text).label
    except ValueError:
        return text.replace("_", " ")


def modalities(values: Any) -> str:
    """Modalities in words, joined with commas."""
    return ", ".join(MODALITY_WORDS.get(v, v) for v in values)


def day(value: datetime | str | None) -> str:
    """A date as YYYY-MM-DD (UTC); ``""`` for ``None``."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.date().isoformat()


def day_time(value: datetime | str | None) -> str:
    """A time as YYYY-MM-DD HH:MM UTC; ``""`` for ``None``."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


HELPERS: Final[dict[str, Any]] = {
    "say": say,
    "stage_words": stage_words,
    "modalities": modalities,
    "day": day,
    "day_time": day_time,
}
"""Passed to every centre template."""
