"""An analytic dose model for reference SABR / SRS plans: dose as a function of the distance from each PTV surface.

For a target with prescription ``Rx`` the dose at a point at signed distance ``d`` (mm; negative inside the PTV,
positive outside) from the PTV surface is::

    D(d) = Rx * (A * Q((d - mu) / sigma) + T(d)),     T(d) = t * exp(-max(d, 0) / lambda)

where ``Q`` is the standard normal survival function (an erf-shaped penumbra), ``t`` the low-dose bath
fraction and ``lambda`` its fall-off length. ``A = peak - t`` sets the central hot spot (SABR plans are
prescribed to an isodose of about 80 %, giving maxima of about 125 %). ``mu`` and ``sigma`` are solved so that

* the prescription isodose covers ``coverage_percent`` of the PTV volume (on the dose grid), and
* the 50 % isodose encloses ``R50 x`` the PTV volume, with R50 a fraction (default 0.85) of the RTOG 0813/0915
  "no deviation" limit for the PTV volume (:func:`qa_checks.plan_indices.rtog_conformity_limits`).

Several targets (e.g. brain metastases with size-dependent prescriptions) combine by the voxel-wise maximum of
their dose clouds. The dose is computed on a dose grid that subsamples the CT grid by integer factors (default
(1, 2, 2): 2 mm isotropic for the default 2 x 1 x 1 mm CT), with the structure masks subsampled the same way.

Arrays are (z, y, x); coordinates LPS mm.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, special

from benchmarks.phantoms import Phantom
from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import rtog_conformity_limits

__all__ = [
    "DEFAULT_DOSE_SUBSAMPLING",
    "DoseModelError",
    "DoseModelOptions",
    "DoseProfile",
    "ModelDose",
    "TargetPrescription",
    "add_organ_overdose",
    "compute_reference_dose",
    "signed_distance_mm",
    "subsample_mask",
]

logger = logging.getLogger(__name__)

DEFAULT_DOSE_SUBSAMPLING: Final = (1, 2, 2)
"""Dose grid = every (1, 2, 2)-th CT voxel along (z, y, x)."""


class DoseModelError(ValueError):
    """Inconsistent dose-model inputs; the message names the target or option and the bad value."""


@dataclass(frozen=True)
class TargetPrescription:
    """A target and its prescription: ``structure`` (PTV name in the phantom) and ``dose_gy`` (total, Gy)."""

    structure: str
    dose_gy: float


@dataclass(frozen=True)
class DoseModelOptions:
    """Shape of the dose clouds (all keyword-tunable; see the module docstring).

    Attributes:
        coverage_percent: % of each PTV volume receiving at least its prescription. The default, 96 %, clears the
            protocols' 95 % coverage level by more than the 16-bit RTDOSE storage and voxelisation error, so a
            reference plan read back from DICOM is per protocol, not on the boundary.
        peak_percent: maximum dose in % of prescription, reached deep inside the PTV.
        r50_fraction_of_limit: target R50% as a fraction of the RTOG "no deviation" R50% for the PTV volume.
        r50: explicit target R50% (overrides ``r50_fraction_of_limit`` when given).
        bath_fraction: low-dose bath ``t`` at the PTV surface, fraction of prescription.
        bath_length_mm: e-folding length ``lambda`` of the bath outside the PTV, mm.
        modulation_percent: amplitude of a linear dose tilt across each target (the penumbra term is multiplied
            by ``1 + m``, ``m`` running from ``-modulation`` to ``+modulation`` along :data:`TILT_DIRECTION_ZYX`
            over the target's equivalent-sphere diameter), as the entrance side of real plans is hotter than the
            exit side. Without it the dose is a pure function of distance and the PTV coverage could only jump
            between whole shells of voxels.
    """

    coverage_percent: float = 96.0
    peak_percent: float = 125.0
    r50_fraction_of_limit: float = 0.85
    r50: float | None = None
    bath_fraction: float = 0.3
    bath_length_mm: float = 35.0
    modulation_percent: float = 4.0

    def __post_init__(self) -> None:
        if not 50.0 <= self.coverage_percent < 100.0:
            raise DoseModelError(f"coverage_percent must be in [50, 100), got {self.coverage_percent!r}")
        if not 100.0 < self.peak_percent <= 200.0:
            raise DoseModelError(f"peak_percent must be in (100, 200], got {self.peak_percent!r}")
        if not 0.0 <= self.bath_fraction < 0.5:
            raise DoseModelError(f"bath_fraction must be in [0, 0.5), got {self.bath_fraction!r}")
        if self.bath_length_mm <= 0:
            raise DoseModelError(f"bath_length_mm must be positive, got {self.bath_length_mm!r}")
        if self.r50 is not None and self.r50 <= 1.0:
            raise DoseModelError(f"r50 must exceed 1, got {self.r50!r}")
        if not 0.0 <= self.modulation_percent < 20.0:
            raise DoseModelError(f"modulation_percent must be in [0, 20), got {self.modulation_percent!r}")
        if self.r50_fraction_of_limit <= 0:
            raise DoseModelError(f"r50_fraction_of_limit must be positive, got {self.r50_fraction_of_limit!r}")


TILT_DIRECTION_ZYX: Final = (0.2873, -0.5746, 0.7662)
"""Unit vector (z, y, x) along which the dose tilt of :class:`DoseModelOptions` rises (superior-anterior-left;
not along a grid diagonal, so that voxels at one distance from the PTV surface rarely share a dose)."""


@dataclass(frozen=True)
class DoseProfile:
    """Relative dose (fraction of prescription) versus signed distance from one PTV surface (mm).

    Attributes:
        amplitude, mu_mm, sigma_mm: penumbra ``A * Q((d - mu) / sigma)``.
        bath_fraction, bath_length_mm: low-dose bath ``t * exp(-max(d, 0) / lambda)``.
        coverage_distance_mm: nominal signed distance of the prescription isodose (without tilt).
        r50_distance_mm: signed distance where the relative dose is 0.5 (without tilt).
        target_r50: the R50% the profile was tuned to.
        centre_zyx_mm, radius_mm: PTV centroid and equivalent-sphere radius, for the tilt.
        modulation: tilt amplitude (fraction).
    """

    amplitude: float
    mu_mm: float
    sigma_mm: float
    bath_fraction: float
    bath_length_mm: float
    coverage_distance_mm: float
    r50_distance_mm: float
    target_r50: float
    centre_zyx_mm: tuple[float, float, float]
    radius_mm: float
    modulation: float

    def relative_dose(
        self, signed_distance: NDArray[np.float64] | float, tilt: NDArray[np.float64] | float = 0.0
    ) -> NDArray[np.float64]:
        """Dose as a fraction of prescription at signed distance(s) from the PTV surface (mm), with the penumbra
        term multiplied by ``1 + tilt``."""
        d = np.asarray(signed_distance, dtype=np.float64)
        core = self.amplitude * special.ndtr(-(d - self.mu_mm) / self.sigma_mm) * (1.0 + np.asarray(tilt))
        bath = self.bath_fraction * np.exp(-np.maximum(d, 0.0) / self.bath_length_mm)
        return np.asarray(core + bath, dtype=np.float64)

    def tilt(
        self, z_mm: NDArray[np.float64], y_mm: NDArray[np.float64], x_mm: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Tilt ``m`` on the grid with these axes (shape (z, y, x)), in [-modulation, +modulation]."""
        (cz, cy, cx), (uz, uy, ux) = self.centre_zyx_mm, TILT_DIRECTION_ZYX
        along = (z_mm[:, None, None] - cz) * uz + (y_mm[None, :, None] - cy) * uy + (x_mm[None, None, :] - cx) * ux
        return np.asarray(self.modulation * np.clip(along / self.radius_mm, -1.0, 1.0), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class ModelDose:
    """A modelled dose distribution and what it was made from.

    Attributes:
        dose: the dose grid (Gy, (z, y, x), LPS mm).
        masks: phantom masks subsampled onto the dose grid (name -> (z, y, x) bool).
        prescriptions: the targets and their prescriptions.
        profiles: PTV name -> the tuned :class:`DoseProfile`.
        subsampling: CT-to-dose-grid subsampling factors (z, y, x).
        options: the model options used.
    """

    dose: DoseGrid
    masks: Mapping[str, NDArray[np.bool_]]
    prescriptions: tuple[TargetPrescription, ...]
    profiles: Mapping[str, DoseProfile]
    subsampling: tuple[int, int, int]
    options: DoseModelOptions = field(default_factory=DoseModelOptions)

    @property
    def max_prescription_gy(self) -> float:
        """Highest prescription among the targets."""
        return max(p.dose_gy for p in self.prescriptions)

    def with_values(self, values_gy: NDArray[np.float64]) -> ModelDose:
        """The same model with other dose values on the same grid."""
        grid = DoseGrid(values_gy, self.dose.z_mm, self.dose.y_mm, self.dose.x_mm)
        return replace(self, dose=grid)


def subsample_mask(mask: NDArray[np.bool_], subsampling: Sequence[int]) -> NDArray[np.bool_]:
    """Every ``subsampling``-th voxel of a (z, y, x) mask (the dose grid's voxel centres are CT voxel centres)."""
    fz, fy, fx = subsampling
    return np.ascontiguousarray(mask[::fz, ::fy, ::fx])


def signed_distance_mm(mask: NDArray[np.bool_], spacing_mm: Sequence[float]) -> NDArray[np.float64]:
    """Approximate signed distance (mm) of every voxel centre from the surface of ``mask``: negative inside.

    The surface is taken half a (mean) voxel beyond the outermost voxel centres, so a voxel inside next to the
    boundary gets about -h and its outside neighbour about +h (h = half the mean spacing).
    """
    if not mask.any():
        raise DoseModelError("signed_distance_mm: the mask is empty")
    sampling = tuple(float(s) for s in spacing_mm)
    half = 0.5 * float(np.mean(sampling))
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    signed: NDArray[np.float64] = np.where(mask, -(inside - half), outside - half).astype(np.float64)
    return signed


def _tune_profile(
    sd: NDArray[np.float64],
    ptv: NDArray[np.bool_],
    axes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    voxel_cc: float,
    options: DoseModelOptions,
    name: str,
) -> DoseProfile:
    n_ptv = int(np.count_nonzero(ptv))
    ptv_cc = n_ptv * voxel_cc
    if options.r50 is not None:
        target_r50 = float(options.r50)
    else:
        target_r50 = options.r50_fraction_of_limit * rtog_conformity_limits(ptv_cc).r50_no_deviation
    n50 = min(round(target_r50 * n_ptv), sd.size) - 1
    d50 = float(np.partition(sd.ravel(), n50)[n50])
    t, lam = options.bath_fraction, options.bath_length_mm
    amplitude = options.peak_percent / 100.0 - t
    p1 = (1.0 - t) / amplitude
    p2 = (0.5 - t * math.exp(-max(d50, 0.0) / lam)) / amplitude
    if not 0.0 < p2 < p1 < 1.0:
        raise DoseModelError(
            f"target {name}: options {options} cannot reach 100% and 50% isodoses (p1={p1:.3g}, p2={p2:.3g})"
        )
    z1 = float(special.ndtri(1.0 - p1))
    z2 = float(special.ndtri(1.0 - p2))
    index = np.nonzero(ptv)
    coords = [axis[i] for axis, i in zip(axes, index, strict=True)]
    centre = (float(coords[0].mean()), float(coords[1].mean()), float(coords[2].mean()))
    radius = (3.0 * ptv_cc * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    profile = DoseProfile(
        amplitude=amplitude,
        mu_mm=0.0,
        sigma_mm=1.0,
        bath_fraction=t,
        bath_length_mm=lam,
        coverage_distance_mm=0.0,
        r50_distance_mm=d50,
        target_r50=target_r50,
        centre_zyx_mm=centre,
        radius_mm=radius,
        modulation=options.modulation_percent / 100.0,
    )
    sd_ptv = sd[index]
    tilt_ptv = profile.tilt(*axes)[index]

    def with_coverage_distance(d_cov: float) -> DoseProfile:
        sigma = (d50 - d_cov) / (z2 - z1)
        return replace(profile, mu_mm=d_cov - z1 * sigma, sigma_mm=sigma, coverage_distance_mm=d_cov)

    def coverage(d_cov: float) -> float:
        relative = with_coverage_distance(d_cov).relative_dose(sd_ptv, tilt_ptv)
        return float(np.count_nonzero(relative >= 1.0)) / n_ptv

    # Bisection on the nominal 100% isodose distance: coverage grows monotonically as it moves outwards.
    lo, hi = float(sd_ptv.min()) - 1.0, min(d50 - 0.5, float(sd_ptv.max()) + 5.0)
    goal = options.coverage_percent / 100.0
    if coverage(lo) > goal or coverage(hi) < goal:
        raise DoseModelError(f"target {name}: coverage {options.coverage_percent}% cannot be reached")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if coverage(mid) < goal:
            lo = mid
        else:
            hi = mid
    tuned = with_coverage_distance(hi)
    logger.info(
        "target %s: PTV %.2f cc, R50 %.2f, 100%% isodose at %.2f mm, 50%% at %.2f mm (sigma %.2f mm)",
        name,
        ptv_cc,
        target_r50,
        tuned.coverage_distance_mm,
        d50,
        tuned.sigma_mm,
    )
    return tuned


def compute_reference_dose(
    phantom: Phantom,
    prescriptions: Sequence[TargetPrescription],
    *,
    options: DoseModelOptions | None = None,
    target_options: Mapping[str, DoseModelOptions] | None = None,
    subsampling: Sequence[int] = DEFAULT_DOSE_SUBSAMPLING,
) -> ModelDose:
    """Model the dose of a plan treating ``prescriptions`` on ``phantom`` (see the module docstring).

    Args:
        phantom: the patient model; every prescription's structure must be one of its masks.
        prescriptions: one item per PTV.
        options: model options for every target.
        target_options: per-target options (PTV name -> options), overriding ``options`` for that target.
        subsampling: CT-to-dose-grid integer subsampling factors (z, y, x).

    Raises:
        DoseModelError: unknown or empty PTV, bad prescription or subsampling, unreachable options.
    """
    options = options or DoseModelOptions()
    target_options = target_options or {}
    factors = tuple(int(f) for f in subsampling)
    if len(factors) != 3 or min(factors) < 1:
        raise DoseModelError(f"subsampling must be three positive integers (z, y, x), got {subsampling!r}")
    if not prescriptions:
        raise DoseModelError("at least one target prescription is needed")
    fz, fy, fx = factors
    z_mm, y_mm, x_mm = phantom.z_mm[::fz], phantom.y_mm[::fy], phantom.x_mm[::fx]
    spacing = tuple(
        float(a[1] - a[0]) if a.size > 1 else float(s) * f
        for a, s, f in zip((z_mm, y_mm, x_mm), phantom.spacing_mm, factors, strict=True)
    )
    voxel_cc = spacing[0] * spacing[1] * spacing[2] / 1000.0
    masks = {name: subsample_mask(mask, factors) for name, mask in phantom.masks.items()}
    values = np.zeros((z_mm.size, y_mm.size, x_mm.size), dtype=np.float64)
    profiles: dict[str, DoseProfile] = {}
    for rx in prescriptions:
        if rx.structure not in masks:
            raise DoseModelError(f"target {rx.structure!r} is not a structure of the phantom ({', '.join(masks)})")
        if not (math.isfinite(rx.dose_gy) and rx.dose_gy > 0):
            raise DoseModelError(f"target {rx.structure!r}: dose_gy must be positive, got {rx.dose_gy!r}")
        ptv = masks[rx.structure]
        if not ptv.any():
            raise DoseModelError(f"target {rx.structure!r} has no voxel on the dose grid")
        sd = signed_distance_mm(ptv, spacing)
        axes = (z_mm, y_mm, x_mm)
        profile = _tune_profile(sd, ptv, axes, voxel_cc, target_options.get(rx.structure, options), rx.structure)
        profiles[rx.structure] = profile
        np.maximum(values, rx.dose_gy * profile.relative_dose(sd, profile.tilt(*axes)), out=values)
    if "Body" in masks:
        values[~masks["Body"]] = 0.0
    return ModelDose(
        dose=DoseGrid(values, z_mm, y_mm, x_mm),
        masks=masks,
        prescriptions=tuple(prescriptions),
        profiles=profiles,
        subsampling=(fz, fy, fx),
        options=options,
    )


OVERDOSE_PENUMBRA_MM: Final = 3.0
"""Gaussian penumbra (sigma, mm) of the dose raised around an organ by :func:`add_organ_overdose`."""

OVERDOSE_REACH_MM: Final = 15.0
"""The overdosed part of the organ: its voxels within this distance of the organ voxel nearest the PTVs."""


def add_organ_overdose(model: ModelDose, structure: str, dose_gy: float) -> ModelDose:
    """Raise the dose in the part of ``structure`` nearest the targets to at least ``dose_gy``.

    The organ voxels within :data:`OVERDOSE_REACH_MM` of the organ voxel nearest the PTVs get at least
    ``dose_gy``, blurred outwards with a :data:`OVERDOSE_PENUMBRA_MM` penumbra (as if the plan had spilt high
    dose into the organ). The organ's Dmax becomes at least ``dose_gy``.
    """
    if structure not in model.masks or not model.masks[structure].any():
        raise DoseModelError(f"organ_overdose: structure {structure!r} is absent or empty on the dose grid")
    spacing = model.dose.spacing_mm
    targets = np.zeros(model.dose.shape, dtype=bool)
    for rx in model.prescriptions:
        targets |= model.masks[rx.structure]
    organ = model.masks[structure]
    to_target = ndimage.distance_transform_edt(~targets, sampling=spacing)
    organ_index = np.argwhere(organ)
    k = int(np.argmin(to_target[organ]))
    axes = (model.dose.z_mm, model.dose.y_mm, model.dose.x_mm)
    point = [axis[i] for axis, i in zip(axes, organ_index[k], strict=True)]
    r2 = (
        (axes[0][:, None, None] - point[0]) ** 2
        + (axes[1][None, :, None] - point[1]) ** 2
        + (axes[2][None, None, :] - point[2]) ** 2
    )
    part = organ & (r2 <= OVERDOSE_REACH_MM**2)
    sd = signed_distance_mm(part, spacing)
    raised = dose_gy * special.ndtr(-sd / OVERDOSE_PENUMBRA_MM)
    raised[part] = np.maximum(raised[part], dose_gy)
    return model.with_values(np.maximum(model.dose.values_gy, raised))
