"""Conformity and dose fall-off indices of SABR / SRS plans, and the RTOG 0813/0915 limits on them.

Every index is computed on the dose grid from a PTV mask on that grid (boolean (z, y, x), e.g.
``rasterise(ptv, dose)``) and the prescription dose. A voxel belongs to an isodose volume when the dose at its
centre is at least the isodose level; volumes are voxel counts times voxel volume (per-slice thickness, so a
non-uniform (3004,000C) *GridFrameOffsetVector* is handled). Definitions (TV = PTV volume, PIV = prescription
isodose volume anywhere in the grid, TV_PIV = PTV volume inside the prescription isodose):

- RTOG conformity index ``CI = PIV / TV`` (= R100%).
- Paddick conformity index ``TV_PIV² / (TV · PIV)``, in [0, 1].
- Gradient index ``GI = PIV50% / PIV``, PIV50% being the volume of the 50 % isodose.
- ``R50% = PIV50% / TV``; ``R100% = PIV / TV``.
- ``D2cm``: the maximum dose, in % of prescription, over the voxels whose centres are at least 20 mm (3-D,
  anisotropic spacing) from the target (RTOG 0915: maximum dose 2 cm from the PTV in any direction), outside
  every target. For a target given as a :class:`~qa_checks.structures.Structure` the distance is from its
  contoured surface, sampled on a grid supersampled from the dose grid (:mod:`qa_checks.target_geometry`:
  within about half a fine voxel, 0.5 mm by default, of the true distance, either way); it does not depend on
  how coarse the dose grid is. For a target given only as a mask on the dose grid the distance is to the nearest
  target voxel *centre* (those lie up to half a voxel diagonal inside the contour, so D2cm errs high: the
  conservative side). Distances are computed over the target's bounding box grown by 20 mm, never the whole grid.
- Homogeneity index, ICRU Report 83: ``HI = (D2% − D98%) / D50%`` of the PTV (0 for a uniform dose); and the
  RTOG 90-05 variant ``HI_RTOG = Dmax / prescription``, Dmax being the maximum PTV voxel dose.
- PTV coverage: % of the PTV volume receiving at least the prescription dose.

Plans with several targets (e.g. brain metastases): the dose grid is partitioned between the targets, each voxel
belonging to the target whose surface is nearest (:func:`qa_checks.target_geometry.nearest_target_labels`).
PIV, PIV50% and D2cm of a target count only voxels of its own part, so another target's dose cloud is not
counted as this target's spill; TV, TV_PIV, coverage and the homogeneity indices use the target's own voxels.
:func:`compute_target_indices` evaluates every target.

Grid edges: when the 50 % isodose of a target (in its part of the grid) reaches a face of the dose grid, the dose
beyond is unknown, so PIV50%, R50%, the gradient index and D2cm are None, with the reason in
:attr:`PlanIndices.unknown`; never a number from a truncated isodose. When the prescription isodose reaches the
edge, or the shell 20 mm from the target leaves the grid, the values are kept and :attr:`PlanIndices.warnings`
says so.

D2%, D50%, D98% and Dmax come from the PTV mask's DVH at dose-voxel centres (:func:`qa_checks.dvh.compute_dvh`
of the mask on the dose grid cropped around it), consistent with the voxel-count volumes above.

The limits of RTOG 0813 / 0915 (DOMAIN table) are given by PTV volume; between rows they are interpolated
linearly, and outside the table (below 1.8 cc or above 163 cc) the nearest row is used and the result says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt

from qa_checks.dvh import compute_dvh
from qa_checks.geometry import DoseGrid
from qa_checks.protocol import Criterion, Evaluation, evaluate
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure
from qa_checks.target_geometry import (
    D2CM_SURFACE,
    D2CM_VOXEL_CENTRES,
    crop_dose,
    default_supersample,
    faces_touched,
    max_dose_beyond,
    nearest_target_labels,
)

__all__ = [
    "D2CM_DISTANCE_MM",
    "D2CM_SURFACE",
    "D2CM_VOXEL_CENTRES",
    "NEAREST_TARGET",
    "RTOG_CONFORMITY_TABLE",
    "RTOG_R100_LIMITS",
    "WHOLE_GRID",
    "ConformityLimits",
    "PlanIndices",
    "Target",
    "compute_plan_indices",
    "compute_target_indices",
    "evaluate_rtog_conformity",
    "rtog_conformity_criteria",
    "rtog_conformity_limits",
]

logger = logging.getLogger(__name__)

D2CM_DISTANCE_MM: Final = 20.0
"""Distance from the PTV beyond which ``D2cm`` looks for the maximum dose, mm."""

WHOLE_GRID: Final = "whole_grid"
"""Neighbourhood of the only target of a plan: the whole dose grid."""

NEAREST_TARGET: Final = "nearest_target"
"""Neighbourhood of one of several targets: the voxels whose nearest target surface is its own."""

Target: TypeAlias = Structure | npt.NDArray[np.bool_]
"""A target: a contoured Structure, or a boolean (z, y, x) mask on the dose grid."""

RTOG_CONFORMITY_TABLE: Final[tuple[tuple[float, float, float, float, float], ...]] = (
    (1.8, 5.9, 7.5, 50.0, 57.0),
    (3.8, 5.5, 6.5, 50.0, 57.0),
    (7.4, 5.1, 6.0, 50.0, 58.0),
    (13.2, 4.7, 5.8, 50.0, 58.0),
    (22.0, 4.5, 5.5, 54.0, 63.0),
    (34.0, 4.3, 5.3, 58.0, 68.0),
    (50.0, 4.0, 5.0, 62.0, 77.0),
    (70.0, 3.5, 4.8, 66.0, 86.0),
    (95.0, 3.3, 4.4, 70.0, 89.0),
    (126.0, 3.1, 4.0, 73.0, 91.0),
    (163.0, 2.9, 3.7, 77.0, 94.0),
)
"""RTOG 0813 / 0915 rows: (PTV cc, R50% no deviation, R50% minor deviation, D2cm % no deviation, D2cm % minor
deviation)."""

RTOG_R100_LIMITS: Final = (1.2, 1.5)
"""R100% (PIV / PTV) limits at every PTV size: (no deviation, minor deviation)."""


@dataclass(frozen=True)
class PlanIndices:
    """Plan-quality indices of one target of a plan (definitions in the module docstring).

    Attributes:
        prescription_gy: the target's prescription dose, Gy.
        ptv_volume_cc: TV, cc.
        prescription_isodose_volume_cc: PIV in the target's neighbourhood, cc.
        ptv_in_prescription_isodose_cc: TV_PIV, cc.
        half_prescription_isodose_volume_cc: PIV50% in the target's neighbourhood, cc; None when unknown (see
            ``unknown``).
        rtog_ci: PIV / TV.
        paddick_ci: TV_PIV² / (TV · PIV); 0 when no voxel reaches the prescription.
        gradient_index: PIV50% / PIV; ``inf`` when PIV is 0; None when PIV50% is unknown.
        r50: PIV50% / TV; None when PIV50% is unknown.
        r100: PIV / TV.
        d2cm_percent: maximum dose at ≥ ``d2cm_distance_mm`` from the target, % of prescription; None when
            unknown (no voxel that far in the target's neighbourhood, or the 50 % isodose reaches the grid edge).
        ptv_coverage_percent: % of TV receiving at least the prescription.
        hi_icru83: (D2% − D98%) / D50% of the PTV.
        hi_rtog: PTV Dmax / prescription.
        d2cm_distance_mm: the distance used for ``d2cm_percent``.
        grid_spacing_mm: (z, y, x) dose-grid spacing, mm.
        unknown: PlanIndices field name -> why that value is None.
        warnings: what a reviewer should know about these values (e.g. the 2 cm shell leaves the grid).
        d2cm_method: how distances from the target were measured (:data:`D2CM_SURFACE` or
            :data:`D2CM_VOXEL_CENTRES`).
        supersample: fine voxels per dose voxel along each axis for the surface distance (1 for a mask).
        neighbourhood: the region R100%, R50% and D2cm were measured in (:data:`WHOLE_GRID` or
            :data:`NEAREST_TARGET`).
        target_count: number of targets the grid was partitioned between.
    """

    prescription_gy: float
    ptv_volume_cc: float
    prescription_isodose_volume_cc: float
    ptv_in_prescription_isodose_cc: float
    half_prescription_isodose_volume_cc: float | None
    rtog_ci: float
    paddick_ci: float
    gradient_index: float | None
    r50: float | None
    r100: float
    d2cm_percent: float | None
    ptv_coverage_percent: float
    hi_icru83: float
    hi_rtog: float
    d2cm_distance_mm: float
    grid_spacing_mm: tuple[float, float, float]
    unknown: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    d2cm_method: str = "voxel_centres"
    supersample: int = 1
    neighbourhood: str = "whole_grid"
    target_count: int = 1


@dataclass(frozen=True)
class ConformityLimits:
    """RTOG 0813 / 0915 limits for one PTV volume.

    Attributes:
        ptv_volume_cc: the PTV volume the limits are for.
        r50_no_deviation, r50_minor_deviation: upper limits on R50%.
        d2cm_no_deviation_percent, d2cm_minor_deviation_percent: upper limits on D2cm, % of prescription.
        r100_no_deviation, r100_minor_deviation: upper limits on R100%.
        clamped: True when the volume lies outside the table (1.8–163 cc) and the nearest row was used.
    """

    ptv_volume_cc: float
    r50_no_deviation: float
    r50_minor_deviation: float
    d2cm_no_deviation_percent: float
    d2cm_minor_deviation_percent: float
    r100_no_deviation: float
    r100_minor_deviation: float
    clamped: bool


def compute_plan_indices(
    dose: DoseGrid,
    ptv_mask: Target,
    prescription_gy: float,
    *,
    d2cm_distance_mm: float = D2CM_DISTANCE_MM,
    other_targets: Sequence[Target] = (),
    supersample: int | None = None,
) -> PlanIndices:
    """Conformity, gradient and homogeneity indices of one target (see the module docstring).

    Args:
        dose: dose grid in Gy (finite, ≥ 0).
        ptv_mask: the target: a :class:`~qa_checks.structures.Structure` (D2cm from its supersampled surface),
            or a boolean mask on the dose grid, shape ``dose.shape`` (z, y, x) (D2cm from its voxel centres).
        prescription_gy: the target's prescription dose, Gy, > 0.
        d2cm_distance_mm: distance from the target for ``d2cm_percent``, mm.
        other_targets: the plan's other targets (Structures or masks): the grid is partitioned between all
            targets by nearest surface, and R100%, R50% and D2cm of this target use its own part.
        supersample: fine voxels per dose voxel for a Structure's surface (odd; None:
            :func:`~qa_checks.target_geometry.default_supersample`).

    Raises:
        ValueError: empty PTV, shape mismatch, non-positive prescription, or a bad dose (from
            :func:`~qa_checks.dvh.compute_dvh`).
        TypeError: ``ptv_mask`` is neither a Structure nor a boolean array.
    """
    targets = {"ptv_mask": ptv_mask}
    for i, other in enumerate(other_targets):
        targets[f"other_targets[{i}]"] = other
    rx = {"ptv_mask": prescription_gy}
    return compute_target_indices(
        dose, targets, rx, d2cm_distance_mm=d2cm_distance_mm, supersample=supersample, only=("ptv_mask",)
    )["ptv_mask"]


def compute_target_indices(
    dose: DoseGrid,
    targets: Mapping[str, Target],
    prescriptions_gy: Mapping[str, float],
    *,
    d2cm_distance_mm: float = D2CM_DISTANCE_MM,
    supersample: int | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, PlanIndices]:
    """Indices of every target of a plan, each in its own neighbourhood (see the module docstring).

    Args:
        dose: dose grid in Gy.
        targets: name -> Structure or boolean mask on the dose grid; the order breaks ties where targets overlap.
        prescriptions_gy: name -> prescription dose, Gy, for every target evaluated.
        d2cm_distance_mm: distance from each target for D2cm, mm.
        supersample: see :func:`compute_plan_indices`.
        only: names of the targets to evaluate (default: all); the others still take their part of the grid.

    Raises:
        ValueError, TypeError: as :func:`compute_plan_indices`, naming the target; a target evaluated without a
            prescription.
    """
    if not targets:
        raise ValueError("targets is empty: a plan needs at least one target")
    names = list(targets)
    wanted = list(names if only is None else only)
    for name in wanted:
        if name not in targets:
            raise ValueError(f"target {name!r} is not among the targets {names}")
        if name not in prescriptions_gy:
            raise ValueError(f"target {name!r} has no prescription dose in prescriptions_gy")
    rx_by_name: dict[str, float] = {}
    for name in wanted:
        rx = float(prescriptions_gy[name])
        if not math.isfinite(rx) or rx <= 0:
            what = "prescription_gy" if name == "ptv_mask" else f"prescription of target {name!r}"
            raise ValueError(f"{what} must be a positive number of Gy; got {prescriptions_gy[name]!r}")
        rx_by_name[name] = rx
    _check_dose(dose)
    masks = [_target_mask(dose, targets[name], name) for name in names]
    n = default_supersample(dose.spacing_mm) if supersample is None else int(supersample)
    if n < 1 or n % 2 == 0:
        raise ValueError(f"supersample must be an odd integer >= 1; got {supersample!r}")
    labels = nearest_target_labels(masks, dose.spacing_mm)
    any_target = np.logical_or.reduce(masks)
    voxel_cc = _voxel_volumes_cc(dose)
    out: dict[str, PlanIndices] = {}
    for name in wanted:
        i = names.index(name)
        own = labels == i if len(names) > 1 else None
        out[name] = _indices(
            dose,
            targets[name],
            masks[i],
            rx_by_name[name],
            own=own,
            any_target=any_target,
            voxel_cc=voxel_cc,
            d2cm_distance_mm=float(d2cm_distance_mm),
            supersample=n,
            target_count=len(names),
            label=name,
        )
    return out


def _check_dose(dose: DoseGrid) -> None:
    """Refuse a dose that is not in Gy or not finite and >= 0 everywhere (the DVHs see only boxes of it)."""
    if dose.dose_units is not None and dose.dose_units.upper() != "GY":
        raise ValueError(f"{dose.path or 'dose grid'}: (3004,0002) DoseUnits is {dose.dose_units!r}; indices need 'GY'")
    values = dose.values_gy
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        k, j, i = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{dose.path or 'dose grid'}: dose at voxel (z, y, x) = ({k}, {j}, {i}) is {float(values[k, j, i])!r} Gy; "
            f"doses must be finite and >= 0 ({int(bad.sum())} such voxels)"
        )


def _target_mask(dose: DoseGrid, target: Target, name: str) -> npt.NDArray[np.bool_]:
    what = "ptv_mask" if name == "ptv_mask" else f"target {name!r}"
    if isinstance(target, Structure):
        mask = rasterise(target, dose)
    else:
        if not isinstance(target, np.ndarray) or target.dtype != np.bool_:
            kind = target.dtype if isinstance(target, np.ndarray) else type(target).__name__
            raise TypeError(f"{what} must be a boolean (z, y, x) array on the dose grid or a Structure; got {kind}")
        if target.shape != dose.shape:
            raise ValueError(f"{what} has shape {target.shape} but the dose grid has shape {dose.shape} (z, y, x)")
        mask = target
    if not mask.any():
        raise ValueError(f"{what} is empty: the target has no voxel on the dose grid")
    return mask


def _indices(
    dose: DoseGrid,
    target: Target,
    ptv: npt.NDArray[np.bool_],
    rx: float,
    *,
    own: npt.NDArray[np.bool_] | None,
    any_target: npt.NDArray[np.bool_],
    voxel_cc: npt.NDArray[np.float64],
    d2cm_distance_mm: float,
    supersample: int,
    target_count: int,
    label: str,
) -> PlanIndices:
    cropped, box = crop_dose(dose, ptv)
    dvh = compute_dvh(cropped, ptv[box])
    who = getattr(target, "name", None) or ("the PTV" if label == "ptv_mask" else label)
    values = dose.values_gy
    tv = float(voxel_cc[ptv].sum())
    piv_mask = values >= rx
    tv_piv = float(voxel_cc[piv_mask & ptv].sum())
    if own is not None:
        piv_mask &= own
    piv = float(voxel_cc[piv_mask].sum())
    piv50_mask = values >= 0.5 * rx
    if own is not None:
        piv50_mask &= own
    unknown: dict[str, str] = {}
    warnings: list[str] = []
    edges = faces_touched(dose, piv50_mask)
    piv50: float | None = float(voxel_cc[piv50_mask].sum())
    d2cm: float | None = None
    method, n_used = D2CM_VOXEL_CENTRES, 1
    if edges:
        where = ", ".join(face.describe(dose) for face in edges)
        reason = (
            f"the 50% isodose of {who} ({0.5 * rx:g} Gy) reaches the dose-grid edge at {where}: the dose beyond "
            "the grid is unknown; resubmit the RTDOSE on a grid covering the 50% isodose with a 2 cm margin"
        )
        piv50 = None
        for key in ("half_prescription_isodose_volume_cc", "gradient_index", "r50", "d2cm_percent"):
            unknown[key] = reason
    if faces_touched(dose, piv_mask):
        warnings.append(f"the prescription isodose of {who} reaches the dose-grid edge: R100% is a lower bound")
    if "d2cm_percent" not in unknown:
        far_ok = ~any_target if own is None else own & ~any_target
        d2cm, method, n_used, shell_warning = max_dose_beyond(
            dose, target, ptv, far_ok, d2cm_distance_mm, supersample=supersample, who=who
        )
        if shell_warning:
            warnings.append(shell_warning)
        if d2cm is None:
            unknown["d2cm_percent"] = (
                f"no dose voxel in the neighbourhood of {who} is {d2cm_distance_mm:g} mm or more from it: the grid "
                f"does not reach that far"
            )
        else:
            d2cm = 100.0 * d2cm / rx
    d50 = dvh.d_percent(50)
    for text in warnings:
        logger.warning("%s", text)
    return PlanIndices(
        prescription_gy=rx,
        ptv_volume_cc=tv,
        prescription_isodose_volume_cc=piv,
        ptv_in_prescription_isodose_cc=tv_piv,
        half_prescription_isodose_volume_cc=piv50,
        rtog_ci=piv / tv,
        paddick_ci=tv_piv**2 / (tv * piv) if piv > 0 else 0.0,
        gradient_index=None if piv50 is None else (piv50 / piv if piv > 0 else math.inf),
        r50=None if piv50 is None else piv50 / tv,
        r100=piv / tv,
        d2cm_percent=d2cm,
        ptv_coverage_percent=100.0 * tv_piv / tv,
        hi_icru83=(dvh.d_percent(2) - dvh.d_percent(98)) / d50 if d50 > 0 else math.inf,
        hi_rtog=dvh.max_gy / rx,
        d2cm_distance_mm=d2cm_distance_mm,
        grid_spacing_mm=dose.spacing_mm,
        unknown=unknown,
        warnings=tuple(warnings),
        d2cm_method=method,
        supersample=n_used,
        neighbourhood=WHOLE_GRID if own is None else NEAREST_TARGET,
        target_count=target_count,
    )


def rtog_conformity_limits(ptv_volume_cc: float) -> ConformityLimits:
    """RTOG 0813 / 0915 R50% and D2cm limits for a PTV of ``ptv_volume_cc`` cc, interpolated linearly.

    Volumes outside the table (below 1.8 cc or above 163 cc) take the nearest row, with ``clamped=True`` and
    a logged warning (the protocols give no rule there).

    Raises:
        ValueError: ``ptv_volume_cc`` not a positive finite number.
    """
    v = float(ptv_volume_cc)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"ptv_volume_cc must be a positive number of cc; got {ptv_volume_cc!r}")
    table = np.asarray(RTOG_CONFORMITY_TABLE, dtype=np.float64)
    volumes = table[:, 0]
    clamped = bool(v < volumes[0] or v > volumes[-1])
    if clamped:
        logger.warning(
            "PTV volume %.4g cc is outside the RTOG 0813/0915 table (%.4g-%.4g cc): using the nearest row",
            v,
            volumes[0],
            volumes[-1],
        )
    r50_none, r50_minor, d2_none, d2_minor = (float(np.interp(v, volumes, table[:, c])) for c in range(1, 5))
    return ConformityLimits(
        ptv_volume_cc=v,
        r50_no_deviation=r50_none,
        r50_minor_deviation=r50_minor,
        d2cm_no_deviation_percent=d2_none,
        d2cm_minor_deviation_percent=d2_minor,
        r100_no_deviation=RTOG_R100_LIMITS[0],
        r100_minor_deviation=RTOG_R100_LIMITS[1],
        clamped=clamped,
    )


def rtog_conformity_criteria(limits: ConformityLimits, *, structure: str = "PTV") -> tuple[Criterion, ...]:
    """The limits as protocol criteria on ``(structure, "r50")``, ``(structure, "d2cm_percent")`` and
    ``(structure, "r100")``: no deviation is per protocol, minor deviation is acceptable variation."""
    source = f"RTOG 0813/0915 limits for a {limits.ptv_volume_cc:.4g} cc PTV"
    if limits.clamped:
        source += " (outside the table: nearest row)"
    return (
        Criterion("r50", structure, "r50", "<=", limits.r50_no_deviation, limits.r50_minor_deviation, "1", source),
        Criterion(
            "d2cm",
            structure,
            "d2cm_percent",
            "<=",
            limits.d2cm_no_deviation_percent,
            limits.d2cm_minor_deviation_percent,
            "%",
            source,
        ),
        Criterion("r100", structure, "r100", "<=", limits.r100_no_deviation, limits.r100_minor_deviation, "1", source),
    )


def evaluate_rtog_conformity(indices: PlanIndices, *, structure: str = "PTV") -> Evaluation:
    """Evaluate a plan's R50%, D2cm and R100% against the RTOG 0813/0915 limits for its PTV volume.

    A value exactly at a limit meets it (:mod:`qa_checks.protocol` convention; the protocols write "<" for
    R100%, a difference that only matters for values equal to the limit to the last digit). An unknown (None)
    or ``nan`` R50% or D2cm (e.g. grid too small) is unacceptable variation: it could not be checked; the
    reason from :attr:`PlanIndices.unknown` is reported.
    """
    criteria = rtog_conformity_criteria(rtog_conformity_limits(indices.ptv_volume_cc), structure=structure)
    values = {"r50": indices.r50, "d2cm_percent": indices.d2cm_percent, "r100": indices.r100}
    measured = {(structure, k): v for k, v in values.items() if v is not None}
    reasons = {(structure, k): indices.unknown.get(k, f"{k} is unknown") for k, v in values.items() if v is None}
    return evaluate(criteria, measured, missing_reasons=reasons)


def _voxel_volumes_cc(dose: DoseGrid) -> npt.NDArray[np.float64]:
    """Volume (cc) of every voxel, (z, y, x), from the voxel boundaries midway between centres."""
    widths = []
    for axis in (dose.z_mm, dose.y_mm, dose.x_mm):
        if axis.size == 1:
            widths.append(np.ones(1))
            continue
        mids = 0.5 * (axis[1:] + axis[:-1])
        bounds = np.concatenate([[axis[0] - (mids[0] - axis[0])], mids, [axis[-1] + (axis[-1] - mids[-1])]])
        widths.append(np.abs(np.diff(bounds)))
    volumes = widths[0][:, None, None] * widths[1][None, :, None] * widths[2][None, None, :] / 1000.0
    return np.broadcast_to(volumes, dose.shape)
