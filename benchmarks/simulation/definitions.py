"""The oracle's own definitions of plan metrics, measured by counting voxels of the modelled dose grid.

These definitions are written here, independently of :mod:`qa_checks` (the scorer), so that an end-to-end test
comparing the oracle's outcome with the pipeline's compares two implementations: a definition error in the scorer
then shows up as a disagreement instead of being copied into the expected outcome.

Grid and volumes
    The dose model's grid: uniform spacing (z, y, x) in mm, every voxel the same volume ``v`` (cc, the product of
    the spacings / 1000). A structure is the set of voxels whose centres lie in its (z, y, x) boolean mask; every
    such voxel counts whole (no partial volumes, no supersampling, no interpolation). A composite structure (e.g.
    ``Lungs``) is the union of its parts' masks.

Target metrics (names as in protocol criteria), for a target ``T`` with PTV mask ``P`` (``n`` voxels) and
prescription ``Rx`` Gy. ``N(T)``, its *neighbourhood*, is the set of voxels nearer to ``P`` than to the PTV of any
other target of the plan (Euclidean distance in mm from the voxel centre to the nearest PTV voxel centre; ties go
to the first target in plan order); the whole grid when the plan has a single target.

- ``V100%``: ``100 · #{voxels of P with D >= Rx} / n`` (%).
- ``Dmax%``: ``100 · max over P of D / Rx`` (%).
- ``R100%``: ``#{voxels of N(T) with D >= Rx} / n``.
- ``R50%``: ``#{voxels of N(T) with D >= Rx / 2} / n``.
- ``D2cm%``: ``100 · max of D / Rx`` over the voxels of ``N(T)`` whose centre lies at least
  :data:`D2CM_DISTANCE_MM` from the nearest voxel centre of ``P`` (%); NaN when there is none.

DVH metrics of a structure ``S`` of ``m`` voxels: sort its voxel doses from the hottest down,
``d_1 >= d_2 >= ... >= d_m``; after ``k`` voxels the cumulative volume is ``k · v``.

- ``D<x>cc``: ``d_k`` for the smallest ``k >= 1`` with ``k · v >= x`` (``D0cc`` = ``d_1``), in Gy; NaN (undefined)
  when ``x`` exceeds the structure volume ``m · v``.
- ``D<x>%``: ``D<y>cc`` with ``y = x / 100 · m · v``, in Gy (``D0%`` = ``d_1``, ``D100%`` = ``d_m``).
- ``V<x>Gy`` and ``V<x>Gycc``: ``v · #{i: d_i >= x}``, in cc; ``V<x>Gy%``: ``100 · #{i: d_i >= x} / m``, in %.
- ``Dmean``: the mean of the ``d_i``; ``Dmax``: ``d_1``; ``Dmin``: ``d_m`` (Gy).

The comparison ``k · v >= x`` allows a relative 1e-9 for floating-point round-off of ``x / v`` (so D0.035cc on a
0.001 cc grid is the 35th hottest voxel, not the 36th).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from qa_checks.protocol import Criterion

__all__ = [
    "D2CM_DISTANCE_MM",
    "TARGET_METRICS",
    "TargetContext",
    "dvh_metric",
    "is_dvh_metric_name",
    "measure_criteria",
    "neighbourhoods",
    "target_metric",
]

D2CM_DISTANCE_MM: Final = 20.0
"""``D2cm%`` looks at voxels at least this far (mm) from the PTV (RTOG 0915: 2 cm from the PTV in any direction)."""

TARGET_METRICS: Final = ("V100%", "Dmax%", "R100%", "R50%", "D2cm%")
"""The target metric names this module defines (see the module docstring)."""

_DVH_NAME: Final = re.compile(
    r"^(?:D(?P<d>\d+(?:\.\d+)?)(?P<dunit>%|cc)|V(?P<v>\d+(?:\.\d+)?)Gy(?P<vunit>%|cc)?|(?P<named>Dmean|Dmax|Dmin))$"
)

_ROUND_OFF: Final = 1e-9
"""Relative allowance for floating-point round-off in ``x / v`` (see the module docstring)."""


@dataclass(frozen=True, eq=False)
class TargetContext:
    """One target of a plan, for its target metrics.

    Attributes:
        structure: the PTV name.
        prescription_gy: its prescription, Gy.
        ptv: its (z, y, x) mask on the dose grid.
        neighbourhood: the voxels nearer to it than to any other target (see :func:`neighbourhoods`).
    """

    structure: str
    prescription_gy: float
    ptv: NDArray[np.bool_]
    neighbourhood: NDArray[np.bool_]


def neighbourhoods(ptvs: Mapping[str, NDArray[np.bool_]], spacing_mm: Sequence[float]) -> dict[str, NDArray[np.bool_]]:
    """Nearest-target partition of the grid: for each PTV name (in the mapping's order), the voxels whose centre is
    nearer (mm) to one of its voxel centres than to any other PTV's; ties go to the first. A single PTV gets the
    whole grid."""
    names = list(ptvs)
    first = ptvs[names[0]]
    if len(names) == 1:
        return {names[0]: np.ones(first.shape, dtype=bool)}
    sampling = tuple(float(s) for s in spacing_mm)
    distances = np.stack([ndimage.distance_transform_edt(~ptvs[n], sampling=sampling) for n in names])
    nearest = np.argmin(distances, axis=0)  # argmin returns the first of equal distances
    return {n: np.asarray(nearest == i) for i, n in enumerate(names)}


def target_metric(
    metric: str, values_gy: NDArray[np.float64], target: TargetContext, *, spacing_mm: Sequence[float]
) -> float:
    """A target metric (``V100%``, ``Dmax%``, ``R100%``, ``R50%``, ``D2cm%``) of ``target`` on the dose grid
    ``values_gy`` (Gy, (z, y, x)); definitions in the module docstring.

    Raises:
        ValueError: an unknown metric name, or an empty PTV.
    """
    rx = target.prescription_gy
    n = int(np.count_nonzero(target.ptv))
    if n == 0:
        raise ValueError(f"target {target.structure!r} has no voxel on the dose grid")
    if metric == "V100%":
        return 100.0 * int(np.count_nonzero(values_gy[target.ptv] >= rx)) / n
    if metric == "Dmax%":
        return 100.0 * float(values_gy[target.ptv].max()) / rx
    if metric in ("R100%", "R50%"):
        level = rx if metric == "R100%" else 0.5 * rx
        return int(np.count_nonzero(values_gy[target.neighbourhood] >= level)) / n
    if metric == "D2cm%":
        sampling = tuple(float(s) for s in spacing_mm)
        far = (
            ndimage.distance_transform_edt(~target.ptv, sampling=sampling) >= D2CM_DISTANCE_MM
        ) & target.neighbourhood
        return 100.0 * float(values_gy[far].max()) / rx if far.any() else math.nan
    raise ValueError(f"unknown target metric {metric!r}; defined: {', '.join(TARGET_METRICS)}")


def is_dvh_metric_name(metric: str) -> bool:
    """True for a DVH metric name this module defines (``D<x>cc``, ``D<x>%``, ``V<x>Gy``, ``V<x>Gycc``, ``V<x>Gy%``,
    ``Dmean``, ``Dmax``, ``Dmin``)."""
    return _DVH_NAME.match(metric.strip()) is not None


def dvh_metric(metric: str, doses_gy: NDArray[np.float64], *, voxel_cc: float) -> float:
    """A DVH metric of a structure whose voxel doses (Gy, any order) are ``doses_gy``, each voxel ``voxel_cc``
    cc; definitions in the module docstring. NaN for ``D<x>cc`` larger than the structure.

    Raises:
        ValueError: an unknown metric name, or no voxel.
    """
    match = _DVH_NAME.match(metric.strip())
    if match is None:
        raise ValueError(
            f"unknown DVH metric {metric!r}; use D<x>cc, D<x>%, V<x>Gy, V<x>Gycc, V<x>Gy%, Dmean, Dmax, Dmin"
        )
    d = np.sort(np.asarray(doses_gy, dtype=np.float64).ravel())[::-1]  # hottest first
    m = d.size
    if m == 0:
        raise ValueError(f"{metric}: the structure has no voxel on the dose grid")
    if match["named"]:
        return {"Dmean": float(d.mean()), "Dmax": float(d[0]), "Dmin": float(d[-1])}[match["named"]]
    if match["v"] is not None:
        count = int(np.count_nonzero(d >= float(match["v"])))
        return 100.0 * count / m if match["vunit"] == "%" else count * voxel_cc
    x = float(match["d"])
    x_cc = x / 100.0 * m * voxel_cc if match["dunit"] == "%" else x
    voxels = x_cc / voxel_cc
    if voxels > m * (1.0 + _ROUND_OFF):
        return math.nan
    k = max(1, math.ceil(voxels * (1.0 - _ROUND_OFF)))
    return float(d[min(k, m) - 1])


def measure_criteria(
    criteria: Sequence[Criterion],
    values_gy: NDArray[np.float64],
    masks: Mapping[str, NDArray[np.bool_]],
    targets: Mapping[str, TargetContext],
    *,
    spacing_mm: Sequence[float],
) -> dict[tuple[str, str], float]:
    """Measure the ``(structure, metric)`` key of every criterion whatever metric it names: a target metric of a
    structure that is one of ``targets``, or a DVH metric of a structure in ``masks`` (composites already
    united). Keys of structures absent or empty and of target metrics on a non-target are left out (the protocol
    evaluation reports them as not measured).

    Raises:
        ValueError: a criterion names a metric not defined here (an expected outcome that silently treated it as
            unmeasured would be wrong), naming the criterion and the metrics defined.
    """
    voxel_cc = float(np.prod([float(s) for s in spacing_mm])) / 1000.0
    measured: dict[tuple[str, str], float] = {}
    for c in criteria:
        if c.key in measured:
            continue
        if c.metric in TARGET_METRICS:
            if c.structure in targets:
                measured[c.key] = target_metric(c.metric, values_gy, targets[c.structure], spacing_mm=spacing_mm)
        elif is_dvh_metric_name(c.metric):
            mask = masks.get(c.structure)
            if mask is not None and mask.any():
                measured[c.key] = dvh_metric(c.metric, values_gy[mask], voxel_cc=voxel_cc)
        else:
            raise ValueError(
                f"criterion {c.id!r}: the oracle defines no metric {c.metric!r} (defined: {', '.join(TARGET_METRICS)} "
                "and DVH metrics D<x>cc, D<x>%, V<x>Gy, V<x>Gycc, V<x>Gy%, Dmean, Dmax, Dmin)"
            )
    return measured
