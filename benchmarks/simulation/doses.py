"""TPS-check dose deviations: a centre's recalculated dose differs from the reference by a uniform scale, a rigid
shift or noise (see :class:`~benchmarks.simulation.plans.PlanDeviationKind`), applied to the dose values.

Arrays are (z, y, x); coordinates LPS mm.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from benchmarks.dose_model import ModelDose
from benchmarks.simulation.plans import PlanDeviation, PlanDeviationKind
from qa_checks.geometry import DoseGrid

__all__ = ["apply_dose_deviation", "dose_centroid_mm"]


def dose_centroid_mm(values_gy: NDArray[np.float64], grid: DoseGrid) -> tuple[float, float, float]:
    """Centroid (z, y, x) mm of ``max(dose - 50% of its maximum, 0)``: the high-dose cloud's centre, which moves
    exactly with a translation of the dose (away from the grid edges)."""
    weights = np.clip(values_gy - 0.5 * float(values_gy.max()), 0.0, None)
    total = float(weights.sum())
    return (
        float((weights.sum(axis=(1, 2)) * grid.z_mm).sum() / total),
        float((weights.sum(axis=(0, 2)) * grid.y_mm).sum() / total),
        float((weights.sum(axis=(0, 1)) * grid.x_mm).sum() / total),
    )


def apply_dose_deviation(
    deviation: PlanDeviation, values: NDArray[np.float64], model: ModelDose, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``values`` (Gy, on ``model``'s grid) with one TPS-check ``deviation`` applied: ``dose_scale_percent``
    multiplies by ``1 + value / 100``; ``dose_shift_mm`` translates by (dz, dy, dx) mm (trilinear interpolation,
    edge values repeated); ``dose_noise_percent`` adds Gaussian noise of standard deviation ``value`` % of the
    maximum dose inside the body (from ``rng``) and clips at 0 Gy."""
    kind = deviation.kind
    if kind is PlanDeviationKind.DOSE_SCALE_PERCENT:
        assert isinstance(deviation.value, float)
        return values * (1.0 + deviation.value / 100.0)
    if kind is PlanDeviationKind.DOSE_SHIFT_MM:
        assert isinstance(deviation.value, tuple)
        shift_vox = [v / s for v, s in zip(deviation.value, model.dose.spacing_mm, strict=True)]
        shifted: NDArray[np.float64] = ndimage.shift(values, shift_vox, order=1, mode="nearest")
        return shifted
    assert isinstance(deviation.value, float)
    sd_gy = deviation.value / 100.0 * float(values.max())
    noisy = values + rng.normal(0.0, sd_gy, size=values.shape)
    if "Body" in model.masks:
        noisy = np.where(model.masks["Body"], noisy, values)
    return np.clip(noisy, 0.0, None)
