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
  anisotropic spacing) from the nearest PTV voxel centre (RTOG 0915: maximum dose 2 cm from the PTV in any
  direction). Distances are to PTV voxel *centres*, which lie up to about half a voxel diagonal inside the
  PTV contour, so a voxel counted may be that much nearer than 20 mm to the contour: D2cm errs high (the
  conservative side). The distance transform uses the mean spacing of each axis. Record the grid spacing
  with the result.
- Homogeneity index, ICRU Report 83: ``HI = (D2% − D98%) / D50%`` of the PTV (0 for a uniform dose); and the
  RTOG 90-05 variant ``HI_RTOG = Dmax / prescription``, Dmax being the maximum PTV voxel dose.
- PTV coverage: % of the PTV volume receiving at least the prescription dose.

D2%, D50%, D98% and Dmax come from the PTV mask's DVH at dose-voxel centres (:func:`qa_checks.dvh.compute_dvh`
without supersampling), consistent with the voxel-count volumes above.

The limits of RTOG 0813 / 0915 (DOMAIN table) are given by PTV volume; between rows they are interpolated
linearly, and outside the table (below 1.8 cc or above 163 cc) the nearest row is used and the result says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from qa_checks.dvh import compute_dvh
from qa_checks.geometry import DoseGrid
from qa_checks.protocol import Criterion, Evaluation, evaluate

__all__ = [
    "D2CM_DISTANCE_MM",
    "RTOG_CONFORMITY_TABLE",
    "RTOG_R100_LIMITS",
    "ConformityLimits",
    "PlanIndices",
    "compute_plan_indices",
    "evaluate_rtog_conformity",
    "rtog_conformity_criteria",
    "rtog_conformity_limits",
]

logger = logging.getLogger(__name__)

D2CM_DISTANCE_MM: Final = 20.0
"""Distance from the PTV beyond which ``D2cm`` looks for the maximum dose, mm."""

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
    """Plan-quality indices of one plan (definitions in the module docstring).

    Attributes:
        prescription_gy: the prescription dose used, Gy.
        ptv_volume_cc: TV, cc.
        prescription_isodose_volume_cc: PIV, cc.
        ptv_in_prescription_isodose_cc: TV_PIV, cc.
        half_prescription_isodose_volume_cc: PIV50%, cc.
        rtog_ci: PIV / TV.
        paddick_ci: TV_PIV² / (TV · PIV); 0 when no voxel reaches the prescription.
        gradient_index: PIV50% / PIV; ``inf`` when PIV is 0.
        r50: PIV50% / TV.
        r100: PIV / TV.
        d2cm_percent: maximum dose at ≥ ``d2cm_distance_mm`` from the PTV, % of prescription; ``nan`` when no
            voxel of the grid is that far.
        ptv_coverage_percent: % of TV receiving at least the prescription.
        hi_icru83: (D2% − D98%) / D50% of the PTV.
        hi_rtog: PTV Dmax / prescription.
        d2cm_distance_mm: the distance used for ``d2cm_percent``.
        grid_spacing_mm: (z, y, x) dose-grid spacing, mm.
    """

    prescription_gy: float
    ptv_volume_cc: float
    prescription_isodose_volume_cc: float
    ptv_in_prescription_isodose_cc: float
    half_prescription_isodose_volume_cc: float
    rtog_ci: float
    paddick_ci: float
    gradient_index: float
    r50: float
    r100: float
    d2cm_percent: float
    ptv_coverage_percent: float
    hi_icru83: float
    hi_rtog: float
    d2cm_distance_mm: float
    grid_spacing_mm: tuple[float, float, float]


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
    ptv_mask: npt.NDArray[np.bool_],
    prescription_gy: float,
    *,
    d2cm_distance_mm: float = D2CM_DISTANCE_MM,
) -> PlanIndices:
    """Conformity, gradient and homogeneity indices of a plan (see the module docstring).

    Args:
        dose: dose grid in Gy (finite, ≥ 0).
        ptv_mask: boolean PTV mask on the dose grid, shape ``dose.shape`` (z, y, x).
        prescription_gy: prescription dose, Gy, > 0.
        d2cm_distance_mm: distance from the PTV for ``d2cm_percent``, mm.

    Raises:
        ValueError: empty PTV mask, shape mismatch, non-positive prescription, or a bad dose (from
            :func:`~qa_checks.dvh.compute_dvh`).
        TypeError: ``ptv_mask`` is not boolean.
    """
    rx = float(prescription_gy)
    if not math.isfinite(rx) or rx <= 0:
        raise ValueError(f"prescription_gy must be a positive number of Gy; got {prescription_gy!r}")
    if not isinstance(ptv_mask, np.ndarray) or ptv_mask.dtype != np.bool_:
        kind = ptv_mask.dtype if isinstance(ptv_mask, np.ndarray) else type(ptv_mask).__name__
        raise TypeError(f"ptv_mask must be a boolean (z, y, x) array on the dose grid; got {kind}")
    if ptv_mask.shape != dose.shape:
        raise ValueError(f"ptv_mask has shape {ptv_mask.shape} but the dose grid has shape {dose.shape} (z, y, x)")
    if not ptv_mask.any():
        raise ValueError("ptv_mask is empty: the PTV has no voxel on the dose grid")
    dvh = compute_dvh(dose, ptv_mask)  # also checks the dose is finite and >= 0

    voxel_cc = _voxel_volumes_cc(dose)
    values = dose.values_gy
    tv = float(voxel_cc[ptv_mask].sum())
    piv_mask = values >= rx
    piv = float(voxel_cc[piv_mask].sum())
    tv_piv = float(voxel_cc[piv_mask & ptv_mask].sum())
    piv50 = float(voxel_cc[values >= 0.5 * rx].sum())

    distance_mm = ndimage.distance_transform_edt(~ptv_mask, sampling=dose.spacing_mm)
    far = distance_mm >= float(d2cm_distance_mm)
    d2cm = float(100.0 * values[far].max() / rx) if far.any() else math.nan
    d50 = dvh.d_percent(50)
    return PlanIndices(
        prescription_gy=rx,
        ptv_volume_cc=tv,
        prescription_isodose_volume_cc=piv,
        ptv_in_prescription_isodose_cc=tv_piv,
        half_prescription_isodose_volume_cc=piv50,
        rtog_ci=piv / tv,
        paddick_ci=tv_piv**2 / (tv * piv) if piv > 0 else 0.0,
        gradient_index=piv50 / piv if piv > 0 else math.inf,
        r50=piv50 / tv,
        r100=piv / tv,
        d2cm_percent=d2cm,
        ptv_coverage_percent=100.0 * tv_piv / tv,
        hi_icru83=(dvh.d_percent(2) - dvh.d_percent(98)) / d50 if d50 > 0 else math.inf,
        hi_rtog=dvh.max_gy / rx,
        d2cm_distance_mm=float(d2cm_distance_mm),
        grid_spacing_mm=dose.spacing_mm,
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
    R100%, a difference that only matters for values equal to the limit to the last digit). A ``nan`` D2cm
    (grid too small to reach 2 cm from the PTV) is unacceptable variation: it could not be checked.
    """
    criteria = rtog_conformity_criteria(rtog_conformity_limits(indices.ptv_volume_cc), structure=structure)
    measured = {
        (structure, "r50"): indices.r50,
        (structure, "d2cm_percent"): indices.d2cm_percent,
        (structure, "r100"): indices.r100,
    }
    return evaluate(criteria, measured)


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
