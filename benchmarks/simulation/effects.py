"""Applying plan deviations to the analytic reference dose, and the expected effect of each deviation.

Each deviation carries :class:`ExpectedEffect` s: the value a measurement should take according to the deviation's
definition, and the simulator's own voxel measurement of it on the modelled dose grid (no DICOM round trip).

Arrays are (z, y, x); coordinates LPS mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from benchmarks.cases import PlanSpec, model_dose
from benchmarks.dose_model import ModelDose, add_organ_overdose
from benchmarks.phantoms import Phantom
from benchmarks.simulation.common import SimulationError
from benchmarks.simulation.doses import apply_dose_deviation, dose_centroid_mm
from benchmarks.simulation.plans import MODEL_KINDS, PlanDeviation, PlanDeviationKind, add_hot_spot

__all__ = [
    "COVERAGE_TOLERANCE_PERCENT",
    "R50_RELATIVE_TOLERANCE",
    "ExpectedEffect",
    "apply_plan_deviations",
    "target_measurements",
    "target_regions",
]


@dataclass(frozen=True)
class ExpectedEffect:
    """What a deviation should do to one measurement.

    Attributes:
        deviation: the deviation (as text).
        structure: the structure measured (``None`` for whole-grid measurements).
        metric: what is measured, e.g. ``"coverage_percent"``, ``"d95_gy"``, ``"dmax_percent"``, ``"r50"``,
            ``"dmax_gy"``, ``"dose_centroid_shift_mm"``, ``"difference_sd_gy"``.
        reference: the measurement on the dose before this deviation.
        expected: the value the deviation should give (from its definition, not from the modified dose).
        tolerance: how far a correct measurement may lie from ``expected`` (absolute, same unit).
        measured: the oracle's measurement on the modelled dose grid (no DICOM round trip).
        basis: how ``expected`` and ``tolerance`` were derived.
    """

    deviation: str
    structure: str | None
    metric: str
    reference: float
    expected: float
    tolerance: float
    measured: float
    basis: str

    @property
    def met(self) -> bool:
        """True when the oracle's measurement lies within ``tolerance`` of ``expected``."""
        return abs(self.measured - self.expected) <= self.tolerance


def target_regions(model: ModelDose) -> dict[str, NDArray[np.bool_]]:
    """Voxels nearer to each target than to any other (all voxels for a single target)."""
    names = [rx.structure for rx in model.prescriptions]
    if len(names) == 1:
        return {names[0]: np.ones(model.dose.shape, dtype=bool)}
    distances = np.stack(
        [ndimage.distance_transform_edt(~model.masks[n], sampling=model.dose.spacing_mm) for n in names]
    )
    nearest = np.argmin(distances, axis=0)
    return {n: nearest == i for i, n in enumerate(names)}


def target_measurements(model: ModelDose, values_gy: NDArray[np.float64]) -> dict[tuple[str, str], float]:
    """Voxel-based plan measurements of every target on the model's dose grid.

    Per PTV: ``coverage_percent`` (% of PTV voxels >= prescription), ``d95_gy`` (5th percentile of the PTV voxel
    doses), ``dmax_percent`` (maximum PTV voxel dose, % of prescription) and ``r50`` (voxels >= 50% of the
    prescription in the target's own region, see :func:`target_regions`, over PTV voxels).
    """
    out: dict[tuple[str, str], float] = {}
    for rx in model.prescriptions:
        ptv = model.masks[rx.structure]
        region = target_regions(model)[rx.structure] if len(model.prescriptions) > 1 else None
        doses = values_gy[ptv]
        out[(rx.structure, "coverage_percent")] = 100.0 * float(np.count_nonzero(doses >= rx.dose_gy)) / doses.size
        out[(rx.structure, "d95_gy")] = float(np.quantile(doses, 0.05))
        out[(rx.structure, "dmax_percent")] = 100.0 * float(doses.max()) / rx.dose_gy
        half = values_gy >= 0.5 * rx.dose_gy
        if region is not None:
            half &= region
        out[(rx.structure, "r50")] = float(np.count_nonzero(half)) / doses.size
    return out


# Tolerances of the expected effects (see each use).
COVERAGE_TOLERANCE_PERCENT: Final = 1.0
"""Coverage is tuned by bisection on the dose grid itself, so it lands within one grid shell's share of a
percent; 1 percentage point also absorbs the tilt's discreteness on small targets."""

R50_RELATIVE_TOLERANCE: Final = 0.05
"""R50% is set by a voxel quantile of the distance map; the bath and tilt move the 50% isodose by a fraction of a
voxel, a few % of the volume on small targets."""


def _expected_effects(
    deviation: PlanDeviation,
    before: ModelDose,
    after: ModelDose,
    reference_r50: dict[str, float],
) -> list[ExpectedEffect]:
    text = str(deviation)
    kind = deviation.kind
    m0 = target_measurements(before, before.dose.values_gy)
    m1 = target_measurements(after, after.dose.values_gy)
    effects: list[ExpectedEffect] = []
    for rx in before.prescriptions:
        s = rx.structure
        if kind is PlanDeviationKind.UNDER_COVERAGE:
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "coverage_percent",
                    m0[(s, "coverage_percent")],
                    deviation.amount,
                    COVERAGE_TOLERANCE_PERCENT,
                    m1[(s, "coverage_percent")],
                    "coverage set by the dose model",
                )
            )
        elif kind is PlanDeviationKind.HOT_SPOT:
            value = max(deviation.amount, m0[(s, "dmax_percent")])
            # The peak sits exactly on a PTV voxel centre, so the maximum is the requested value (or the
            # original maximum if that was higher); the tolerance covers floating-point round-off only.
            tol = 1e-6 * value
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "dmax_percent",
                    m0[(s, "dmax_percent")],
                    value,
                    tol,
                    m1[(s, "dmax_percent")],
                    "Gaussian peak of the requested height on a PTV voxel",
                )
            )
        elif kind is PlanDeviationKind.POOR_CONFORMITY:
            expected = deviation.amount * reference_r50[s]
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "r50",
                    m0[(s, "r50")],
                    expected,
                    R50_RELATIVE_TOLERANCE * expected,
                    m1[(s, "r50")],
                    "R50% target of the dose model times the factor",
                )
            )
        elif kind is PlanDeviationKind.DOSE_SCALE_PERCENT:
            factor = 1.0 + deviation.amount / 100.0
            ref = m0[(s, "d95_gy")]
            # A uniform scaling scales every voxel dose, hence the D95 quantile, exactly: 1e-6 relative covers
            # floating-point round-off only.
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "d95_gy",
                    ref,
                    ref * factor,
                    1e-6 * ref,
                    m1[(s, "d95_gy")],
                    "uniform scaling of every voxel dose",
                )
            )
    if kind is PlanDeviationKind.ORGAN_OVERDOSE:
        organ = deviation.structure
        assert organ is not None
        ref = float(before.dose.values_gy[before.masks[organ]].max())
        measured = float(after.dose.values_gy[after.masks[organ]].max())
        expected = max(ref, deviation.amount)
        # The raised dose is exactly the requested value inside the organ part; the tolerance covers float noise.
        effects.append(
            ExpectedEffect(
                text,
                organ,
                "dmax_gy",
                ref,
                expected,
                1e-6 * expected,
                measured,
                "organ part nearest the targets raised to the requested dose",
            )
        )
    elif kind is PlanDeviationKind.DOSE_SHIFT_MM:
        assert isinstance(deviation.value, tuple)
        c0 = dose_centroid_mm(before.dose.values_gy, before.dose)
        c1 = dose_centroid_mm(after.dose.values_gy, after.dose)
        moved = float(np.linalg.norm(np.subtract(c1, c0)))
        # Linear interpolation blurs the cloud slightly and clips its weights at 50% of a (slightly lower)
        # maximum: the centroid follows the shift to within about a tenth of a voxel.
        tol = 0.1 * max(before.dose.spacing_mm) + 0.05
        effects.append(
            ExpectedEffect(
                text,
                None,
                "dose_centroid_shift_mm",
                0.0,
                float(np.linalg.norm(deviation.value)),
                tol,
                moved,
                "translation of the dose cloud",
            )
        )
    elif kind is PlanDeviationKind.DOSE_NOISE_PERCENT:
        high = before.dose.values_gy >= 0.1 * float(before.dose.values_gy.max())
        difference = (after.dose.values_gy - before.dose.values_gy)[high]
        expected = deviation.amount / 100.0 * float(before.dose.values_gy.max())
        # Sample standard deviation over >= 1000 voxels: its relative standard error is below 3%; 10% is safe.
        effects.append(
            ExpectedEffect(
                text,
                None,
                "difference_sd_gy",
                0.0,
                expected,
                0.1 * expected,
                float(difference.std()),
                "Gaussian noise of the given standard deviation (above 10% of the maximum dose)",
            )
        )
    return effects


def apply_plan_deviations(
    case_plan: PlanSpec, phantom: Phantom, deviations: Sequence[PlanDeviation], *, rng: np.random.Generator
) -> tuple[ModelDose, ModelDose, tuple[ExpectedEffect, ...]]:
    """Model the reference dose of ``case_plan`` and the dose with ``deviations``.

    Planning deviations are applied first: those changing the dose-model options (under-coverage, poor
    conformity), then the local ones (hot spot, organ overdose), each group in the order given; dose deviations
    then act on the dose values in the order given. Each deviation's expected effects compare the dose after it
    with the dose just before it.

    Returns:
        (reference model, deviated model, expected effects).
    """
    reference = model_dose(case_plan, phantom)
    reference_r50 = {name: profile.target_r50 for name, profile in reference.profiles.items()}
    model_devs = [d for d in deviations if d.kind in MODEL_KINDS]
    local_kinds = (PlanDeviationKind.HOT_SPOT, PlanDeviationKind.ORGAN_OVERDOSE)
    overdoses = [d for d in deviations if d.kind in local_kinds]
    dose_devs = [d for d in deviations if d.kind not in MODEL_KINDS and d.kind not in local_kinds]
    for dev in overdoses:
        if dev.structure is not None and dev.structure not in phantom.masks:
            raise SimulationError(f"{dev}: structure {dev.structure!r} is not in the case ({', '.join(phantom.masks)})")
    effects: list[ExpectedEffect] = []
    current = reference
    options = case_plan.options
    for dev in model_devs:
        value = dev.amount
        if dev.kind is PlanDeviationKind.UNDER_COVERAGE:
            options = replace(options, coverage_percent=value)
        elif options.r50 is not None:  # an explicit R50% target overrides the fraction of the RTOG limit
            options = replace(options, r50=options.r50 * value)
        else:
            options = replace(options, r50_fraction_of_limit=options.r50_fraction_of_limit * value)
        following = model_dose(case_plan, phantom, options=options)
        effects.extend(_expected_effects(dev, current, following, reference_r50))
        current = following
    for dev in overdoses:
        if dev.kind is PlanDeviationKind.HOT_SPOT:
            following = add_hot_spot(current, dev.amount)
        else:
            following = add_organ_overdose(current, str(dev.structure), dev.amount)
        effects.extend(_expected_effects(dev, current, following, reference_r50))
        current = following
    for dev in dose_devs:
        following = current.with_values(apply_dose_deviation(dev, current.dose.values_gy, current, rng))
        effects.extend(_expected_effects(dev, current, following, reference_r50))
        current = following
    return reference, current, tuple(effects)
