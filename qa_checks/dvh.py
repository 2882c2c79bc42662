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

Metrics (computed from the samples exactly, not from the binned curve)
    - ``D_x cc``: the minimum dose to the hottest x cc: samples sorted from the hottest down, the dose of the
      sample at which the accumulated volume first reaches x cc.
    - ``D_x %``: ``D_(x/100 · V) cc``. ``D0%`` is the maximum and ``D100%`` the minimum dose.
    - ``V_x Gy``: volume (cc) of the samples with dose ≥ x Gy; ``V_x Gy %`` the same as a percentage of ``V``.
    - mean: volume-weighted mean dose; max / min: of the samples with non-zero volume.

The cumulative curve (:attr:`DVH.dose_bins_gy`, :attr:`DVH.cumulative_volume_cc`) is for display and storage:
the volume receiving at least each bin's lower edge, ``bin_width_gy`` apart from 0 Gy.

Dose grids ≥ 3 mm make small-volume metrics such as D0.03cc unreliable unless supersampled: :meth:`DVH.d_cc`
logs a warning when asked for x ≤ :data:`SMALL_VOLUME_CC` on such a grid without supersampling.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from qa_checks.geometry import DoseGrid, check_axis
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure

__all__ = [
    "COARSE_GRID_MM",
    "DVH",
    "INTERPOLATION",
    "SMALL_VOLUME_CC",
    "compute_dvh",
    "dvh_measurements",
    "is_dvh_metric",
]

logger = logging.getLogger(__name__)

SMALL_VOLUME_CC: Final = 0.1
"""Volumes (cc) at or below which ``D_x cc`` is a small-volume metric (D0.03cc, D0.1cc)."""

COARSE_GRID_MM: Final = 3.0
"""Dose-grid spacing (mm) from which small-volume metrics without supersampling are warned about (DOMAIN:
small-volume DVH metrics on dose grids ≥ 3 mm are unreliable)."""

INTERPOLATION: Final = "trilinear"
"""How the dose is sampled at sub-voxel centres when supersampling."""

MM3_PER_CC: Final = 1000.0

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

    @property
    def cumulative_volume_percent(self) -> npt.NDArray[np.float64]:
        """:attr:`cumulative_volume_cc` as a percentage of :attr:`volume_cc`."""
        return np.asarray(100.0 * self.cumulative_volume_cc / self.volume_cc, dtype=np.float64)

    def d_cc(self, volume_cc: float) -> float:
        """Minimum dose (Gy) to the hottest ``volume_cc`` cc of the structure (``0`` gives the maximum).

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
        if x <= SMALL_VOLUME_CC and self.supersample == 1 and max(self.grid_spacing_mm) >= COARSE_GRID_MM:
            logger.warning(
                "D%gcc of %s on a %s mm dose grid without supersampling is unreliable; use supersample >= 3",
                x,
                self.structure_name or "a mask",
                "x".join(f"{s:g}" for s in self.grid_spacing_mm),
            )
        if x == 0:
            return self.max_gy
        idx = int(np.searchsorted(self.cumulative_sample_volume_cc, x * (1 - 1e-12), side="left"))
        return float(self.sample_dose_gy[min(idx, self.sample_dose_gy.size - 1)])

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
        return self.d_cc(p / 100.0 * self.volume_cc) if p > 0 else self.max_gy

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
    supersample: int = 1,
    bin_width_gy: float = 0.01,
) -> DVH:
    """Cumulative DVH of ``structure`` in ``dose`` (see the module docstring for the model and definitions).

    Args:
        dose: the dose grid; (3004,0002) *DoseUnits* must be GY (values in Gy), every value finite and ≥ 0.
        structure: a :class:`~qa_checks.structures.Structure` (rasterised here), or a mask on the dose grid:
            boolean, or float occupancy in [0, 1], shape (z, y, x) equal to ``dose.shape``. A mask cannot be
            refined: with ``supersample > 1`` each sub-voxel inherits its voxel's occupancy and only the dose is
            refined.
        supersample: sub-voxels per dose voxel along each axis, 1 to 10.
        bin_width_gy: bin width of the cumulative curve, Gy, > 0.

    Raises:
        ValueError: a non-finite or negative dose (naming the first such voxel, its (z, y, x) index, position
            and value), a mask of the wrong shape or with values outside [0, 1], an empty structure,
            ``supersample`` or ``bin_width_gy`` out of range, or (3004,0002) *DoseUnits* not GY.
        TypeError: ``structure`` is neither a Structure nor a boolean or floating-point numpy array.
    """
    if not isinstance(supersample, int | np.integer) or isinstance(supersample, bool) or not 1 <= supersample <= 10:
        raise ValueError(f"supersample must be an integer from 1 to 10; got {supersample!r}")
    n = int(supersample)
    bw = float(bin_width_gy)
    if not math.isfinite(bw) or bw <= 0:
        raise ValueError(f"bin_width_gy must be a positive number of Gy; got {bin_width_gy!r}")
    if dose.dose_units is not None and dose.dose_units.upper() != "GY":
        raise ValueError(
            f"{dose.path or 'dose grid'}: (3004,0002) DoseUnits is {dose.dose_units!r}; a DVH in Gy needs 'GY'"
        )
    _check_dose(dose)
    name = structure.name if isinstance(structure, Structure) else None
    spacing = dose.spacing_mm

    if isinstance(structure, Structure):
        coarse = rasterise(structure, dose, fractional=True, supersample=n)
    else:
        coarse = _check_mask(structure, dose.shape)
    if not np.any(coarse > 0):
        raise ValueError(
            f"structure {name or '(mask)'} has no volume on the dose grid "
            f"(shape {dose.shape}, spacing {spacing} mm): nothing to build a DVH from"
        )
    z_w, y_w, x_w = (_cell_widths(a) for a in (dose.z_mm, dose.y_mm, dose.x_mm))

    if n == 1:
        weights = coarse * (z_w[:, None, None] * y_w[None, :, None] * x_w[None, None, :]) / MM3_PER_CC
        inside = weights > 0
        doses = dose.values_gy[inside]
        volumes = weights[inside]
    else:
        doses, volumes = _supersampled_samples(dose, structure, coarse, n)

    order = np.argsort(-doses, kind="stable")
    sorted_dose = np.ascontiguousarray(doses[order])
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
    )


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
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(dose Gy, volume cc) of the sub-voxel samples inside the structure, over its bounding box."""
    box = []
    for dim in range(3):
        other = tuple(d for d in range(3) if d != dim)
        hit = np.flatnonzero((coarse > 0).any(axis=other))
        box.append((int(hit[0]), int(hit[-1]) + 1))
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
        occupancy = rasterise(structure, fine).astype(np.float64)
    else:
        block = coarse[box[0][0] : box[0][1], box[1][0] : box[1][1], box[2][0] : box[2][1]]
        occupancy = np.repeat(np.repeat(np.repeat(block, n, axis=0), n, axis=1), n, axis=2)
    weights = occupancy * sub_volume_cc
    inside = weights > 0
    return np.asarray(values[inside], dtype=np.float64), np.asarray(weights[inside], dtype=np.float64)


@dataclass(frozen=True)
class _SubGrid:
    """A (z, y, x) grid of sub-voxel centres for :func:`~qa_checks.rasterise.rasterise`."""

    z_mm: npt.NDArray[np.float64]
    y_mm: npt.NDArray[np.float64]
    x_mm: npt.NDArray[np.float64]


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
