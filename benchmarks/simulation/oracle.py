"""The oracle: the outcome a correct pipeline should reach for a simulated submission.

Contours (:func:`oracle_measurements`): the deviated masks are measured against the reference masks directly on
the phantom grid (no DICOM round trip) and scored with the case's protocol. The oracle assumes every submitted
name maps to the TG-263 name it stands for (``rename`` keeps that meaning; ``swap_laterality`` swaps the masks
under correct names), so a rename to a name no mapper could recognise makes the oracle more lenient than the
pipeline.

Plans (:func:`plan_oracle`): the deviated dose is scored on the modelled grid with the protocol: a planning
benchmark with its planning criteria (coverage, maximum dose, conformity, organ-at-risk limits for the plan's
fractions), a TPS check with a 3D gamma against the reference dose and its gamma criterion.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from benchmarks.cases import PlanSpec
from benchmarks.dose_model import ModelDose
from benchmarks.protocols import GAMMA_METRIC, GAMMA_STRUCTURE, PLAN_INDEX_METRICS, GammaSection, Protocol
from benchmarks.simulation.common import Mask, SimulationError, Spacing
from benchmarks.simulation.contours import SubmittedStructure
from benchmarks.simulation.plans import PlanCheck, PlanDeviation, PlanDeviationKind
from qa_checks.dvh import compute_dvh, dvh_measurements, is_dvh_metric
from qa_checks.gamma import gamma_3d
from qa_checks.plan_indices import PlanIndices, compute_plan_indices
from qa_checks.protocol import Criterion, Evaluation, OutcomeLevel, evaluate

__all__ = [
    "STORED_DOSE_LEVELS",
    "PlanOracle",
    "expected_gamma_outcome",
    "oracle_measurements",
    "plan_measurements",
    "plan_oracle",
    "storage_tolerance",
]

logger = logging.getLogger(__name__)


def _dice(a: Mask, b: Mask) -> float:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total


def oracle_measurements(
    submitted: Sequence[SubmittedStructure],
    reference: dict[str, Mask],
    metrics: set[tuple[str, str]],
    *,
    spacing_mm: Spacing,
) -> dict[tuple[str, str], float]:
    """Measure each requested ``(structure, metric)`` of the submitted masks against the reference on the grid.

    Supported metrics: ``dice``, ``jaccard``, ``volume_ratio`` (submitted / reference),
    ``centroid_distance_mm``. A structure that was not submitted is left out (the protocol evaluation then
    reports it missing).

    Raises:
        SimulationError: a metric the oracle does not implement.
    """
    by_canonical = {s.canonical: s for s in submitted}
    out: dict[tuple[str, str], float] = {}
    spacing = np.asarray(spacing_mm)
    for structure, metric in sorted(metrics):
        sub = by_canonical.get(structure)
        ref = reference.get(structure)
        if sub is None or ref is None:
            continue
        a, b = sub.mask, ref
        if metric == "dice":
            out[(structure, metric)] = _dice(a, b)
        elif metric == "jaccard":
            union = int(np.count_nonzero(a | b))
            out[(structure, metric)] = int(np.count_nonzero(a & b)) / union if union else 1.0
        elif metric == "volume_ratio":
            n_ref = int(np.count_nonzero(b))
            out[(structure, metric)] = int(np.count_nonzero(a)) / n_ref if n_ref else float("nan")
        elif metric == "centroid_distance_mm":
            if not a.any() or not b.any():
                out[(structure, metric)] = float("nan")
            else:
                ca = np.argwhere(a).mean(axis=0) * spacing
                cb = np.argwhere(b).mean(axis=0) * spacing
                out[(structure, metric)] = float(np.linalg.norm(ca - cb))
        else:
            raise SimulationError(
                f"the simulator's oracle does not implement metric {metric!r} "
                "(supported: dice, jaccard, volume_ratio, centroid_distance_mm)"
            )
    return out


def expected_gamma_outcome(
    deviations: Sequence[PlanDeviation], gamma: GammaSection | dict[str, Any] | None
) -> tuple[OutcomeLevel | None, str]:
    """The gamma outcome (submitted dose evaluated against the reference) implied by the deviations alone.

    Predicted only where it follows from the gamma definition with global normalisation to the reference
    maximum: no deviation (identical doses, gamma 0); a single ``dose_scale_percent`` of at most the dose
    criterion (every dose difference is at most that % of the maximum, so gamma <= 1 everywhere); a single
    ``dose_shift_mm`` of at most half the distance criterion (the reference dose is found within the shift,
    and the interpolation error of the shifted grid is a small fraction of the dose criterion). In these cases
    the pass rate is (close to) 100% and the outcome ``per_protocol``. Otherwise ``None``.
    """
    if gamma is None:
        return None, "the protocol has no gamma section"
    if isinstance(gamma, GammaSection):
        gamma = gamma.model_dump()
    dose_percent = float(gamma["dose_percent"])
    distance_mm = float(gamma["distance_mm"])
    criterion = f"{dose_percent:g}%/{distance_mm:g} mm"
    if gamma.get("normalisation", "global") != "global":
        return None, f"not predicted: {criterion} with {gamma.get('normalisation')} normalisation"
    if not deviations:
        return OutcomeLevel.PER_PROTOCOL, f"dose identical to the reference: every point passes {criterion}"
    if len(deviations) == 1:
        dev = deviations[0]
        if dev.kind is PlanDeviationKind.DOSE_SCALE_PERCENT and abs(dev.amount) <= dose_percent:
            return OutcomeLevel.PER_PROTOCOL, f"dose scaled {dev.amount:g}% <= {dose_percent:g}%: every point passes"
        if dev.kind is PlanDeviationKind.DOSE_SHIFT_MM and isinstance(dev.value, tuple):
            shift = float(np.linalg.norm(dev.value))
            if shift <= 0.5 * distance_mm:
                return OutcomeLevel.PER_PROTOCOL, f"dose shifted {shift:.3g} mm <= half of {distance_mm:g} mm"
    return None, f"not predicted from the deviations alone ({criterion}); measure the gamma pass rate"


@dataclass(frozen=True, eq=False)
class PlanOracle:
    """The oracle's scoring of a plan submission, measured on the modelled dose grid (no DICOM round trip).

    Attributes:
        check: ``"planning"`` or ``"tps_check"``.
        criteria: the protocol criteria evaluated.
        measurements: ``(structure, metric) -> value`` for the criteria's keys.
        evaluation: the protocol evaluation.
        plan_indices: the prescription target's plan indices (planning check), else ``None``.
        gamma_pass_rate_percent: the gamma pass rate (TPS check), else ``None``.
        borderline: ids of planning criteria whose measurement lies within the 16-bit RTDOSE storage tolerance
            of one of its levels (see :func:`storage_tolerance`): a pipeline measuring the written RTDOSE may
            reach a different outcome for them. Not assessed for the gamma criterion.
    """

    check: PlanCheck
    criteria: tuple[Criterion, ...]
    measurements: dict[tuple[str, str], float]
    evaluation: Evaluation
    plan_indices: PlanIndices | None = None
    gamma_pass_rate_percent: float | None = None
    borderline: tuple[str, ...] = ()

    @property
    def outcome(self) -> OutcomeLevel:
        """The worst criterion outcome."""
        return self.evaluation.outcome

    @property
    def reason(self) -> str:
        """The reasons of every criterion not met per protocol, joined with ``"; "``, or a per-protocol statement."""
        if self.evaluation.reasons:
            return "; ".join(self.evaluation.reasons)
        what = "planning criteria" if self.check == "planning" else "TPS-check (gamma) criteria"
        return f"all {len(self.criteria)} {what} met at the per-protocol level"


def plan_measurements(
    model: ModelDose,
    criteria: Sequence[Criterion],
    *,
    indices: PlanIndices,
    target: str,
    composites: Mapping[str, Sequence[str]] | None = None,
) -> dict[tuple[str, str], float]:
    """Measure the keys of planning ``criteria`` on ``model``'s dose grid.

    Planning-index metrics of ``target`` (``V100%``, ``Dmax%``, ``R100%``, ``R50%``, ``D2cm%``; see
    :data:`benchmarks.protocols.PLAN_INDEX_METRICS`) are read from ``indices``; DVH metric names
    (``"D0.35cc"``, ``"V20Gy%"``, ...) are computed with :func:`qa_checks.dvh.compute_dvh` on the model's masks
    (voxel centres, no supersampling), a composite structure being the union of its parts' masks. Keys of
    structures absent or empty on the grid are left out (the evaluation reports them missing).
    """
    measured: dict[tuple[str, str], float] = {}
    for c in criteria:
        if c.structure == target and c.metric in PLAN_INDEX_METRICS:
            field_name, factor, _unit = PLAN_INDEX_METRICS[c.metric]
            measured[c.key] = factor * float(getattr(indices, field_name))
    masks: dict[str, NDArray[np.bool_]] = dict(model.masks)
    for name, parts in (composites or {}).items():
        if all(p in masks for p in parts):
            union = np.zeros(model.dose.shape, dtype=bool)
            for p in parts:
                union |= masks[p]
            masks[name] = union
    dvh_keys = [c.key for c in criteria if c.key not in measured and is_dvh_metric(c.metric)]
    dvhs = {s: compute_dvh(model.dose, masks[s]) for s in {s for s, _ in dvh_keys} if s in masks and masks[s].any()}
    measured.update(dvh_measurements(dvhs, dvh_keys))
    return measured


STORED_DOSE_LEVELS: Final = 65535
"""Largest stored RTDOSE pixel value: (3004,000E) DoseGridScaling is the maximum dose / 65535 (see
:func:`benchmarks.dicom_writer.write_rtdose`)."""


def storage_tolerance(
    criterion: Criterion,
    model: ModelDose,
    *,
    prescription_gy: float,
    composites: Mapping[str, Sequence[str]] | None = None,
) -> float:
    """How far a measurement of ``criterion`` on ``model`` can move when the dose is stored as 16-bit RTDOSE.

    Every voxel dose moves by at most half a storage step (maximum dose / 65535 / 2) plus the rounding of
    (3004,000E) DoseGridScaling to 10 significant digits. A dose metric (``D...`` in Gy) moves by at most that;
    ``hi_rtog`` and ``d2cm_percent`` by that relative to the prescription. A volume metric (``ptv_coverage_percent``,
    ``r100``, ``r50``, ``V<x>Gy``, ``V<x>Gy%``) changes only through voxels whose dose lies within that of its
    threshold (prescription, half the prescription, x Gy): their volume, in the metric's unit. ``inf`` for a
    metric this function does not model.
    """
    values = model.dose.values_gy
    step_gy = float(values.max()) / STORED_DOSE_LEVELS * (0.5 + STORED_DOSE_LEVELS * 5e-10)
    metric = criterion.metric
    if metric.startswith("D") and is_dvh_metric(metric):
        return step_gy
    if metric in ("Dmax%", "D2cm%"):
        return 100.0 * step_gy / prescription_gy
    masks: dict[str, NDArray[np.bool_]] = dict(model.masks)
    parts = (composites or {}).get(criterion.structure)
    if parts and all(p in masks for p in parts):
        masks[criterion.structure] = np.logical_or.reduce([masks[p] for p in parts])
    mask = masks.get(criterion.structure)
    if mask is None or not mask.any():
        return math.inf
    voxel_cc = float(np.prod(model.dose.spacing_mm)) / 1000.0
    structure_cc = float(np.count_nonzero(mask)) * voxel_cc
    if metric in ("V100%", "R100%", "R50%"):
        threshold = prescription_gy * (0.5 if metric == "R50%" else 1.0)
        region = mask if metric == "V100%" else np.ones(values.shape, dtype=bool)
    elif metric.startswith("V") and is_dvh_metric(metric):
        threshold = float(re.match(r"V(\d+(?:\.\d+)?)Gy", metric).group(1))  # type: ignore[union-attr]
        region = mask
    else:
        return math.inf
    changed_cc = float(np.count_nonzero(np.abs(values[region] - threshold) <= step_gy)) * voxel_cc
    if metric in ("R100%", "R50%"):
        return changed_cc / structure_cc
    if metric.endswith("%"):
        return 100.0 * changed_cc / structure_cc
    return changed_cc


def plan_oracle(
    protocol: Protocol,
    plan: PlanSpec,
    reference: ModelDose,
    submitted: ModelDose,
    *,
    check: PlanCheck,
) -> PlanOracle:
    """Score a submitted dose the way a correct pipeline should, measuring directly on the modelled dose grid.

    ``"planning"``: the protocol's :meth:`~benchmarks.protocols.Protocol.planning_criteria` for the plan's
    number of fractions, the prescription target's PTV volume and its prescription dose, measured with
    :func:`qa_checks.plan_indices.compute_plan_indices` and :mod:`qa_checks.dvh` (see :func:`plan_measurements`).
    ``"tps_check"``: :func:`qa_checks.gamma.gamma_3d` of ``submitted`` against ``reference`` with the protocol's
    :meth:`~benchmarks.protocols.Protocol.gamma_parameters`, scored by its
    :meth:`~benchmarks.protocols.Protocol.gamma_criterion`.

    Raises:
        SimulationError: the protocol lacks the section the check needs, or its prescription target is not a
            target of the plan.
        ProtocolError: the protocol has no criteria for the plan (e.g. no limits for its number of fractions).
    """
    if check == "tps_check":
        if protocol.gamma is None:
            raise SimulationError(f"protocol {protocol.id!r} has no gamma section: a TPS check cannot be scored")
        result = gamma_3d(reference.dose, submitted.dose, **protocol.gamma_parameters())
        gamma_criteria = (protocol.gamma_criterion(),)
        measured = {(GAMMA_STRUCTURE, GAMMA_METRIC): result.pass_rate_percent}
        evaluation = evaluate(gamma_criteria, measured)
        return PlanOracle(check, gamma_criteria, measured, evaluation, gamma_pass_rate_percent=result.pass_rate_percent)
    if protocol.planning is None:
        raise SimulationError(f"protocol {protocol.id!r} has no planning section: a plan cannot be scored")
    target = protocol.planning.prescription.target
    rx = next((t for t in plan.targets if t.structure == target), None)
    if rx is None:
        targets = ", ".join(t.structure for t in plan.targets)
        raise SimulationError(
            f"protocol {protocol.id!r} prescribes to {target!r}, not a target of the plan ({targets})"
        )
    indices = compute_plan_indices(submitted.dose, submitted.masks[target], rx.dose_gy)
    criteria = protocol.planning_criteria(
        fractions=plan.fractions, ptv_volume_cc=indices.ptv_volume_cc, prescription_gy=rx.dose_gy
    )
    composites = protocol.composite_structures()
    measured = plan_measurements(submitted, criteria, indices=indices, target=target, composites=composites)
    present = {name for name, mask in submitted.masks.items() if mask.any()} | set(composites)
    evaluation = evaluate(criteria, measured, present_structures=present)
    borderline = []
    for res in evaluation.results:
        if res.value is None or not math.isfinite(res.value):
            continue
        c = res.criterion
        tol = storage_tolerance(c, submitted, prescription_gy=rx.dose_gy, composites=composites)
        if min(abs(res.value - c.per_protocol), abs(res.value - c.acceptable)) <= tol:
            borderline.append(c.id)
    if borderline:
        logger.warning(
            "oracle: %s within the 16-bit RTDOSE storage tolerance of a protocol level; a pipeline reading the "
            "RTDOSE may reach a different outcome",
            ", ".join(borderline),
        )
    return PlanOracle("planning", criteria, measured, evaluation, plan_indices=indices, borderline=tuple(borderline))
