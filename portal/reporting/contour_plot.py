"""The contour overlay: a structure's reference and submitted contours on the CT slice through its centroid."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flows.report_figures import ContourSlice
from portal.reporting.style import REFERENCE, SUBMITTED, new_figure

CT_WINDOW_HU: Final = (-1000.0, 400.0)
"""Grey levels of the CT, HU: from air to dense soft tissue (lung and soft tissue both readable)."""


def _crop(cut: ContourSlice) -> tuple[npt.NDArray[np.float32], tuple[float, float, float, float]]:
    """The part of the CT slice inside the view window (whole pixels), and its extent: drawing only what is shown."""
    left, right, bottom, top = cut.extent
    rows, columns = cut.ct_hu.shape
    if cut.window is None:
        return cut.ct_hu, cut.extent
    dx = (right - left) / columns
    dy = (bottom - top) / rows  # row 0 at the top: y grows downwards in the array
    c0 = int(np.clip(np.floor((min(cut.window.x_min_mm, cut.window.x_max_mm) - left) / dx), 0, columns - 1))
    c1 = int(np.clip(np.ceil((max(cut.window.x_min_mm, cut.window.x_max_mm) - left) / dx), c0 + 1, columns))
    r_lo, r_hi = sorted(((cut.window.y_min_mm - top) / dy, (cut.window.y_max_mm - top) / dy))
    r0 = int(np.clip(np.floor(r_lo), 0, rows - 1))
    r1 = int(np.clip(np.ceil(r_hi), r0 + 1, rows))
    extent = (left + c0 * dx, left + c1 * dx, top + r1 * dy, top + r0 * dy)
    return cut.ct_hu[r0:r1, c0:c1], extent


def contour_figure(cut: ContourSlice) -> Figure:
    """The CT slice ``cut`` with the reference contours (blue) and the submitted ones (red, dashed), zoomed to
    both; anterior at the top, patient left on the right of the image (LPS x increasing to the right)."""
    fig = new_figure(4.6, 4.8)
    ax = fig.add_subplot()
    ax.imshow(
        cut.ct_hu, cmap="gray", vmin=CT_WINDOW_HU[0], vmax=CT_WINDOW_HU[1], extent=cut.extent, interpolation="nearest"
    )
    for path in cut.reference:
        ax.fill(path[:, 0], path[:, 1], fill=False, edgecolor=REFERENCE, linewidth=1.6)
    for path in cut.submitted:
        ax.fill(path[:, 0], path[:, 1], fill=False, edgecolor=SUBMITTED, linewidth=1.4, linestyle="--")
    if cut.window is not None:
        ax.set_xlim(cut.window.x_min_mm, cut.window.x_max_mm)
        ax.set_ylim(cut.window.y_max_mm, cut.window.y_min_mm)  # anterior (smaller y) at the top
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    submitted = f"submitted ({cut.submitted_name})" if cut.submitted_name else "submitted (none)"
    ax.legend(
        handles=[
            Line2D([], [], color=REFERENCE, linewidth=2, label="reference"),
            Line2D([], [], color=SUBMITTED, linewidth=2, linestyle="--", label=submitted),
        ],
        loc="lower right",
        fontsize=8,
        framealpha=0.85,
    )
    ax.set_title(f"{cut.structure}: CT slice {cut.slice_index + 1} (z = {cut.z_mm:g} mm)", fontsize=10)
    return fig
