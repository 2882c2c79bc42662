"""Shared look of the report figures and how a figure becomes bytes."""

from __future__ import annotations

import io
from typing import Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import portal.reporting  # noqa: F401  (sets the Agg backend first)

SUBMITTED: Final = "#d1242f"
"""Colour of what the centre submitted (contours, its point on the national plots)."""

REFERENCE: Final = "#0969da"
"""Colour of the reference."""

OTHERS: Final = "#8c959f"
"""Colour of other providers' points."""

PER_PROTOCOL: Final = "#1a7f37"
ACCEPTABLE: Final = "#9a6700"

PNG_DPI: Final = 110
"""Resolution of the PNG figures (a 6.4 in wide figure is 704 pixels)."""

SERIES: Final = ("#0969da", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#1b7c83", "#bf3989", "#57606a", "#6e7781")
"""Colours of the structures of a DVH, in order."""


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure with its own Agg canvas (no pyplot state). No layout engine: each figure places its axes itself
    (a constrained layout cost about half the drawing time)."""
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, *, dpi: int = PNG_DPI) -> bytes:
    """The figure as PNG (no timestamp in it, so the same figure gives the same bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def svg_bytes(fig: Figure) -> bytes:
    """The figure as SVG with its text as text (see :mod:`portal.reporting`), without a date."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()
