"""Pieces the QA staff pages share: dates in words, choices from enums, and paging links that keep the filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import HTTPException, Request, status

E = TypeVar("E", bound=StrEnum)

PAGE_SIZE = 50
"""Rows per page of the queue and the audit log."""


def day(value: datetime | str | None) -> str:
    """``YYYY-MM-DD`` (UTC) of a datetime or an ISO 8601 string; empty for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d")


def stamp(value: datetime | str | None) -> str:
    """``YYYY-MM-DD HH:MM`` (UTC) of a datetime or an ISO 8601 string; empty for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M")


def words(value: str | None) -> str:
    """A stored value in plain words: ``"unacceptable_variation"`` -> ``"unacceptable variation"``."""
    return (value or "").replace("_", " ")


def choice(kind: type[E], name: str, value: str | None) -> E | None:
    """``value`` as a member of ``kind``; None when empty; 422 naming the parameter and the allowed values."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{name} {value!r} is not one of: {allowed}"
        ) from None


@dataclass(frozen=True)
class Pager:
    """Where a page of ``limit`` rows from ``offset`` sits among ``total``, with links to its neighbours."""

    total: int
    limit: int
    offset: int
    previous_url: str | None
    next_url: str | None

    @property
    def first(self) -> int:
        """1-based number of the first row shown (0 when none)."""
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)


def pager(request: Request, *, total: int, limit: int, offset: int) -> Pager:
    """Paging links for ``request``'s path that keep every query parameter but ``offset``."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "offset" and v]

    def url(at: int) -> str:
        query = urlencode([*kept, *([("offset", str(at))] if at else [])])
        return request.url.path + (f"?{query}" if query else "")

    previous_url = url(max(offset - limit, 0)) if offset > 0 else None
    next_url = url(offset + limit) if offset + limit < total else None
    return Pager(total=total, limit=limit, offset=offset, previous_url=previous_url, next_url=next_url)


FORMATTERS: dict[str, Any] = {"day": day, "stamp": stamp, "words": words}
"""Passed to the staff templates as functions (not registered on the shared Jinja environment)."""
