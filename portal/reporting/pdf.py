"""The report as a PDF (matplotlib's PdfPages, A4 portrait): a summary with the outcome, reasons and criteria table,
the name mapping and notes, then the report's own figures (the cached PNG files) and the national strip (drawn
again as vectors). A rejected submission's PDF holds its rejection reason only.
"""

from __future__ import annotations

import io
import os
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib.image as mpimg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from portal.reporting.build import Report
from portal.reporting.national_plot import strip_figure
from portal.reporting.style import png_bytes

__all__ = ["cached_report_pdf", "report_pdf"]

A4_IN: Final = (8.27, 11.69)
MARGIN: Final = 0.07
"""Page margin, as a fraction of the page's width and height."""

PDF_DPI: Final = 150
"""Resolution at which the national strip is drawn for the PDF."""


def _save(pdf: PdfPages, fig: Figure) -> None:
    """Add ``fig`` as the PDF's next page."""
    pdf.savefig(fig)  # type: ignore[no-untyped-call]


def _words(value: str) -> str:
    return value.replace("_", " ")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "not measured"
    text = f"{value:.4g}"
    return text if unit in ("", "1") else f"{text} {unit}"


class _TextPages:
    """Lines of text (headings, wrapped paragraphs, table rows) flowing over as many A4 pages as they need."""

    def __init__(self, pdf: PdfPages) -> None:
        self.pdf = pdf
        self.fig: Figure | None = None
        self.y = 0.0

    def _room(self, height: float) -> Figure:
        if self.fig is None or self.y - height < MARGIN:
            self.flush()
            self.fig = Figure(figsize=A4_IN)
            self.y = 1 - MARGIN
        return self.fig

    def _line(self, text: str, *, size: float = 9, weight: str = "normal", x: float = MARGIN) -> None:
        height = size * 1.45 / (A4_IN[1] * 72)
        fig = self._room(height)
        fig.text(x, self.y, text, fontsize=size, fontweight=weight, va="top", ha="left")
        self.y -= height

    def heading(self, text: str, size: float = 12) -> None:
        self.y -= 0.008
        self._line(text, size=size, weight="bold")

    def paragraph(self, text: str, *, width: int = 105, indent: str = "") -> None:
        for line in textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=" " * len(indent)):
            self._line(line)

    def row(self, cells: Sequence[str], columns: Sequence[float], *, bold: bool = False) -> None:
        height = 8 * 1.5 / (A4_IN[1] * 72)
        fig = self._room(height)
        for cell, x in zip(cells, columns, strict=True):
            fig.text(MARGIN + x, self.y, cell, fontsize=7.5, fontweight="bold" if bold else "normal", va="top")
        self.y -= height

    def flush(self) -> None:
        if self.fig is not None:
            _save(self.pdf, self.fig)
            self.fig = None


def _summary(pages: _TextPages, report: Report) -> None:
    f = report.facts
    pages.heading(f"rtqa report: submission {f.submission_id}", size=15)
    pages.paragraph(f"{f.provider_name} ({f.provider_code}), {f.case_label}: {f.case_title}")
    pages.paragraph(f"{f.stage.label}; attempt {f.attempt}; received {f.received_at:%Y-%m-%d}; status {f.status.value}")
    if f.rejection_reason is not None:
        pages.heading("Rejected")
        pages.paragraph(f.rejection_reason)
        return
    if f.outcome is None:
        pages.paragraph("Not decided yet: the report is complete once the submission is decided.")
        return
    o = f.outcome
    pages.heading(f"Outcome: {_words(o.level)}")
    pages.paragraph(f"{o.source} decision by {o.decided_by} on {o.decided_at:%Y-%m-%d}, protocol {o.protocol}")
    if o.justification:
        pages.paragraph(f"Justification: {o.justification}")
    for reason in o.reasons or ("every criterion is met at the per-protocol level",):
        pages.paragraph(reason, indent="- ")
    if f.criteria:
        pages.heading("Criteria")
        columns = (0.0, 0.16, 0.34, 0.5, 0.63, 0.76)
        pages.row(("structure", "metric", "measured", "per protocol", "acceptable", "result"), columns, bold=True)
        for c in f.criteria:
            sign = "≥" if c.direction == ">=" else "≤"
            pages.row(
                (
                    c.structure,
                    c.metric,
                    _number(c.value, c.unit),
                    f"{sign} {_number(c.per_protocol, c.unit)}",
                    f"{sign} {_number(c.acceptable, c.unit)}",
                    _words(c.outcome),
                ),
                columns,
            )
    if f.names:
        pages.heading("Structure names")
        for n in f.names:
            pages.paragraph(f"{n.submitted or '(none)'} → {n.structure or '(none)'}: {n.reason}", indent="- ")
    if f.notes or report.problems:
        pages.heading("Notes")
        for note in (*f.notes, *report.problems):
            pages.paragraph(note, indent="- ")


def _image_page(pdf: PdfPages, image: Any, caption: str) -> None:
    """One A4 page: ``image`` (an RGB(A) array) as wide as the page allows, from the top, the caption below it."""
    height_px, width_px = image.shape[:2]
    width_in = A4_IN[0] * (1 - 2 * MARGIN)
    height_in = width_in * height_px / width_px
    room_in = A4_IN[1] * (1 - 2 * MARGIN) - 0.8  # keep room for the caption
    if height_in > room_in:
        width_in, height_in = width_in * room_in / height_in, room_in
    fig = Figure(figsize=A4_IN)
    top = 1 - MARGIN
    ax = fig.add_axes((MARGIN, top - height_in / A4_IN[1], width_in / A4_IN[0], height_in / A4_IN[1]))
    ax.imshow(image)
    ax.axis("off")
    fig.text(MARGIN, top - height_in / A4_IN[1] - 0.01, "\n".join(textwrap.wrap(caption, 110)), fontsize=8, va="top")
    _save(pdf, fig)


def _image_pages(pdf: PdfPages, report: Report, folder: Path) -> None:
    """The cached figures, one per page, contour overlays four to a page."""
    for ref in (r for r in report.figures if r.section != "contours"):
        _image_page(pdf, mpimg.imread(folder / ref.file), ref.caption)
    grouped = report.section("contours")
    for start in range(0, len(grouped), 4):
        fig = Figure(figsize=A4_IN)
        for i, ref in enumerate(grouped[start : start + 4]):
            left = MARGIN + (i % 2) * 0.45
            bottom = 0.55 - (i // 2) * 0.45
            ax = fig.add_axes((left, bottom, 0.41, 0.36))
            ax.imshow(mpimg.imread(folder / ref.file))
            ax.axis("off")
            fig.text(left, bottom - 0.005, "\n".join(textwrap.wrap(ref.caption, 55)), fontsize=6.5, va="top")
        _save(pdf, fig)


NATIONAL_ROWS_PER_PAGE: Final = 8


def _national_pages(pdf: PdfPages, report: Report) -> None:
    """The national strip, :data:`NATIONAL_ROWS_PER_PAGE` metrics a page."""
    assert report.national is not None
    rows = report.national.strip_rows()
    title = f"{report.facts.case_label}: this submission among every centre"
    caption = (
        "Box: quartiles of every centre's value; grey dots: other centres (unnamed); red: this submission; dashed "
        "lines: the protocol's levels. Percentile: the share of centres below this value, counting ties as half."
    )
    for start in range(0, len(rows), NATIONAL_ROWS_PER_PAGE):
        fig = strip_figure(rows[start : start + NATIONAL_ROWS_PER_PAGE], title=title)
        image = mpimg.imread(io.BytesIO(png_bytes(fig, dpi=PDF_DPI)), format="png")
        _image_page(pdf, image, caption)


def report_pdf(report: Report) -> bytes:
    """The report as PDF bytes (see the module docstring)."""
    buffer = io.BytesIO()
    f = report.facts
    metadata = {
        "Title": f"rtqa report: submission {f.submission_id} ({f.case_label})",
        "Creator": "rtqa",
        "CreationDate": None,
    }
    with PdfPages(buffer, metadata=metadata) as pdf:
        pages = _TextPages(pdf)
        _summary(pages, report)
        pages.flush()
        if report.folder is not None and f.rejection_reason is None:
            _image_pages(pdf, report, report.folder)
        if report.national is not None:
            _national_pages(pdf, report)
    return buffer.getvalue()


def cached_report_pdf(report: Report) -> bytes:
    """:func:`report_pdf`, kept in the report's cache folder beside its figures (keyed by the national section's
    digest too, since other centres' results change it); a report without a folder is made every time."""
    if report.folder is None:
        return report_pdf(report)
    digest = report.national.digest[:16] if report.national is not None else "none"
    path = report.folder / f"report-{digest}.pdf"
    if path.is_file():
        return path.read_bytes()
    data = report_pdf(report)
    temporary = report.folder / f".{path.name}.{os.getpid()}-{threading.get_ident()}"
    temporary.write_bytes(data)
    os.replace(temporary, path)
    for old in report.folder.glob("report-*.pdf"):
        if old != path:
            old.unlink(missing_ok=True)
    return data
