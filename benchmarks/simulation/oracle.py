"""The oracle: the outcome a correct pipeline should reach for a simulated submission.

Contours (:func:`oracle_measurements`): the deviated masks are measured against the reference masks directly on
the phantom grid (no DICOM round trip) and scored with the case's protocol. The oracle assumes every submitted
name maps to the TG-263 name it stands for (``rename`` keeps that meaning; ``swap_laterality`` swaps the masks
under correct names), so a rename to a name no mapper could recognise makes the oracle more lenient than the
pipeline.

Plans (:func:`plan_oracle`): the deviated dose is scored on the modelled grid without the scorer's metric code
(no :mod:`qa_checks.gamma`, :mod:`qa_checks.dvh` or :mod:`qa_checks.plan_indices`): a planning benchmark with the
protocol's planning criteria for every target of the plan, measured with the oracle's own voxel-counting
definitions (:mod:`benchmarks.simulation.definitions`); a TPS check from bounds on the gamma pass rate that follow
from the deviations' closed forms (:mod:`benchmarks.simulation.gamma_bounds`), with no outcome when the bounds do
not decide it. Outcomes from values come from :func:`qa_checks.protocol.evaluate`.

What the deviations' definitions fix (coverage tuned by the dose model, a hot spot of known height on a PTV voxel,
R50% from the model's construction, an organ part raised to a known dose) is checked against these measurements
by each deviation's expected effects (:mod:`benchmarks.simulation.effects`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from benchmarks.cases import PlanSpec
from benchmarks.dose_model import ModelDose
from benchmarks.protocols import Protocol
from benchmarks.simulation.common import Mask, SimulationError, Spacing
from benchmarks.simulation.contours import SubmittedStructure
from benchmarks.simulation.definitions import (
    TargetContext,
    is_dvh_metric_name,
    measure_criteria,
    neighbourhoods,
)
from benchmarks.simulation.gamma_bounds import GammaBounds, gamma_outcome_from_bounds, gamma_pass_rate_bounds
from benchmarks.simulation.plans import PlanCheck, PlanDeviation, PlanDeviationKind
from qa_checks.protocol import Criterion, Evaluation, OutcomeLevel, evaluate

__all__ = [
    "STORED_DOSE_LEVELS",
    "PlanOracle",
    "oracle_measurements",
    "plan_measurements",
    "plan_oracle",
    "planning_oracle",
    "storage_tolerance",
    "target_contexts",
    "tps_check_oracle",
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


@dataclass(frozen=True, eq=False)
class PlanOracle:
    """The oracle's scoring of a plan submission on the modelled dose grid (no DICOM round trip, no scorer code).

    Attributes:
        check: ``"planning"`` or ``"tps_check"``.
        criteria: the protocol criteria scored.
        outcome: the expected outcome; ``None`` when the deviations' closed forms do not decide it (TPS check).
        reason: the reasons of every criterion not met per protocol joined with ``"; "``, a per-protocol
            statement, or why no outcome is given.
        measurements: ``(structure, metric) -> value`` measured by the oracle's own definitions (planning check,
            see :mod:`benchmarks.simulation.definitions`); empty for a TPS check.
        evaluation: the protocol evaluation of the measurements (planning check), else ``None``.
        gamma_bounds: bounds on the gamma pass rate (TPS check), else ``None``.
        borderline: ids of planning criteria whose measurement lies within the 16-bit RTDOSE storage tolerance
            of one of its levels (see :func:`storage_tolerance`): a pipeline measuring the written RTDOSE may
            reach a different outcome for them.
    """

    check: PlanCheck
    criteria: tuple[Criterion, ...]
    outcome: OutcomeLevel | None
    reason: str
    measurements: dict[tuple[str, str], float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    gamma_bounds: GammaBounds | None = None
    borderline: tuple[str, ...] = ()


def _with_composites(model: ModelDose, composites: Mapping[str, Sequence[str]] | None) -> dict[str, Mask]:
    masks: dict[str, Mask] = dict(model.masks)
    for name, parts in (composites or {}).items():
        if parts and all(p in masks for p in parts):
            masks[name] = np.logical_or.reduce([masks[p] for p in parts])
    return masks


def target_contexts(model: ModelDose, *, first: str | None = None) -> dict[str, TargetContext]:
    """The plan's targets (``first``, e.g. the protocol's prescription target, then plan order) with their
    prescriptions, PTV masks and nearest-target neighbourhoods on ``model``'s grid."""
    order = sorted(model.prescriptions, key=lambda rx: rx.structure != first)
    ptvs = {rx.structure: np.asarray(model.masks[rx.structure], dtype=bool) for rx in order}
    hoods = neighbourhoods(ptvs, model.dose.spacing_mm)
    return {
        rx.structure: TargetContext(rx.structure, rx.dose_gy, ptvs[rx.structure], hoods[rx.structure]) for rx in order
    }


def plan_measurements(
    model: ModelDose,
    criteria: Sequence[Criterion],
    *,
    composites: Mapping[str, Sequence[str]] | None = None,
    first_target: str | None = None,
    targets: Mapping[str, TargetContext] | None = None,
) -> dict[tuple[str, str], float]:
    """Measure the keys of planning ``criteria`` on ``model``'s dose grid with the oracle's own definitions
    (:mod:`benchmarks.simulation.definitions`): target metrics (``V100%``, ``Dmax%``, ``R100%``, ``R50%``,
    ``D2cm%``) of a structure that is a target of the plan, with its own prescription and neighbourhood; DVH
    metrics (``D0.35cc``, ``D95%``, ``V20Gy%``, ``V39Gy``, ``Dmean``, ...) of any structure, a composite being
    the union of its parts. Keys of structures absent or empty on the grid are left out (the evaluation reports
    them missing). ``targets``: the :func:`target_contexts` of ``model`` if already computed."""
    return measure_criteria(
        criteria,
        model.dose.values_gy,
        _with_composites(model, composites),
        target_contexts(model, first=first_target) if targets is None else targets,
        spacing_mm=model.dose.spacing_mm,
    )


STORED_DOSE_LEVELS: Final = 65535
"""Largest stored RTDOSE pixel value: (3004,000E) DoseGridScaling is the maximum dose / 65535 (see
:func:`benchmarks.dicom_writer.write_rtdose`)."""

_V_GY: Final = re.compile(r"^V(\d+(?:\.\d+)?)Gy")


def storage_tolerance(
    criterion: Criterion,
    model: ModelDose,
    *,
    prescription_gy: float,
    composites: Mapping[str, Sequence[str]] | None = None,
    region: Mask | None = None,
) -> float:
    """How far a measurement of ``criterion`` on ``model`` can move when the dose is stored as 16-bit RTDOSE.

    Every voxel dose moves by at most half a storage step (maximum dose / 65535 / 2) plus the rounding of
    (3004,000E) DoseGridScaling to 10 significant digits. A dose metric (``D...`` in Gy) moves by at most that;
    ``Dmax%`` and ``D2cm%`` by that relative to the prescription. A volume metric (``V100%``, ``R100%``, ``R50%``,
    ``V<x>Gy``, ``V<x>Gy%``) changes only through voxels whose dose lies within that of its threshold
    (prescription, half the prescription, x Gy): their volume, in the metric's unit; ``R100%`` and ``R50%``
    count voxels in ``region`` (the target's neighbourhood; the whole grid when ``None``). ``inf`` for a metric
    this function does not model.
    """
    values = model.dose.values_gy
    step_gy = float(values.max()) / STORED_DOSE_LEVELS * (0.5 + STORED_DOSE_LEVELS * 5e-10)
    metric = criterion.metric
    if metric in ("Dmax%", "D2cm%"):
        return 100.0 * step_gy / prescription_gy
    if metric.startswith("D") and is_dvh_metric_name(metric):
        return step_gy
    mask = _with_composites(model, composites).get(criterion.structure)
    if mask is None or not mask.any():
        return math.inf
    voxel_cc = float(np.prod(model.dose.spacing_mm)) / 1000.0
    structure_cc = float(np.count_nonzero(mask)) * voxel_cc
    if metric in ("V100%", "R100%", "R50%"):
        threshold = prescription_gy * (0.5 if metric == "R50%" else 1.0)
        where = mask if metric == "V100%" else (np.ones(values.shape, dtype=bool) if region is None else region)
    elif (match := _V_GY.match(metric)) is not None and is_dvh_metric_name(metric):
        threshold = float(match.group(1))
        where = mask
    else:
        return math.inf
    changed_cc = float(np.count_nonzero(np.abs(values[where] - threshold) <= step_gy)) * voxel_cc
    if metric in ("R100%", "R50%"):
        return changed_cc / structure_cc
    if metric.endswith("%"):
        return 100.0 * changed_cc / structure_cc
    return changed_cc


def planning_oracle(protocol: Protocol, plan: PlanSpec, submitted: ModelDose) -> PlanOracle:
    """Score a submitted dose as a planning benchmark with the oracle's own measurements.

    Criteria: :meth:`~benchmarks.protocols.Protocol.planning_criteria` for the plan's fractions, first for the
    protocol's prescription target (with the organ-at-risk limits), then for every other target of the plan
    (``target=<name>``, ids ending in ``@<name>``, without the organ-at-risk limits), each with its own PTV
    volume and prescription. Measurements: :func:`plan_measurements` (the oracle's own definitions, each target
    in its own neighbourhood). Outcome: :func:`qa_checks.protocol.evaluate`.

    Raises:
        SimulationError: the protocol has no planning section, its prescription target is not a target of the
            plan, or a criterion names a metric the oracle does not define.
        ProtocolError: the protocol has no criteria for the plan (e.g. no limits for its number of fractions).
    """
    if protocol.planning is None:
        raise SimulationError(f"protocol {protocol.id!r} has no planning section: a plan cannot be scored")
    first = protocol.planning.prescription.target
    if all(t.structure != first for t in plan.targets):
        targets = ", ".join(t.structure for t in plan.targets)
        raise SimulationError(f"protocol {protocol.id!r} prescribes to {first!r}, not a target of the plan ({targets})")
    contexts = target_contexts(submitted, first=first)
    voxel_cc = float(np.prod(submitted.dose.spacing_mm)) / 1000.0
    criteria: list[Criterion] = []
    for name, target in contexts.items():
        criteria.extend(
            protocol.planning_criteria(
                fractions=plan.fractions,
                ptv_volume_cc=int(np.count_nonzero(target.ptv)) * voxel_cc,
                prescription_gy=target.prescription_gy,
                target=None if name == first else name,
                include_oars=name == first,
            )
        )
    composites = protocol.composite_structures()
    try:
        measured = plan_measurements(submitted, criteria, composites=composites, targets=contexts)
    except ValueError as exc:
        raise SimulationError(f"protocol {protocol.id!r}: {exc}") from None
    present = {name for name, mask in submitted.masks.items() if mask.any()} | set(composites)
    evaluation = evaluate(criteria, measured, present_structures=present)
    borderline = []
    for res in evaluation.results:
        if res.value is None or not math.isfinite(res.value):
            continue
        c = res.criterion
        target = contexts.get(c.structure, contexts[first])
        tol = storage_tolerance(
            c, submitted, prescription_gy=target.prescription_gy, composites=composites, region=target.neighbourhood
        )
        if min(abs(res.value - c.per_protocol), abs(res.value - c.acceptable)) <= tol:
            borderline.append(c.id)
    if borderline:
        logger.warning(
            "oracle: %s within the 16-bit RTDOSE storage tolerance of a protocol level; a pipeline reading the "
            "RTDOSE may reach a different outcome",
            ", ".join(borderline),
        )
    reason = (
        "; ".join(evaluation.reasons)
        if evaluation.reasons
        else f"all {len(criteria)} planning criteria met at the per-protocol level"
    )
    return PlanOracle(
        "planning",
        tuple(criteria),
        evaluation.outcome,
        reason,
        measurements=measured,
        evaluation=evaluation,
        borderline=tuple(borderline),
    )


def tps_check_oracle(
    protocol: Protocol, reference: ModelDose, submitted: ModelDose, *, deviations: Sequence[PlanDeviation] = ()
) -> PlanOracle:
    """Score a submitted dose as a TPS check from bounds on its gamma pass rate against ``reference`` (see
    :mod:`benchmarks.simulation.gamma_bounds`): an outcome only when both bounds give the same one under the
    protocol's :meth:`~benchmarks.protocols.Protocol.gamma_criterion`, else ``None``. ``deviations`` supply the
    known rigid shift (the sum of the ``dose_shift_mm`` values).

    Raises:
        SimulationError: the protocol has no gamma section.
    """
    if protocol.gamma is None:
        raise SimulationError(f"protocol {protocol.id!r} has no gamma section: a TPS check cannot be scored")
    shift = np.zeros(3)
    for dev in deviations:
        if dev.kind is PlanDeviationKind.DOSE_SHIFT_MM:
            shift += np.asarray(dev.value, dtype=np.float64)
    bounds = gamma_pass_rate_bounds(
        reference.dose.values_gy,
        submitted.dose.values_gy,
        spacing_mm=reference.dose.spacing_mm,
        gamma=protocol.gamma,
        shift_mm=(float(shift[0]), float(shift[1]), float(shift[2])),
    )
    criterion = protocol.gamma_criterion()
    outcome, reason = gamma_outcome_from_bounds(bounds, criterion)
    return PlanOracle("tps_check", (criterion,), outcome, reason, gamma_bounds=bounds)


def plan_oracle(
    protocol: Protocol,
    plan: PlanSpec,
    reference: ModelDose,
    submitted: ModelDose,
    *,
    check: PlanCheck,
    deviations: Sequence[PlanDeviation] = (),
) -> PlanOracle:
    """Score a submitted dose the way a correct pipeline should, on the modelled dose grid and without the
    scorer's metric code: :func:`planning_oracle` for ``"planning"``, :func:`tps_check_oracle` for
    ``"tps_check"``."""
    if check == "tps_check":
        return tps_check_oracle(protocol, reference, submitted, deviations=deviations)
    return planning_oracle(protocol, plan, submitted)
