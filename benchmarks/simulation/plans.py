"""Plan and dose deviations of a centre's plan submission: their kinds, parsing, and the local planning deviation
(hot spot) applied to the analytic dose model (see :mod:`benchmarks.dose_model`).

Arrays are (z, y, x); coordinates LPS mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

import numpy as np

from benchmarks.dose_model import ModelDose
from benchmarks.simulation.common import SimulationError, parse_kind

__all__ = [
    "DOSE_KINDS",
    "HOT_SPOT_SIGMA_FRACTION",
    "MODEL_KINDS",
    "PlanCheck",
    "PlanDeviation",
    "PlanDeviationKind",
    "add_hot_spot",
    "plan_check_of",
]


class PlanDeviationKind(StrEnum):
    """Kinds of planning deviation (applied to the analytic dose model) and TPS-check dose deviation (applied to
    the dose values).

    Planning deviations (every target):

    * ``under_coverage`` (value: PTV coverage in %, e.g. 85): the prescription isodose covers only this much.
    * ``hot_spot`` (value: maximum dose in % of prescription, e.g. 150): a Gaussian dose peak of this height
      (width :data:`HOT_SPOT_SIGMA_FRACTION` of the PTV's equivalent radius, at least 3 mm) centred on the PTV
      voxel nearest the PTV centroid; the dose elsewhere keeps the larger of the two.
    * ``poor_conformity`` (value: factor > 1 on R50%, e.g. 1.5): a shallower dose fall-off.
    * ``organ_overdose`` (structure; value: Gy): the organ's part nearest the targets receives at least this dose
      (see :func:`benchmarks.dose_model.add_organ_overdose`).

    TPS-check dose deviations (applied in the order given, after the planning deviations):

    * ``dose_scale_percent`` (value: %): dose multiplied by ``1 + value / 100``.
    * ``dose_shift_mm`` (value: (dz, dy, dx) mm): dose translated (trilinear interpolation, edge values repeated).
    * ``dose_noise_percent`` (value: %): Gaussian noise of standard deviation ``value`` % of the maximum dose, drawn
      from the seeded generator, added inside the body and clipped at 0 Gy.
    """

    UNDER_COVERAGE = "under_coverage"
    HOT_SPOT = "hot_spot"
    POOR_CONFORMITY = "poor_conformity"
    ORGAN_OVERDOSE = "organ_overdose"
    DOSE_SCALE_PERCENT = "dose_scale_percent"
    DOSE_SHIFT_MM = "dose_shift_mm"
    DOSE_NOISE_PERCENT = "dose_noise_percent"


MODEL_KINDS: Final = (PlanDeviationKind.UNDER_COVERAGE, PlanDeviationKind.POOR_CONFORMITY)
"""Planning deviations that change the dose-model options."""

HOT_SPOT_SIGMA_FRACTION: Final = 0.25
"""Gaussian sigma of the ``hot_spot`` peak as a fraction of the PTV's equivalent-sphere radius."""


def add_hot_spot(model: ModelDose, percent: float) -> ModelDose:
    """``model`` with a Gaussian peak of ``percent`` % of each target's prescription (sigma
    :data:`HOT_SPOT_SIGMA_FRACTION` of the PTV's equivalent radius, at least 3 mm) centred on the PTV voxel nearest
    the PTV centroid; elsewhere the larger of the peak and the dose."""
    values = model.dose.values_gy.copy()
    z, y, x = model.dose.z_mm, model.dose.y_mm, model.dose.x_mm
    for rx in model.prescriptions:
        profile = model.profiles[rx.structure]
        index = np.argwhere(model.masks[rx.structure])
        coords = np.stack([z[index[:, 0]], y[index[:, 1]], x[index[:, 2]]], axis=1)
        k = int(np.argmin(((coords - np.asarray(profile.centre_zyx_mm)) ** 2).sum(axis=1)))
        cz, cy, cx = coords[k]
        sigma = max(3.0, HOT_SPOT_SIGMA_FRACTION * profile.radius_mm)
        r2 = (z[:, None, None] - cz) ** 2 + (y[None, :, None] - cy) ** 2 + (x[None, None, :] - cx) ** 2
        peak = percent / 100.0 * rx.dose_gy * np.exp(-r2 / (2.0 * sigma**2))
        np.maximum(values, peak, out=values)
    return model.with_values(values)


@dataclass(frozen=True)
class PlanDeviation:
    """One deviation of a centre's plan or dose from the reference (see :class:`PlanDeviationKind`).

    Attributes:
        kind: a :class:`PlanDeviationKind` (strings are normalised).
        value: the amount: a number, or (dz, dy, dx) mm for ``dose_shift_mm``.
        structure: the organ of ``organ_overdose`` (required there, not allowed elsewhere).
    """

    kind: PlanDeviationKind
    value: float | tuple[float, float, float]
    structure: str | None = None

    def __post_init__(self) -> None:
        kind = parse_kind(PlanDeviationKind, self.kind, "unknown plan deviation kind")
        object.__setattr__(self, "kind", kind)
        value = self.value
        if kind is PlanDeviationKind.DOSE_SHIFT_MM:
            if not isinstance(value, tuple | list) or len(value) != 3:
                raise SimulationError(f"dose_shift_mm: value must be (dz, dy, dx) in mm, got {value!r}")
            object.__setattr__(self, "value", tuple(float(v) for v in value))
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise SimulationError(f"{kind.value}: value must be a finite number, got {value!r}")
            number = float(value)
            limits = {
                PlanDeviationKind.UNDER_COVERAGE: (50.0, 99.9),
                PlanDeviationKind.HOT_SPOT: (101.0, 200.0),
                PlanDeviationKind.POOR_CONFORMITY: (1.0, 5.0),
                PlanDeviationKind.ORGAN_OVERDOSE: (0.0, 200.0),
                PlanDeviationKind.DOSE_SCALE_PERCENT: (-50.0, 100.0),
                PlanDeviationKind.DOSE_NOISE_PERCENT: (0.0, 50.0),
            }
            lo, hi = limits[kind]
            if not lo <= number <= hi:
                raise SimulationError(f"{kind.value}: value {number:g} outside [{lo:g}, {hi:g}]")
            object.__setattr__(self, "value", number)
        if (kind is PlanDeviationKind.ORGAN_OVERDOSE) != (self.structure is not None):
            raise SimulationError(f"{kind.value}: a structure is required for organ_overdose and only there")

    @classmethod
    def parse(cls, text: str) -> PlanDeviation:
        """Parse ``"kind:value"`` or ``"organ_overdose:Structure:Gy"``, e.g. ``"dose_scale_percent:3"``,
        ``"dose_shift_mm:0,0,2"`` ((dz, dy, dx) mm), ``"organ_overdose:SpinalCord:25"``.

        Raises:
            SimulationError: naming the text and the problem.
        """
        parts = [p.strip() for p in text.split(":")]
        kind = parse_kind(PlanDeviationKind, parts[0], f"plan deviation {text!r}: unknown kind")
        expected = 3 if kind is PlanDeviationKind.ORGAN_OVERDOSE else 2
        if len(parts) != expected:
            form = "organ_overdose:Structure:Gy" if expected == 3 else f"{kind.value}:value"
            raise SimulationError(f"plan deviation {text!r}: expected {form!r}")
        try:
            value: float | tuple[float, float, float]
            if kind is PlanDeviationKind.DOSE_SHIFT_MM:
                numbers = [float(v) for v in parts[1].split(",")]
                if len(numbers) != 3:
                    raise SimulationError(f"plan deviation {text!r}: shift needs dz,dy,dx in mm")
                value = (numbers[0], numbers[1], numbers[2])
            else:
                value = float(parts[-1])
        except ValueError as exc:
            if isinstance(exc, SimulationError):
                raise
            raise SimulationError(f"plan deviation {text!r}: bad number") from None
        try:
            return cls(kind, value, parts[1] if expected == 3 else None)
        except SimulationError as exc:
            raise SimulationError(f"plan deviation {text!r}: {exc}") from None

    @property
    def amount(self) -> float:
        """The numeric value (every kind but ``dose_shift_mm``)."""
        if isinstance(self.value, tuple):
            raise SimulationError(f"{self.kind.value}: value {self.value!r} is not a single number")
        return float(self.value)

    def __str__(self) -> str:
        if isinstance(self.value, tuple):
            return f"{self.kind.value}:{','.join(f'{v:g}' for v in self.value)}"
        if self.structure is not None:
            return f"{self.kind.value}:{self.structure}:{self.value:g}"
        return f"{self.kind.value}:{self.value:g}"


PlanCheck = Literal["planning", "tps_check"]
"""What a plan submission is scored as: a planning benchmark (the protocol's planning criteria) or a TPS check
(gamma of the submitted dose against the reference dose)."""

DOSE_KINDS: Final = (
    PlanDeviationKind.DOSE_SCALE_PERCENT,
    PlanDeviationKind.DOSE_SHIFT_MM,
    PlanDeviationKind.DOSE_NOISE_PERCENT,
)
"""TPS-check deviations (applied to the dose values)."""


def plan_check_of(deviations: Sequence[PlanDeviation]) -> PlanCheck:
    """``"tps_check"`` when any deviation is a TPS-check dose deviation, else ``"planning"``."""
    return "tps_check" if any(d.kind in DOSE_KINDS for d in deviations) else "planning"
