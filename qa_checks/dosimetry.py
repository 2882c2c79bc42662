"""Dosimetry (TPS check / virtual phantom) scoring: a centre's recalculated dose against the reference dose.

The centre recalculates the reference plan in its own planning system, on its own dose grid, and sends the RTDOSE.
Its dose is compared with the reference by the 3D gamma index of :func:`qa_checks.gamma.gamma_3d` (reported on the
reference grid, trilinear interpolation of the centre's dose, search on spherical shells).

Definitions used for the stage's results:

* *points evaluated*: reference voxels at or above the low-dose threshold (``lower_cutoff_percent`` of the
  normalisation dose);
* *points not reached*: those of them with no point of the centre's grid within the search distance (the centre's
  grid does not cover them); they count as failures: a dose the centre did not calculate cannot agree;
* *pass rate*: ``100 * passed / (evaluated + not reached)``, in %; the pass rate over reached points only is
  stored beside it for the reviewer;
* *gamma histogram*: counts of reached points per gamma bin of :data:`HISTOGRAM_EDGES` (the last bin open-ended).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from qa_checks.gamma import GammaResult, gamma_3d
from qa_checks.geometry import DoseGrid

__all__ = ["HISTOGRAM_EDGES", "DoseMeasurement", "DosimetryScore", "score_dosimetry"]

HISTOGRAM_EDGES: Final = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
"""Lower edges of the gamma histogram bins; the last bin holds every gamma >= 3."""


@dataclass(frozen=True)
class DoseMeasurement:
    """One stored result of the dosimetry stage: ``metric`` = ``value`` in ``unit``, with its parameters."""

    metric: str
    value: float | None
    unit: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class DosimetryScore:
    """The dosimetry stage's results (see the module docstring for the definitions)."""

    pass_rate_percent: float
    measurements: tuple[DoseMeasurement, ...]
    warnings: tuple[str, ...]
    gamma: GammaResult


def _histogram(values: np.ndarray[Any, Any]) -> dict[str, int]:
    edges = [*HISTOGRAM_EDGES, np.inf]
    counts, _ = np.histogram(values, bins=edges)
    labels = [f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">={lo:g}" for lo, hi in itertools.pairwise(edges)]
    return {label: int(c) for label, c in zip(labels, counts, strict=True)}


def score_dosimetry(
    reference: DoseGrid,
    evaluated: DoseGrid,
    *,
    dose_percent: float,
    distance_mm: float,
    lower_cutoff_percent: float = 10.0,
    local: bool = False,
) -> DosimetryScore:
    """Gamma of ``evaluated`` (the centre's dose) against ``reference``; points not reached count as failures.

    Returns the pass rate and the measurements to store: ``gamma_pass_rate_percent`` (%),
    ``gamma_pass_rate_reached_percent`` (%), ``gamma_mean`` (1), ``gamma_points_evaluated`` (1),
    ``gamma_points_not_reached`` (1), ``gamma_histogram`` (its value is the number of reached points; the counts
    per bin are in its parameters). Every measurement carries the gamma parameters.
    """
    result = gamma_3d(
        reference,
        evaluated,
        dose_percent=dose_percent,
        distance_mm=distance_mm,
        lower_cutoff_percent=lower_cutoff_percent,
        local=local,
    )
    total = result.n_evaluated + result.n_unreachable
    pass_rate = 100.0 * result.n_passed / total if total else float("nan")
    params = {
        **result.parameters.as_dict(),
        "not_reached_count_as": "failures",
        "reference_grid_shape": list(reference.shape),
        "evaluated_grid_shape": list(evaluated.shape),
    }
    values = result.gamma[np.isfinite(result.gamma)]
    warnings: list[str] = []
    if result.n_unreachable:
        warnings.append(
            f"{result.n_unreachable} of {total} reference points above the "
            f"{result.parameters.lower_cutoff_percent:g}% threshold lie beyond the centre's dose grid "
            f"(no calculated dose within {result.parameters.max_search_distance_mm:g} mm): they count as failures; "
            "calculate the dose on a grid covering the whole reference dose"
        )
    measurements = (
        DoseMeasurement("gamma_pass_rate_percent", pass_rate, "%", params),
        DoseMeasurement("gamma_pass_rate_reached_percent", result.pass_rate_percent, "%", params),
        DoseMeasurement("gamma_mean", result.mean_gamma, "1", params),
        DoseMeasurement("gamma_points_evaluated", float(total), "1", params),
        DoseMeasurement("gamma_points_not_reached", float(result.n_unreachable), "1", params),
        DoseMeasurement("gamma_histogram", float(values.size), "1", {**params, "bins": _histogram(values)}),
    )
    return DosimetryScore(pass_rate, measurements, tuple(warnings), result)
