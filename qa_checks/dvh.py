"""Dose-volume histograms of a structure on a dose grid.

Model
    The structure is represented by *samples*: points with a dose (Gy) and a volume (cc). Without
    supersampling the samples are the dose-grid voxel centres, each carrying the voxel volume times the
    structure's occupancy of the voxel (1/0 for a boolean mask, the fraction for a fractional mask). With
    ``supersample = n`` every dose voxel is split into n × n × n sub-voxels; each sub-voxel centre gets the dose
    interpolated trilinearly from the dose grid (clamped to the outermost voxel centres at the grid's edge) and
    the sub-voxel volume if its centre lies inside the structure (:func:`qa_checks.rasterise.rasterise` on the
    sub-voxel grid). That is fractional occupancy at resolution n together with a dose refined to the same
    resolution: what small structures need (dicompyler-core gives up to 10 Gy differences for ≤ 0.5 cc
    structures without it).

Metrics (computed from the samples, not from the binned curve)
    - The cumulative DVH V(D) (cc receiving at least D Gy) is continuous: each sample spreads its volume
      uniformly over a dose interval as wide as the dose varies across it (its *dose spread*, from the local
      dose gradient), as defined in :mod:`qa_checks.dvh_curve`. In a linear gradient along a grid axis this
      is exact for the voxelised structure; in a uniform dose (no gradient) nothing is spread.
    - ``D_x cc``: the dose at which V reaches x cc, **interpolated linearly** between the corners of V
      (:data:`D_X_DEFINITION`), within [min, max] of the sample doses. Stepping to a sample's dose (the
      previous definition) was off by up to one sample dose step in a gradient.
    - ``D_x %``: ``D_(x/100 · V) cc``. ``D0%`` is the maximum and ``D100%`` the minimum dose.
    - ``V_x Gy``: volume (cc) of the samples whose dose is ≥ x Gy, each sample counted whole (*not* V(x) of the
      continuous curve: volume criteria stay voxel counts, as planning systems and the plan indices count them);
      ``V_x Gy %`` the same as a percentage of the structure volume. V_x Gy and D_x can therefore disagree by
      up to the volume of the samples whose dose range straddles x.
    - mean: volume-weighted mean dose; max / min: of the samples with non-zero volume.

The cumulative curve (:attr:`DVH.dose_bins_gy`, :attr:`DVH.cumulative_volume_cc`) is ``V_x Gy`` at each bin's
lower edge, ``bin_width_gy`` apart from 0 Gy: for display and storage.

Supersampling
    :func:`compute_dvh` supersamples by default where voxel centres are not enough: targets and structures
    under :data:`SUPERSAMPLE_BELOW_CC` (policy :func:`default_supersampling`). The factor used, and why, is
    recorded on the DVH (:attr:`DVH.parameters`). A mask given on the dose grid cannot be refined and is not
    supersampled unless asked.

Structures drawn on one plane
    A structure contoured on a single CT slice stands for a slab one CT slice thick. On the dose grid (coarser
    than the CT, or its sub-voxels when supersampling) that thickness cannot be read off the grid, so
    :func:`compute_dvh` takes it from ``ct_slice_thickness_mm`` (:func:`qa_checks.rasterise.rasterise`'s
    ``plane_spacing_mm``); without it the dose grid's z spacing is used and a warning recorded.

Small volumes
    A ``D_x`` whose volume is under :data:`SMALL_VOLUME_VOXELS` dose voxels depends on where the structure
    falls on the grid: :meth:`DVH.small_volume_warning` says so in words ("D0.03cc of SpinalCord on a 3 mm dose
    grid: the volume is 1.1 dose voxels (0.027 cc each)"), and :meth:`DVH.d_cc` logs it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Final

import numpy as np
import numpy.typing as npt

from qa_checks.dvh_curve import curve_points, dose_spread_gy
from qa_checks.dvh_policy import (
    MAX_DEFAULT_SUPERSAMPLE,
    SUB_VOXEL_TARGET_MM,
    SUPERSAMPLE_BELOW_CC,
    TARGET_TYPES,
    default_supersampling,
    is_target_structure,
    supersampling_policy,
)
from qa_checks.geometry import DoseGrid, check_axis
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure

__all__ = [
    "COARSE_GRID_MM",
    "DVH",
    "D_X_DEFINITION",
    "INTERPOLATION",
    "MAX_DEFAULT_SUPERSAMPLE",
    "SMALL_VOLUME_CC",
    "SMALL_VOLUME_VOXELS",
    "SUB_VOXEL_TARGET_MM",
    "SUPERSAMPLE_BELOW_CC",
    "TARGET_TYPES",
    "V_X_DEFINITION",
    "compute_dvh",
    "default_supersampling",
    "dvh_measurements",
    "dvh_warnings",
    "is_dvh_metric",
]

logger = logging.getLogger(__name__)

SMALL_VOLUME_CC: Final = 0.1
"""Volumes (cc) at or below which ``D_x cc`` is conventionally a small-volume metric (D0.03cc, D0.1cc). Kept for
callers; warnings now follow :data:`SMALL_VOLUME_VOXELS`, which accounts for the grid."""

COARSE_GRID_MM: Final = 3.0
"""Dose-grid spacing (mm) from which small-volume DVH metrics are unreliable (DOMAIN). Kept for callers;
warnings now follow :data:`SMALL_VOLUME_VOXELS`."""

INTERPOLATION: Final = "trilinear"
"""How the dose is sampled at sub-voxel centres when supersampling."""

MM3_PER_CC: Final = 1000.0

D_X_DEFINITION: Final = (
    "D_x: dose at which the cumulative DVH V(D) reaches x cc, V piecewise linear: each sample's volume spread "
    "uniformly over its dose +/- half the dose variation across it (|gradient| x voxel width, summed over axes); "
    "kept within [min, max] of the sample doses"
)
"""The definition of ``D_x`` in words, stored with every DVH's parameters (see the module docstring)."""

V_X_DEFINITION: Final = "V_x: volume of the samples whose dose is >= x Gy, each sample counted whole"
"""The definition of ``V_x Gy`` in words, stored with every DVH's parameters."""

SMALL_VOLUME_VOXELS: Final = 2.0
"""A ``D_x cc`` whose volume x is under this many dose voxels is a small-volume metric and gets a warning in
words: with fewer than two voxels' worth of volume the hottest x cc is decided by one or two sample doses."""


_METRIC = re.compile(
    r"^(?:(?P<dkind>D)(?P<dval>\d+(?:\.\d+)?)(?P<dunit>%|cc)"
    r"|(?P<vkind>V)(?P<vval>\d+(?:\.\d+)?)Gy(?P<vunit>%|cc)?"
    r"|(?P<named>Dmean|Dmax|Dmin))$"
)


@dataclass(frozen=True, eq=False)
class DVH:
    """A structure's dose-volume histogram with the parameters that produced it.

    Attributes:
        sample_dose_gy: dose of every sample with non-zero volume, sorted from the hottest down.
        cumulative_sample_volume_cc: running sum of the samples' volumes in that order (its last value is
            ``volume_cc``).
        dose_bins_gy: lower bin edges of the cumulative curve, 0, ``bin_width_gy``, ... past the maximum dose.
        cumulative_volume_cc: volume (cc) receiving at least each ``dose_bins_gy`` value.
        volume_cc: structure volume on the dose grid, in cc.
        mean_gy, max_gy, min_gy: volume-weighted mean, maximum and minimum dose of the samples, in Gy.
        grid_spacing_mm: (z, y, x) dose-grid spacing in mm.
        supersample: sub-voxels per dose voxel along each axis (1: voxel centres).
        bin_width_gy: width of the cumulative-curve bins, Gy.
        interpolation: dose interpolation at sub-voxel centres (:data:`INTERPOLATION`; ``"none"`` when
            ``supersample`` is 1).
        structure_name: (3006,0026) *ROIName* of the structure, or None for a mask.
        supersample_reason: why ``supersample`` has its value, in words.
        single_plane_thickness_mm: the slab thickness (mm) given to a structure drawn on one plane, or None.
        notes: anything the reviewer should know about how the DVH was built (e.g. a single-plane structure
            whose thickness was not given).
    """

    sample_dose_gy: npt.NDArray[np.float64]
    cumulative_sample_volume_cc: npt.NDArray[np.float64]
    dose_bins_gy: npt.NDArray[np.float64]
    cumulative_volume_cc: npt.NDArray[np.float64]
    volume_cc: float
    mean_gy: float
    max_gy: float
    min_gy: float
    grid_spacing_mm: tuple[float, float, float]
    supersample: int
    bin_width_gy: float
    interpolation: str
    structure_name: str | None = None
    supersample_reason: str = ""
    single_plane_thickness_mm: float | None = None
    notes: tuple[str, ...] = ()
    sample_dose_spread_gy: npt.NDArray[np.float64] | None = None

    @cached_property
    def _samples(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(dose, volume, spread) of every sample, hottest first."""
        volumes = np.diff(self.cumulative_sample_volume_cc, prepend=0.0)
        spread = self.sample_dose_spread_gy
        if spread is None:
            spread = np.zeros_like(self.sample_dose_gy)
        return self.sample_dose_gy, volumes, spread

    @cached_property
    def _curve(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return curve_points(*self._samples)

    @property
    def parameters(self) -> dict[str, object]:
        """The parameters that produced this DVH, JSON-serialisable, to store with any result from it."""
        return {
            "structure": self.structure_name,
            "grid_spacing_mm": list(self.grid_spacing_mm),
            "voxel_volume_cc": self.voxel_volume_cc,
            "supersample": self.supersample,
            "supersample_reason": self.supersample_reason,
            "interpolation": self.interpolation,
            "bin_width_gy": self.bin_width_gy,
            "d_x_definition": D_X_DEFINITION,
            "v_x_definition": V_X_DEFINITION,
            "single_plane_thickness_mm": self.single_plane_thickness_mm,
            "volume_cc": self.volume_cc,
            "notes": list(self.notes),
        }

    @property
    def voxel_volume_cc(self) -> float:
        """Volume of one dose-grid voxel, cc."""
        return float(np.prod(self.grid_spacing_mm)) / MM3_PER_CC

    def small_volume_warning(self, volume_cc: float, *, metric: str | None = None) -> str | None:
        """A warning in words when ``D_x`` at ``volume_cc`` rests on fewer than :data:`SMALL_VOLUME_VOXELS` dose
        voxels, e.g. ``"D0.03cc of SpinalCord on a 3 mm dose grid: the volume is 1.1 dose voxels (0.027 cc
        each)"``; None otherwise.

        Args:
            volume_cc: the volume x of ``D_x cc`` (for ``D_x %``, x % of the structure volume).
            metric: the metric as the protocol names it (``"D2%"``); default ``"D<x>cc"``.
        """
        x = float(volume_cc)
        voxel = self.voxel_volume_cc
        if x <= 0 or x >= SMALL_VOLUME_VOXELS * voxel:
            return None
        name = metric or f"D{_round_cc(x)}cc"
        what = name if name.endswith("cc") else f"{name} ({_round_cc(x)} cc)"
        spacing = self.grid_spacing_mm
        grid = f"{spacing[0]:g} mm" if max(spacing) - min(spacing) < 1e-6 else "×".join(f"{v:g}" for v in spacing)
        grid += "" if grid.endswith(" mm") else " mm (z×y×x)"
        if x < voxel:
            size = f"the volume is smaller than one dose voxel ({_round_cc(voxel)} cc)"
        else:
            size = f"the volume is {x / voxel:.1f} dose voxels ({_round_cc(voxel)} cc each)"
        how = (
            "; not supersampled: the value jumps with the structure's position on the grid"
            if self.supersample == 1
            else f"; supersampled {self.supersample}× with the dose interpolated {self.interpolation}ly"
        )
        return f"{what} of {self.structure_name or 'a mask'} on a {grid} dose grid: {size}{how}"

    @property
    def cumulative_volume_percent(self) -> npt.NDArray[np.float64]:
        """:attr:`cumulative_volume_cc` as a percentage of :attr:`volume_cc`."""
        return np.asarray(100.0 * self.cumulative_volume_cc / self.volume_cc, dtype=np.float64)

    def d_cc(self, volume_cc: float) -> float:
        """Dose (Gy) received by the hottest ``volume_cc`` cc: where the continuous cumulative DVH reaches that
        volume, interpolated (:data:`D_X_DEFINITION`); ``0`` gives the maximum. Logs
        :meth:`small_volume_warning` when there is one.

        Raises:
            ValueError: ``volume_cc`` negative, not finite, or larger than the structure volume (the hottest
                x cc of a smaller structure is undefined).
        """
        x = float(volume_cc)
        if not math.isfinite(x) or x < 0:
            raise ValueError(f"D_x cc needs a volume x >= 0 cc; got {volume_cc!r}")
        # Float summation can leave the last cumulative value a few ulps below volume_cc.
        if x > self.volume_cc * (1 + 1e-9):
            raise ValueError(
                f"D{x:g}cc is undefined: structure {self.structure_name or '(mask)'} is only {self.volume_cc:.4g} cc"
            )
        return self._d_cc(x, metric=None)

    def _d_cc(self, x: float, *, metric: str | None) -> float:
        message = self.small_volume_warning(x, metric=metric)
        if message is not None:
            logger.warning("%s", message)
        if x == 0:
            return self.max_gy
        volumes, doses = self._curve
        return float(np.clip(np.interp(x, volumes, doses), self.min_gy, self.max_gy))

    def d_percent(self, percent: float) -> float:
        """Minimum dose (Gy) to the hottest ``percent`` % of the structure volume (D95%, D2%, ...).

        Raises:
            ValueError: ``percent`` outside [0, 100].
        """
        p = float(percent)
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"D_x% needs 0 <= x <= 100; got {percent!r}")
        if p == 100.0:
            return self.min_gy
        return self._d_cc(p / 100.0 * self.volume_cc, metric=f"D{p:g}%") if p > 0 else self.max_gy

    def v_gy(self, dose_gy: float) -> float:
        """Volume (cc) receiving at least ``dose_gy`` Gy."""
        d = float(dose_gy)
        if not math.isfinite(d):
            raise ValueError(f"V_x Gy needs a finite dose; got {dose_gy!r}")
        # sample_dose_gy is descending: count the samples with dose >= d.
        n = int(np.searchsorted(-self.sample_dose_gy, -d, side="right"))
        return float(self.cumulative_sample_volume_cc[n - 1]) if n > 0 else 0.0

    def v_gy_percent(self, dose_gy: float) -> float:
        """Percentage of the structure volume receiving at least ``dose_gy`` Gy."""
        return 100.0 * self.v_gy(dose_gy) / self.volume_cc

    def metric(self, name: str) -> float:
        """Value of a metric named as in trial protocols.

        Names: ``"D95%"``, ``"D0.03cc"``, ``"V20Gy"`` (cc), ``"V20Gycc"``, ``"V20Gy%"``, ``"Dmean"``, ``"Dmax"``,
        ``"Dmin"``. Doses in Gy, volumes in cc or %.

        Raises:
            ValueError: an unknown name (the accepted forms are listed).
        """
        match = _METRIC.match(name.strip())
        if match is None:
            raise ValueError(
                f"unknown DVH metric {name!r}; use D<x>% , D<x>cc, V<x>Gy, V<x>Gycc, V<x>Gy%, Dmean, Dmax or Dmin"
            )
        if match["named"]:
            return {"Dmean": self.mean_gy, "Dmax": self.max_gy, "Dmin": self.min_gy}[match["named"]]
        if match["dkind"]:
            value = float(match["dval"])
            return self.d_percent(value) if match["dunit"] == "%" else self.d_cc(value)
        value = float(match["vval"])
        return self.v_gy_percent(value) if match["vunit"] == "%" else self.v_gy(value)


def compute_dvh(
    dose: DoseGrid,
    structure: Structure | npt.NDArray[np.bool_] | npt.NDArray[np.floating],
    *,
    supersample: int | None = None,
    bin_width_gy: float = 0.01,
    is_target: bool | None = None,
    ct_slice_thickness_mm: float | None = None,
) -> DVH:
    """Cumulative DVH of ``structure`` in ``dose`` (see the module docstring for the model and definitions).

    Args:
        dose: the dose grid; (3004,0002) *DoseUnits* must be GY (values in Gy), every value finite and ≥ 0.
        structure: a :class:`~qa_checks.structures.Structure` (rasterised here), or a mask on the dose grid:
            boolean, or float occupancy in [0, 1], shape (z, y, x) equal to ``dose.shape``. A mask cannot be
            refined: with ``supersample > 1`` each sub-voxel inherits its voxel's occupancy and only the dose is
            refined.
        supersample: sub-voxels per dose voxel along each axis, 1 to 10; None (default): for a Structure,
            :func:`default_supersampling` of its volume and target status; for a mask, 1.
        bin_width_gy: bin width of the cumulative curve, Gy, > 0.
        is_target: whether the structure is a target, for the default supersampling; None: from its
            (3006,00A4) *RTROIInterpretedType* or TG-263 name (:data:`TARGET_TYPES`).
        ct_slice_thickness_mm: the CT slice thickness (mm): the thickness of a structure drawn on a single
            plane. Without it such a structure gets the dose grid's z spacing, and the DVH's notes say so.

    Raises:
        ValueError: a non-finite or negative dose (naming the first such voxel, its (z, y, x) index, position
            and value), a mask of the wrong shape or with values outside [0, 1], an empty structure,
            ``supersample``, ``bin_width_gy`` or ``ct_slice_thickness_mm`` out of range, or (3004,0002)
            *DoseUnits* not GY.
        TypeError: ``structure`` is neither a Structure nor a boolean or floating-point numpy array.
    """
    if supersample is not None and (
        not isinstance(supersample, int | np.integer) or isinstance(supersample, bool) or not 1 <= supersample <= 10
    ):
        raise ValueError(f"supersample must be an integer from 1 to 10; got {supersample!r}")
    bw = float(bin_width_gy)
    if not math.isfinite(bw) or bw <= 0:
        raise ValueError(f"bin_width_gy must be a positive number of Gy; got {bin_width_gy!r}")
    if ct_slice_thickness_mm is not None and not (
        math.isfinite(float(ct_slice_thickness_mm)) and float(ct_slice_thickness_mm) > 0
    ):
        raise ValueError(f"ct_slice_thickness_mm must be a positive number of mm; got {ct_slice_thickness_mm!r}")
    if dose.dose_units is not None and dose.dose_units.upper() != "GY":
        raise ValueError(
            f"{dose.path or 'dose grid'}: (3004,0002) DoseUnits is {dose.dose_units!r}; a DVH in Gy needs 'GY'"
        )
    _check_dose(dose)
    name = structure.name if isinstance(structure, Structure) else None
    spacing = dose.spacing_mm
    notes: list[str] = []
    thickness: float | None = None

    if isinstance(structure, Structure):
        if structure.z_planes_mm.size == 1:
            if ct_slice_thickness_mm is not None:
                thickness = float(ct_slice_thickness_mm)
            else:
                thickness = spacing[0]
                notes.append(
                    f"{structure.name} is drawn on one plane and no CT slice thickness was given: its thickness is "
                    f"taken as the dose grid's z spacing ({thickness:g} mm)"
                )
                logger.warning("%s", notes[-1])
        estimate = rasterise(structure, dose, fractional=True, supersample=3, plane_spacing_mm=thickness)
        volume_estimate = float(np.sum(estimate * _voxel_volumes_cc(dose)))
        target = is_target_structure(structure) if is_target is None else bool(is_target)
        if supersample is None:
            n, reason = supersampling_policy(volume_estimate, target, max(spacing))
        else:
            n, reason = int(supersample), "given by the caller"
        coarse = (
            estimate
            if n == 3
            else rasterise(structure, dose, fractional=True, supersample=n, plane_spacing_mm=thickness)
        )
    else:
        n, reason = (
            (1, "default: a mask on the dose grid cannot be refined")
            if supersample is None
            else (
                int(supersample),
                "given by the caller (a mask: only the dose is refined)",
            )
        )
        coarse = _check_mask(structure, dose.shape)
    if not np.any(coarse > 0):
        raise ValueError(
            f"structure {name or '(mask)'} has no volume on the dose grid "
            f"(shape {dose.shape}, spacing {spacing} mm): nothing to build a DVH from"
        )

    if n == 1:
        doses, volumes, spreads = _voxel_samples(dose, coarse)
    else:
        doses, volumes, spreads = _supersampled_samples(dose, structure, coarse, n, thickness)
    if volumes.size == 0:
        raise ValueError(
            f"structure {name or '(mask)'} has no volume on the dose grid "
            f"(shape {dose.shape}, spacing {spacing} mm): nothing to build a DVH from"
        )

    order = np.argsort(-doses, kind="stable")
    sorted_dose = np.ascontiguousarray(doses[order])
    sorted_spread = np.ascontiguousarray(spreads[order])
    cumulative = np.cumsum(volumes[order])
    total = float(cumulative[-1])
    if total <= 0:
        raise ValueError(f"structure {name or '(mask)'} has zero volume on the dose grid")
    mean = float(np.dot(doses, volumes) / total)
    max_gy = float(sorted_dose[0])
    bins = np.arange(0.0, max_gy + bw, bw)
    counted = np.searchsorted(-sorted_dose, -bins, side="right")  # samples with dose >= each bin edge
    curve = np.where(counted > 0, cumulative[np.maximum(counted - 1, 0)], 0.0)
    return DVH(
        sample_dose_gy=sorted_dose,
        cumulative_sample_volume_cc=cumulative,
        dose_bins_gy=bins,
        cumulative_volume_cc=curve,
        volume_cc=total,
        mean_gy=mean,
        max_gy=max_gy,
        min_gy=float(sorted_dose[-1]),
        grid_spacing_mm=spacing,
        supersample=n,
        bin_width_gy=bw,
        interpolation=INTERPOLATION if n > 1 else "none",
        structure_name=name,
        supersample_reason=reason,
        single_plane_thickness_mm=thickness,
        notes=tuple(notes),
        sample_dose_spread_gy=sorted_spread,
    )


def _box(occupancy: npt.NDArray[np.float64], margin: int = 0) -> list[tuple[int, int]]:
    """Half-open (z, y, x) index ranges of the non-zero voxels, widened by ``margin`` within the array."""
    box = []
    for dim in range(3):
        other = tuple(d for d in range(3) if d != dim)
        hit = np.flatnonzero((occupancy > 0).any(axis=other))
        box.append((max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, occupancy.shape[dim])))
    return box


def _voxel_samples(
    dose: DoseGrid, occupancy: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(dose Gy, volume cc, dose spread Gy) of the dose voxels the structure occupies (no supersampling)."""
    box = _box(occupancy, margin=1)  # one voxel around for central differences
    (z0, z1), (y0, y1), (x0, x1) = box
    values = dose.values_gy[z0:z1, y0:y1, x0:x1]
    weights = (occupancy * _voxel_volumes_cc(dose))[z0:z1, y0:y1, x0:x1]
    axes = (dose.z_mm[z0:z1], dose.y_mm[y0:y1], dose.x_mm[x0:x1])
    widths = [_cell_widths(a)[lo:hi] for a, (lo, hi) in zip((dose.z_mm, dose.y_mm, dose.x_mm), box, strict=True)]
    spread = dose_spread_gy(values, axes, widths)
    inside = weights > 0
    return (
        np.asarray(values[inside], dtype=np.float64),
        np.asarray(weights[inside], dtype=np.float64),
        np.asarray(spread[inside], dtype=np.float64),
    )


def _voxel_volumes_cc(dose: DoseGrid) -> npt.NDArray[np.float64]:
    """Volume (cc) of every dose voxel, shape (z, y, x) broadcastable."""
    z_w, y_w, x_w = (_cell_widths(a) for a in (dose.z_mm, dose.y_mm, dose.x_mm))
    return np.asarray(z_w[:, None, None] * y_w[None, :, None] * x_w[None, None, :] / MM3_PER_CC, dtype=np.float64)


def _check_dose(dose: DoseGrid) -> None:
    values = dose.values_gy
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        k, j, i = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{dose.path or 'dose grid'}: dose at voxel (z, y, x) = ({k}, {j}, {i}), position "
            f"(x, y, z) = ({dose.x_mm[i]:g}, {dose.y_mm[j]:g}, {dose.z_mm[k]:g}) mm, is {float(values[k, j, i])!r} Gy; "
            f"doses must be finite and >= 0 ({int(bad.sum())} such voxels)"
        )


def _check_mask(mask: object, shape: tuple[int, int, int]) -> npt.NDArray[np.float64]:
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"structure must be a Structure or a numpy mask on the dose grid; got {type(mask).__name__}")
    if mask.shape != shape:
        raise ValueError(f"mask has shape {mask.shape} but the dose grid has shape {shape} (z, y, x)")
    if mask.dtype == np.bool_:
        return mask.astype(np.float64)
    if not np.issubdtype(mask.dtype, np.floating):
        raise TypeError(f"mask must be boolean or float occupancy in [0, 1]; got dtype {mask.dtype}")
    occupancy = np.asarray(mask, dtype=np.float64)
    if not np.all(np.isfinite(occupancy)) or occupancy.min() < 0 or occupancy.max() > 1:
        raise ValueError(
            f"float mask must hold occupancy fractions in [0, 1]; got values from {np.nanmin(occupancy)} "
            f"to {np.nanmax(occupancy)}"
        )
    return occupancy


def _cell_widths(axis: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Width (mm) of each voxel along an axis: between the midpoints to its neighbours (edge voxels mirrored)."""
    if axis.size == 1:
        return np.ones(1)
    lower, upper = _cell_bounds(axis)
    return np.asarray(np.abs(upper - lower), dtype=np.float64)


def _cell_bounds(axis: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(lower, upper) boundary coordinates of each voxel along an axis (midpoints between centres)."""
    mids = 0.5 * (axis[1:] + axis[:-1])
    lower = np.concatenate([[axis[0] - (mids[0] - axis[0])], mids])
    upper = np.concatenate([mids, [axis[-1] + (axis[-1] - mids[-1])]])
    return lower, upper


def _sub_centres(axis: npt.NDArray[np.float64], lo: int, hi: int, n: int) -> npt.NDArray[np.float64]:
    """Sub-voxel centre coordinates of voxels ``lo:hi`` of an axis, ``n`` per voxel, in the axis' order."""
    lower, upper = _cell_bounds(axis)
    fractions = (np.arange(n) + 0.5) / n
    sub = lower[lo:hi, None] + fractions[None, :] * (upper - lower)[lo:hi, None]
    return np.asarray(sub.ravel(), dtype=np.float64)


def _interpolate_axis(
    values: npt.NDArray[np.float64], axis_mm: npt.NDArray[np.float64], query_mm: npt.NDArray[np.float64], dim: int
) -> npt.NDArray[np.float64]:
    """Linear interpolation of ``values`` along array axis ``dim`` at ``query_mm`` (clamped at the ends)."""
    if axis_mm.size == 1:
        return np.repeat(values, query_mm.size, axis=dim)
    ascending = axis_mm[1] > axis_mm[0]
    coords = axis_mm if ascending else axis_mm[::-1]
    index = np.arange(axis_mm.size, dtype=np.float64)
    fractional = np.interp(query_mm, coords, index if ascending else index[::-1])
    below = np.clip(np.floor(fractional).astype(np.intp), 0, axis_mm.size - 2)
    t = fractional - below
    shape = [1, 1, 1]
    shape[dim] = t.size
    t = t.reshape(shape)
    return np.asarray(
        np.take(values, below, axis=dim) * (1 - t) + np.take(values, below + 1, axis=dim) * t, dtype=np.float64
    )


def _supersampled_samples(
    dose: DoseGrid,
    structure: Structure | npt.NDArray[np.bool_] | npt.NDArray[np.floating],
    coarse: npt.NDArray[np.float64],
    n: int,
    plane_spacing_mm: float | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(dose Gy, volume cc, dose spread Gy) of the sub-voxel samples inside the structure, over its bounding box."""
    box = _box(coarse)
    axes = (dose.z_mm, dose.y_mm, dose.x_mm)
    subs = [_sub_centres(a, lo, hi, n) for a, (lo, hi) in zip(axes, box, strict=True)]
    # Trilinear interpolation is separable: interpolate along z, then y, then x, from the voxels around the box.
    lo_idx = [max(lo - 1, 0) for lo, _ in box]
    hi_idx = [min(hi + 1, a.size) for a, (_, hi) in zip(axes, box, strict=True)]
    values = dose.values_gy[lo_idx[0] : hi_idx[0], lo_idx[1] : hi_idx[1], lo_idx[2] : hi_idx[2]]
    for dim in range(3):
        values = _interpolate_axis(values, axes[dim][lo_idx[dim] : hi_idx[dim]], subs[dim], dim)
    widths = [np.repeat(_cell_widths(a)[lo:hi], n) / n for a, (lo, hi) in zip(axes, box, strict=True)]
    sub_volume_cc = widths[0][:, None, None] * widths[1][None, :, None] * widths[2][None, None, :] / MM3_PER_CC
    if isinstance(structure, Structure):
        fine = _SubGrid(check_axis(subs[0], name="z_mm"), subs[1], subs[2])
        # A single-plane structure's thickness is not the sub-grid's z spacing: pass it (CT slice or dose grid).
        occupancy = rasterise(structure, fine, plane_spacing_mm=plane_spacing_mm).astype(np.float64)
    else:
        block = coarse[box[0][0] : box[0][1], box[1][0] : box[1][1], box[2][0] : box[2][1]]
        occupancy = np.repeat(np.repeat(np.repeat(block, n, axis=0), n, axis=1), n, axis=2)
    weights = occupancy * sub_volume_cc
    inside = weights > 0
    spread = dose_spread_gy(values, subs, widths)
    return (
        np.asarray(values[inside], dtype=np.float64),
        np.asarray(weights[inside], dtype=np.float64),
        np.asarray(spread[inside], dtype=np.float64),
    )


@dataclass(frozen=True)
class _SubGrid:
    """A (z, y, x) grid of sub-voxel centres for :func:`~qa_checks.rasterise.rasterise`."""

    z_mm: npt.NDArray[np.float64]
    y_mm: npt.NDArray[np.float64]
    x_mm: npt.NDArray[np.float64]


def _round_cc(volume_cc: float) -> str:
    """A volume in cc as a reviewer writes it: three significant figures, no float noise (0.027, 0.35, 1.2)."""
    return f"{float(f'{volume_cc:.3g}'):g}"


def is_dvh_metric(name: str) -> bool:
    """True when ``name`` is a DVH metric name understood by :meth:`DVH.metric` (e.g. ``"D0.03cc"``)."""
    return _METRIC.match(name.strip()) is not None


def dvh_measurements(dvhs: Mapping[str, DVH], keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Measured values for the ``(structure, metric)`` keys that are DVH metrics of a structure in ``dvhs``.

    The result plugs into :func:`qa_checks.protocol.evaluate`. Keys whose metric is not a DVH metric name, or
    whose structure has no DVH, are left out (the protocol then reports them as not measured). A metric that
    is undefined for the structure (``D2cc`` of a 1.5 cc structure) is ``nan``, which the protocol reports as
    "could not be computed".
    """
    measured: dict[tuple[str, str], float] = {}
    for structure, metric in keys:
        dvh = dvhs.get(structure)
        if dvh is None or not is_dvh_metric(metric):
            continue
        try:
            measured[(structure, metric)] = dvh.metric(metric)
        except ValueError as exc:
            logger.warning("%s of %s is undefined: %s", metric, structure, exc)
            measured[(structure, metric)] = math.nan
    return measured


def dvh_warnings(dvhs: Mapping[str, DVH], keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Small-volume warnings in words (:meth:`DVH.small_volume_warning`) for the ``(structure, metric)`` keys
    whose metric is a ``D_x cc`` or ``D_x %`` of a structure in ``dvhs``, to show the reviewer next to the value.
    Keys without a warning, or that are not D_x metrics of a known structure, are left out."""
    warnings: dict[tuple[str, str], str] = {}
    for structure, metric in keys:
        dvh = dvhs.get(structure)
        match = _METRIC.match(metric.strip())
        if dvh is None or match is None or not match["dkind"]:
            continue
        value = float(match["dval"])
        volume_cc = value / 100.0 * dvh.volume_cc if match["dunit"] == "%" else value
        if match["dunit"] == "%" and value in (0.0, 100.0):
            continue  # the maximum and the minimum are not volume quantiles
        message = dvh.small_volume_warning(volume_cc, metric=metric.strip())
        if message is not None:
            warnings[(structure, metric)] = message
    return warnings
