"""The TPS check's figures: the gamma histogram and the gamma map on the slice through the target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from flows.report_figures import GammaSlice
from portal.reporting.style import PER_PROTOCOL, REFERENCE, SUBMITTED, new_figure


def criteria_label(parameters: Mapping[str, Any]) -> str:
    """``"3%/2 mm global, 10% threshold"`` from stored gamma parameters."""
    return (
        f"{parameters['dose_percent']:g}%/{parameters['distance_mm']:g} mm {parameters['normalisation']}, "
        f"{parameters['lower_cutoff_percent']:g}% threshold"
    )


_GAMMA_COLOURS = LinearSegmentedColormap.from_list(
    "rtqa_gamma",
    [(0.0, "#eef7f0"), (0.4999, "#2da44e"), (0.5, "#f5c518"), (1.0, "#cf222e")],
)
"""Gamma 0 to 2: passing (up to 1) from pale to full green, failing (above 1) from yellow to red."""


def gamma_histogram_figure(bins: Mapping[str, int], parameters: Mapping[str, Any]) -> Figure:
    """Bars of the stored gamma histogram (points per gamma bin), passing bins (gamma ≤ 1) in green."""
    fig = new_figure(6.4, 3.6)
    ax = fig.add_axes((0.11, 0.14, 0.86, 0.76))
    labels = list(bins)
    counts = np.array([bins[k] for k in labels], dtype=float)
    total = counts.sum()
    share = 100.0 * counts / total if total else counts
    passing = [_upper(label) <= 1.0 for label in labels]
    ax.bar(range(len(labels)), share, color=[PER_PROTOCOL if p else SUBMITTED for p in passing])
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("gamma")
    ax.set_ylabel("points (% of reached points)")
    ax.set_title(f"Gamma histogram ({criteria_label(parameters)}; {int(total)} points)", fontsize=10)
    ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
    return fig


def _upper(label: str) -> float:
    """The upper edge of a histogram bin label (``"0.75-1"`` → 1; ``">=3"`` → inf)."""
    return float("inf") if label.startswith(">=") else float(label.split("-")[1])


def gamma_map_figure(cut: GammaSlice) -> Figure:
    """The gamma map of ``cut`` (0 to 2: up to 1 passes, above 1 fails), the 50% and 90% isodose lines of the
    reference dose and the target's contour."""
    fig = new_figure(6.4, 5.0)
    ax = fig.add_axes((0.12, 0.1, 0.68, 0.78))
    cmap = _GAMMA_COLOURS.with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
    image = ax.imshow(
        np.ma.masked_invalid(cut.gamma), cmap=cmap, vmin=0, vmax=2, extent=cut.extent, interpolation="nearest"
    )
    fig.colorbar(image, cax=fig.add_axes((0.84, 0.14, 0.03, 0.7)), label="gamma (≤ 1 passes)")
    peak = float(np.max(cut.reference_dose_gy)) if cut.reference_dose_gy.size else 0.0
    if peak > 0:
        ax.contour(
            cut.x_mm,
            cut.y_mm,
            cut.reference_dose_gy,
            levels=[0.5 * peak, 0.9 * peak],
            colors=["#24292f", "#24292f"],
            linewidths=[0.9, 1.1],
            linestyles=["--", "-"],
        )
    for path in cut.target_paths:
        ax.fill(path[:, 0], path[:, 1], fill=False, edgecolor=REFERENCE, linewidth=1.5)
    evaluated = np.isfinite(cut.gamma)
    if evaluated.any():
        rows, columns = np.flatnonzero(evaluated.any(axis=1)), np.flatnonzero(evaluated.any(axis=0))
        xs, ys = cut.x_mm[columns], cut.y_mm[rows]
        pad = 10.0
        ax.set_xlim(float(xs.min()) - pad, float(xs.max()) + pad)
        ax.set_ylim(float(ys.max()) + pad, float(ys.min()) - pad)  # anterior (smaller y) at the top
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    target = f"; target {cut.target} in blue" if cut.target else ""
    ax.set_title(
        f"Gamma on slice {cut.slice_index + 1} (z = {cut.z_mm:g} mm){target}\n"
        "reference 50% (dashed) and 90% (solid) isodoses in black",
        fontsize=9,
    )
    return fig
