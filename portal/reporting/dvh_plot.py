"""The DVH figure: each structure in its own colour, the centre's curve solid and the reference's dashed."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flows.report_figures import DvhCurve
from portal.reporting.style import SERIES, new_figure

LINESTYLE = {"submitted": "-", "reference": "--"}


def dvh_figure(curves: Sequence[DvhCurve], *, submitted_label: str) -> Figure:
    """Cumulative DVHs (volume in % of each structure against dose in Gy) of ``curves``.

    ``submitted_label`` names the centre's curves in the legend (e.g. "submitted plan", "centre's dose").
    """
    fig = new_figure(8.4, 4.6)
    ax = fig.add_axes((0.08, 0.11, 0.7, 0.82))
    structures = list(dict.fromkeys(c.structure for c in curves))
    colour = {s: SERIES[i % len(SERIES)] for i, s in enumerate(structures)}
    for c in curves:
        ax.plot(c.dose_gy, c.volume_percent, LINESTYLE.get(c.source, ":"), color=colour[c.structure], linewidth=1.4)
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume (% of the structure)")
    ax.set_ylim(0, 102)
    ax.set_xlim(left=0)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    handles = [Line2D([], [], color=colour[s], linewidth=2, label=s) for s in structures]
    handles += [
        Line2D([], [], color="black", linestyle="-", label=submitted_label),
        Line2D([], [], color="black", linestyle="--", label="reference"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.set_title("Dose-volume histograms", fontsize=11)
    return fig
