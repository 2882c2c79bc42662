"""The national strip plot: for each metric, a box plot of every provider's value, each value a dot, the
highlighted providers' dots in colour with their labels (all others unlabelled), and the protocol's levels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from portal.reporting.style import ACCEPTABLE, OTHERS, PER_PROTOCOL, SUBMITTED, new_figure

GOLDEN = 0.6180339887498949


@dataclass(frozen=True)
class StripRow:
    """One metric's row.

    Attributes:
        label: what the metric is, e.g. ``"PTV dice"``.
        unit: its unit (``"1"`` for none).
        others: values drawn as unlabelled grey dots (any order; they are drawn sorted).
        highlighted: ``(value, label)`` drawn in colour with the label.
        note: text after the label (e.g. the highlighted value's percentile).
        per_protocol, acceptable: the protocol's levels, drawn as vertical lines, when known.
    """

    label: str
    unit: str
    others: tuple[float, ...]
    highlighted: tuple[tuple[float, str], ...]
    note: str = ""
    per_protocol: float | None = None
    acceptable: float | None = None


def _jitter(i: int) -> float:
    """A spread-out vertical offset in [-0.25, 0.25) for the i-th dot (low-discrepancy, no randomness)."""
    return ((i * GOLDEN) % 1.0 - 0.5) * 0.5


def strip_figure(rows: Sequence[StripRow], *, title: str) -> Figure:
    """One panel per row, stacked (each with its own scale)."""
    n = max(len(rows), 1)
    top_in, bottom_in, row_in = 0.45, 0.55, 1.15
    height = top_in + bottom_in + row_in * n
    fig = new_figure(7.2, height)
    fig.subplots_adjust(left=0.04, right=0.97, top=1 - top_in / height, bottom=bottom_in / height, hspace=0.9)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    for ax, row in zip(axes, rows, strict=False):
        values = sorted(row.others) + [v for v, _ in row.highlighted]
        if values:
            ax.boxplot(
                values,
                orientation="horizontal",
                widths=0.6,
                showfliers=False,
                positions=[0],
                medianprops={"color": "#24292f"},
                boxprops={"color": "#57606a"},
                whiskerprops={"color": "#57606a"},
                capprops={"color": "#57606a"},
            )
        others = sorted(row.others)
        ax.scatter(others, [_jitter(i) for i in range(len(others))], s=14, color=OTHERS, zorder=3, linewidths=0)
        for level, colour in ((row.per_protocol, PER_PROTOCOL), (row.acceptable, ACCEPTABLE)):
            if level is not None:
                ax.axvline(level, color=colour, linewidth=1.0, linestyle="--")
        for value in (v for v, _ in row.highlighted):
            ax.scatter([value], [0], s=46, color=SUBMITTED, zorder=4, edgecolors="white", linewidths=0.8)
        ax.margins(x=0.08)
        lo, hi = ax.get_xlim()
        for j, (value, label) in enumerate(row.highlighted):
            left_half = (value - lo) <= (hi - lo) / 2
            ax.annotate(
                label,
                (value, 0),
                xytext=(5 if left_half else -5, 8 if j % 2 == 0 else -14),
                textcoords="offset points",
                ha="left" if left_half else "right",
                fontsize=7.5,
                color=SUBMITTED,
                zorder=5,
            )
        unit = "" if row.unit in ("", "1") else f" ({row.unit})"
        ax.set_title(f"{row.label}{unit}" + (f" — {row.note}" if row.note else ""), loc="left", fontsize=8.5)
        ax.set_yticks([])
        ax.set_ylim(-0.6, 0.6)
        ax.tick_params(axis="x", labelsize=8)
    if any(r.per_protocol is not None or r.acceptable is not None for r in rows):
        fig.legend(
            handles=[
                Line2D([], [], color=PER_PROTOCOL, linestyle="--", label="per-protocol level"),
                Line2D([], [], color=ACCEPTABLE, linestyle="--", label="acceptable level"),
                Line2D([], [], color=OTHERS, marker="o", linestyle="", label="other centres"),
            ],
            loc="lower center",
            ncols=3,
            fontsize=7.5,
            frameon=False,
        )
    if not rows:
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no values", ha="center", va="center")
    return fig
