"""Tables exported as CSV or JSON: the same rows either way.

CSV is written by the :mod:`csv` module (RFC 4180 quoting, CRLF line ends), UTF-8, with a header row. A cell that a
spreadsheet would run as a formula (text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is
prefixed with a single quote (OWASP "CSV injection"); a plain number such as ``-3`` is left as it is. The JSON twin
holds the same rows as objects keyed by the CSV header, values unescaped (``null`` where the CSV cell is empty).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, status
from fastapi.responses import Response

FORMATS = ("csv", "json")
"""The export formats, as the ``format`` query parameter names them."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make spreadsheet programs evaluate a cell."""

_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")

Cell = str | int | None


def csv_cell(value: Cell) -> str:
    """One value as CSV cell text: empty for ``None``; formula-like text prefixed with ``'``."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


@dataclass(frozen=True)
class ExportTable:
    """Rows to export: ``columns`` in order; every row has exactly those keys. ``meta`` goes into the JSON only."""

    filename: str
    columns: tuple[str, ...]
    rows: tuple[Mapping[str, Cell], ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if tuple(row) != self.columns:
                raise ValueError(f"export {self.filename}: row {i} has keys {list(row)}, not {list(self.columns)}")

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([csv_cell(row[c]) for c in self.columns])
        return out.getvalue()

    def to_json(self) -> dict[str, Any]:
        return {**self.meta, "columns": list(self.columns), "rows": [dict(r) for r in self.rows]}


def parse_format(value: str | None) -> str:
    """The requested export format (default JSON); 422 naming the value otherwise."""
    chosen = (value or "json").strip().lower()
    if chosen not in FORMATS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"format must be csv or json, not {value!r}")
    return chosen


def export_response(table: ExportTable, fmt: str) -> Response:
    """The table as a CSV download (``Content-Disposition: attachment``) or as JSON."""
    if fmt == "csv":
        return Response(
            table.to_csv().encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{table.filename}.csv"'},
        )
    return Response(json.dumps(table.to_json(), ensure_ascii=False).encode("utf-8"), media_type="application/json")


def export_links(path: str, query: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The CSV and JSON URLs of an export, keeping the page's filters."""
    kept = [(k, v) for k, v in query if v != ""]
    return {fmt: f"{path}?{urlencode([*kept, ('format', fmt)])}" for fmt in FORMATS}


__all__ = ["FORMATS", "ExportTable", "csv_cell", "export_links", "export_response", "parse_format"]
