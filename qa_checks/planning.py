"""Planning benchmark scoring: measure a submitted plan (RTSTRUCT + RTPLAN + RTDOSE) and evaluate it against
the trial protocol's planning criteria, in one call (:func:`score_plan`).

Targets and prescriptions
    See :mod:`qa_checks.prescriptions` (:func:`target_prescriptions`): every target named by the protocol or
    tied to an ROI by a TARGET dose reference of the RTPLAN, each with its own prescription.

Measurements (:func:`score_plan`)
    For every target, :func:`qa_checks.plan_indices.compute_target_indices` (each target in its own
    nearest-target neighbourhood, D2cm from the contour surface): ``V100%``, ``Dmax%``, ``R100%``, ``R50%``,
    ``D2cm%`` (names of ``PLAN_INDEX_METRICS`` in the protocols), ``PaddickCI``, ``GI`` (PIV50% / PIV100%),
    ``PIV`` and ``PIV50`` (cc); and from :func:`qa_checks.dvh.compute_dvh` ``D99%``, ``D95%``, ``Dmax``,
    ``Dmean`` (Gy) and ``Volume`` (cc). For every organ or composite a criterion names: ``Dmean``, ``Dmax``
    and ``Volume``, plus every criterion's metric. DVHs use :func:`~qa_checks.dvh.compute_dvh`'s default
    supersampling unless ``dvh_supersample`` is given, on the dose grid cropped around the structure (which
    gives the same DVH at a fraction of the cost). A composite (e.g. ``Lungs``) is the union of its parts'
    masks on the dose grid. A value that cannot be measured is None, and its ``parameters["reason"]`` says
    why; the evaluation reports that reason.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from qa_checks.dicom_io import LoadedSubmission
from qa_checks.dvh import DVH, compute_dvh, is_dvh_metric
from qa_checks.errors import PlanScoringError
from qa_checks.geometry import DoseGrid
from qa_checks.grid_coverage import GridCoverage, structure_grid_coverage
from qa_checks.names import map_structure_names
from qa_checks.plan_indices import PlanIndices, compute_target_indices
from qa_checks.prescriptions import (
    TargetPrescription,
    dicom_tag,
    max_diameter_mm,
    resolve_targets,
    target_prescriptions,
)
from qa_checks.protocol import Criterion, Evaluation, evaluate
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure
from qa_checks.target_geometry import crop_dose

__all__ = [
    "INDEX_METRICS",
    "PlanMeasurement",
    "PlanScore",
    "PlanStepRunner",
    "TargetPrescription",
    "max_diameter_mm",
    "score_plan",
    "target_prescriptions",
]

logger = logging.getLogger(__name__)

INDEX_METRICS: Final[dict[str, tuple[str, float, str]]] = {
    "V100%": ("ptv_coverage_percent", 1.0, "%"),
    "Dmax%": ("hi_rtog", 100.0, "%"),
    "R100%": ("r100", 1.0, "1"),
    "R50%": ("r50", 1.0, "1"),
    "D2cm%": ("d2cm_percent", 1.0, "%"),
    "PaddickCI": ("paddick_ci", 1.0, "1"),
    "GI": ("gradient_index", 1.0, "1"),
    "PIV": ("prescription_isodose_volume_cc", 1.0, "cc"),
    "PIV50": ("half_prescription_isodose_volume_cc", 1.0, "cc"),
}
"""Target metrics read from :class:`~qa_checks.plan_indices.PlanIndices`: name -> (field, factor, unit). The first
five are the protocols' planning-index names."""

TARGET_DVH_METRICS: Final = ("D99%", "D95%", "Dmax", "Dmean")
ORGAN_DVH_METRICS: Final = ("Dmean", "Dmax")

CriteriaFor = Callable[["TargetPrescription", float, bool], Sequence[Criterion]]
"""``criteria_for(prescription, ptv_volume_cc, is_primary)`` -> the criteria of that target (with the organ limits
when ``is_primary``)."""


_T = TypeVar("_T")


class PlanStepRunner(Protocol):
    """``run_each(step, subject, compute)``: runs one step of :func:`score_plan` and returns what ``compute``
    returns. ``step`` is ``"indices"`` (the plan indices of every target at once; ``subject`` names the targets,
    joined by ``+``) or ``"dvh"`` (the DVH metrics of one target, organ or composite named by ``subject``). A
    caller may run each step as a named step of its own, e.g. a workflow task."""

    def __call__(self, step: str, subject: str, compute: Callable[[], _T], /) -> _T: ...


def _call(step: str, subject: str, compute: Callable[[], _T], /) -> _T:
    """The default :class:`PlanStepRunner`: ``compute()``."""
    return compute()


@dataclass(frozen=True)
class PlanMeasurement:
    """One measured value.

    Attributes:
        structure: protocol name of the structure (target, organ or composite).
        metric: metric name (``"V100%"``, ``"R50%"``, ``"D0.035cc"``, ``"Volume"``, ...).
        value: the value in ``unit``, or None when it could not be measured (``parameters["reason"]`` says why).
        unit: ``"Gy"``, ``"%"``, ``"cc"`` or ``"1"``.
        parameters: what produced it (dose-grid spacing, supersampling, prescription and its source,
            neighbourhood rule, submitted structure name, ...).
    """

    structure: str
    metric: str
    value: float | None
    unit: str
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """``(structure, metric)``, the key criteria look values up by."""
        return (self.structure, self.metric)


@dataclass(frozen=True)
class PlanScore:
    """The result of :func:`score_plan`.

    Attributes:
        fractions: number of fractions the plan was scored for.
        prescriptions: every target, the primary first.
        measurements: every measured value.
        criteria: every criterion evaluated (the primary target's, with the organ limits, then the others').
        evaluation: the criteria evaluated against the measurements (worst-of outcome).
        name_mapping: protocol name -> submitted (3006,0026) *ROIName* of every structure used.
        warnings: what the reviewer should know (name-mapping problems, fractions disagreeing, grid edges, ...).
    """

    fractions: int
    prescriptions: tuple[TargetPrescription, ...]
    measurements: tuple[PlanMeasurement, ...]
    criteria: tuple[Criterion, ...]
    evaluation: Evaluation
    name_mapping: Mapping[str, str]
    warnings: tuple[str, ...] = ()

    def measurement(self, structure: str, metric: str) -> PlanMeasurement:
        """The measurement of ``metric`` on ``structure``; KeyError naming them otherwise."""
        for m in self.measurements:
            if m.key == (structure, metric):
                return m
        raise KeyError(f"no measurement of {metric} on {structure}")


def score_plan(
    loaded: LoadedSubmission,
    *,
    targets: Sequence[str],
    criteria_for: CriteriaFor,
    composites: Mapping[str, Sequence[str]] | None = None,
    dose_by_size: Callable[[float], float | None] | None = None,
    fractions: int | None = None,
    dvh_supersample: int | None = None,
    surface_supersample: int | None = None,
    run_each: PlanStepRunner | None = None,
) -> PlanScore:
    """Measure a submitted plan and evaluate the protocol's criteria (see the module docstring).

    Args:
        loaded: the submission (:func:`qa_checks.dicom_io.load_submission`) with its RTSTRUCT, RTPLAN and RTDOSE.
        targets: the protocol's target names, the prescription target first (e.g. ``["PTV"]``).
        criteria_for: ``(prescription, ptv_volume_cc, is_primary) -> criteria`` of one target; criterion ids must
            be unique across targets (e.g. ``protocol.planning_criteria(fractions=..., ptv_volume_cc=v,
            prescription_gy=rx.dose_gy, target=rx.structure, include_oars=is_primary)``, whose ids for a second
            target end in ``"@PTV_2"``). The PTV volume is the target's voxel-count volume on the dose grid, cc.
        composites: composite name -> the structures whose union it is (e.g. ``{"Lungs": ["Lung_L", "Lung_R"]}``).
        dose_by_size: the protocol's prescription rule by maximum target diameter (mm -> Gy or None).
        fractions: number of fractions; default (300A,0078) *NumberOfFractionsPlanned* of the RTPLAN.
        dvh_supersample: sub-voxels per dose voxel for the DVHs; None: :func:`qa_checks.dvh.compute_dvh`'s default.
        surface_supersample: fine voxels per dose voxel for target surfaces (D2cm); None: the default of
            :func:`qa_checks.target_geometry.default_supersample`.
        run_each: runs each step (see :class:`PlanStepRunner`); default: calls it.

    Raises:
        PlanScoringError: no RTSTRUCT, RTPLAN or RTDOSE; no number of fractions; a target without a structure or
            a prescription; no criteria.
    """
    plan, structure_set, dose = loaded.plan, loaded.structure_set, loaded.dose
    absent = [kind for kind, obj in (("RTSTRUCT", structure_set), ("RTPLAN", plan), ("RTDOSE", dose)) if obj is None]
    if absent or plan is None or structure_set is None or dose is None:
        raise PlanScoringError(f"the submission has no {' and no '.join(absent)}: a plan needs all three to be scored")
    composites = dict(composites or {})
    warnings: list[str] = []
    n_fx = fractions if fractions is not None else plan.number_of_fractions
    if n_fx is None:
        raise PlanScoringError(
            f"{plan.path}: (300A,0070) FractionGroupSequence has no {dicom_tag('NumberOfFractionsPlanned')}; add it to "
            "the RTPLAN or pass fractions="
        )
    if fractions is not None and plan.number_of_fractions not in (None, fractions):
        warnings.append(
            f"scored for {fractions} fractions but {plan.path} has {dicom_tag('NumberOfFractionsPlanned')} "
            f"{plan.number_of_fractions}"
        )
    prescriptions, found = resolve_targets(plan, structure_set, targets=targets, dose_by_size=dose_by_size)
    warnings.extend(found)
    target_structures = {rx.structure: structure_set.by_number(rx.roi_number or 0) for rx in prescriptions}
    for rx in prescriptions:
        if not rasterise(target_structures[rx.structure], dose).any():
            raise PlanScoringError(
                f"{dose.path or 'RTDOSE'}: target {rx.structure!r} ((3006,0026) ROIName {rx.submitted_name!r}) has no "
                "voxel on the dose grid; the dose grid must cover every target"
            )
    run = run_each or _call
    indices = run(
        "indices",
        "+".join(target_structures),
        lambda: compute_target_indices(
            dose,
            target_structures,
            {rx.structure: rx.dose_gy for rx in prescriptions},
            supersample=surface_supersample,
        ),
    )
    for ind in indices.values():
        warnings.extend(ind.warnings)
    criteria: list[Criterion] = []
    for i, rx in enumerate(prescriptions):
        criteria.extend(criteria_for(rx, indices[rx.structure].ptv_volume_cc, i == 0))
    if not criteria:
        raise PlanScoringError("criteria_for gave no criterion for any target: nothing to evaluate")

    organs = [c.structure for c in criteria if c.structure not in target_structures]
    organs = list(dict.fromkeys(organs))
    wanted = list(dict.fromkeys(p for o in organs for p in (composites.get(o) or [o])))
    taken = {s.submitted_name for s in prescriptions}
    mapping = map_structure_names([n for n in structure_set.names if n not in taken], targets=wanted)
    organ_structures = {m.tg263: structure_set[m.submitted] for m in mapping.matches if m.tg263 in wanted}
    reasons = {m.tg263: m.reason for m in mapping.matches}
    for name, options in mapping.ambiguous.items():
        warnings.append(f"structure {name!r} could be any of {', '.join(options)}: not used; rename it")
    for name, names in mapping.conflicts.items():
        warnings.append(f"{', '.join(map(repr, names))} all map to {name}: none used; keep one")
    for name in mapping.missing_targets:
        if name not in mapping.conflicts:
            warnings.append(f"no structure of {structure_set.path or 'the RTSTRUCT'} maps to {name}: its criteria fail")
    name_mapping = {rx.structure: rx.submitted_name for rx in prescriptions}
    name_mapping.update({k: v.name for k, v in organ_structures.items()})

    spacing = dose.spacing_mm
    dvh_kwargs: dict[str, Any] = {} if dvh_supersample is None else {"supersample": int(dvh_supersample)}
    if loaded.ct is not None:  # a structure drawn on one CT slice is one CT slice thick
        dvh_kwargs["ct_slice_thickness_mm"] = float(loaded.ct.spacing_mm[0])
    measurements: list[PlanMeasurement] = []
    for rx in prescriptions:
        ind = indices[rx.structure]
        measurements.extend(_index_measurements(rx, ind))
        target = target_structures[rx.structure]
        extra = [c.metric for c in criteria if c.structure == rx.structure and is_dvh_metric(c.metric)]
        params = {"submitted_name": rx.submitted_name, "prescription_gy": rx.dose_gy, "prescription_source": rx.source}

        def target_dvh(
            rx: TargetPrescription = rx,
            target: Structure = target,
            extra: list[str] = extra,
            params: dict[str, Any] = params,
        ) -> list[PlanMeasurement]:
            dvh = compute_dvh(crop_dose(dose, target)[0], target, **dvh_kwargs)
            return _dvh_measurements(rx.structure, dvh, [*TARGET_DVH_METRICS, *extra], params)

        measurements.extend(run("dvh", rx.structure, target_dvh))
    measurements.extend(
        _organ_measurements(dose, organs, composites, organ_structures, reasons, criteria, dvh_kwargs, run)
    )
    measurements = [_with_grid(m, spacing) for m in measurements]
    if loaded.ct is not None:
        scored = {**target_structures, **organ_structures}
        coverage = {name: structure_grid_coverage(st, loaded.ct, dose, name=name) for name, st in scored.items()}
        warnings.extend(c.warning for c in coverage.values() if c.warning)
        measurements = [_with_coverage(m, coverage, composites) for m in measurements]

    measured = {m.key: m.value for m in measurements if m.value is not None}
    missing_reasons = {m.key: str(m.parameters["reason"]) for m in measurements if m.value is None}
    present = set(target_structures) | set(organ_structures)
    present |= {c for c, parts in composites.items() if all(p in organ_structures for p in parts)}
    evaluation = evaluate(criteria, measured, present_structures=present, missing_reasons=missing_reasons)
    return PlanScore(
        fractions=int(n_fx),
        prescriptions=prescriptions,
        measurements=tuple(measurements),
        criteria=tuple(criteria),
        evaluation=evaluation,
        name_mapping=name_mapping,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _organ_measurements(
    dose: DoseGrid,
    organs: Sequence[str],
    composites: Mapping[str, Sequence[str]],
    organ_structures: Mapping[str, Structure],
    reasons: Mapping[str, str],
    criteria: Sequence[Criterion],
    dvh_kwargs: Mapping[str, Any],
    run: PlanStepRunner = _call,
) -> list[PlanMeasurement]:
    """Dmean, Dmax, Volume and the criteria's DVH metrics of every organ or composite present, each organ one
    ``"dvh"`` step of ``run``."""
    measurements: list[PlanMeasurement] = []
    for organ in organs:
        parts = composites.get(organ)
        if parts is not None and any(p not in organ_structures for p in parts):
            continue
        if parts is None and organ not in organ_structures:
            continue
        metrics = [
            *ORGAN_DVH_METRICS,
            *(c.metric for c in criteria if c.structure == organ and is_dvh_metric(c.metric)),
        ]

        def organ_dvh(
            organ: str = organ, parts: Sequence[str] | None = parts, metrics: list[str] = metrics
        ) -> list[PlanMeasurement]:
            return _organ_dvh(dose, organ, parts, organ_structures, reasons, metrics, dvh_kwargs)

        measurements.extend(run("dvh", organ, organ_dvh))
    return measurements


def _organ_dvh(
    dose: DoseGrid,
    organ: str,
    parts: Sequence[str] | None,
    organ_structures: Mapping[str, Structure],
    reasons: Mapping[str, str],
    metrics: Sequence[str],
    dvh_kwargs: Mapping[str, Any],
) -> list[PlanMeasurement]:
    """The DVH measurements of one organ, or of the composite of ``parts`` (all present)."""
    params: dict[str, Any]
    if parts is not None:
        mask = np.zeros(dose.shape, dtype=bool)
        for p in parts:
            mask |= rasterise(organ_structures[p], dose)
        source: Structure | npt.NDArray[np.bool_] = mask
        params = {"composite_of": list(parts), "submitted_names": [organ_structures[p].name for p in parts]}
    else:
        source = organ_structures[organ]
        params = {"submitted_name": source.name, "name_match": reasons.get(organ, "")}
    try:
        cropped, box = crop_dose(dose, source)
        dvh = compute_dvh(cropped, source if isinstance(source, Structure) else source[box], **dvh_kwargs)
    except ValueError as exc:
        return [
            PlanMeasurement(organ, m, None, _unit(m), {**params, "reason": str(exc)}) for m in dict.fromkeys(metrics)
        ]
    return _dvh_measurements(organ, dvh, metrics, params)


def _index_measurements(rx: TargetPrescription, ind: PlanIndices) -> list[PlanMeasurement]:
    params: dict[str, Any] = {
        "submitted_name": rx.submitted_name,
        "prescription_gy": rx.dose_gy,
        "prescription_source": rx.source,
        "neighbourhood": ind.neighbourhood,
        "targets_in_plan": ind.target_count,
        "isodose_rule": "voxel centre dose >= level, voxel-count volumes",
    }
    out = []
    for metric, (field_name, factor, unit) in INDEX_METRICS.items():
        raw = getattr(ind, field_name)
        extra: dict[str, Any] = {}
        if metric == "D2cm%":
            extra = {
                "d2cm_distance_mm": ind.d2cm_distance_mm,
                "distance_method": ind.d2cm_method,
                "surface_supersample": ind.supersample,
            }
        if raw is None or not math.isfinite(float(raw)):
            reason = ind.unknown.get(field_name, f"{metric} is undefined (PIV is 0)")
            out.append(PlanMeasurement(rx.structure, metric, None, unit, {**params, **extra, "reason": reason}))
        else:
            out.append(PlanMeasurement(rx.structure, metric, factor * float(raw), unit, {**params, **extra}))
    return out


def _unit(metric: str) -> str:
    if metric == "Volume" or (metric.startswith("V") and not metric.endswith("%")):
        return "cc"
    return "%" if metric.endswith("%") and metric.startswith("V") else "Gy"


def _dvh_measurements(
    structure: str, dvh: DVH, metrics: Sequence[str], params: Mapping[str, Any]
) -> list[PlanMeasurement]:
    base = {**params, "dvh_supersample": dvh.supersample, "dvh_interpolation": dvh.interpolation, "dvh": dvh.parameters}
    out = [PlanMeasurement(structure, "Volume", dvh.volume_cc, "cc", base)]
    for metric in dict.fromkeys(metrics):
        try:
            value = dvh.metric(metric)
        except ValueError as exc:
            out.append(PlanMeasurement(structure, metric, None, _unit(metric), {**base, "reason": str(exc)}))
            continue
        at = _DOSE_AT_VOLUME.match(metric)
        warning = None
        if at is not None:
            x = float(at.group(1))
            volume = x if at.group(2) == "cc" else x / 100.0 * dvh.volume_cc
            warning = dvh.small_volume_warning(volume, metric=f"{metric} of {structure}")
        extra = {"warning": warning} if warning else {}
        out.append(PlanMeasurement(structure, metric, value, _unit(metric), {**base, **extra}))
    return out


_DOSE_AT_VOLUME: Final = re.compile(r"^D(\d+(?:\.\d+)?)(cc|%)$")
"""``D<x>cc`` and ``D<x>%``: the dose at a volume."""


def _with_coverage(
    m: PlanMeasurement, coverage: Mapping[str, GridCoverage], composites: Mapping[str, Sequence[str]]
) -> PlanMeasurement:
    """``m`` with the share of its structure outside the dose grid; no value when that share makes the structure
    not evaluable (see :mod:`qa_checks.grid_coverage`)."""
    parts = composites.get(m.structure) or [m.structure]
    found = [coverage[p] for p in parts if p in coverage]
    if not found:
        return m
    params = {**m.parameters, "outside_dose_grid_percent": round(100.0 * max(c.fraction_outside for c in found), 3)}
    refused = [c for c in found if not c.evaluable]
    if refused and m.metric != "Volume":
        return PlanMeasurement(m.structure, m.metric, None, m.unit, {**params, "reason": refused[0].reason})
    return PlanMeasurement(m.structure, m.metric, m.value, m.unit, params)


def _with_grid(m: PlanMeasurement, spacing: tuple[float, float, float]) -> PlanMeasurement:
    return PlanMeasurement(m.structure, m.metric, m.value, m.unit, {**m.parameters, "dose_grid_spacing_mm": spacing})
