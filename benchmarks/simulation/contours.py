"""Contouring deviations: the centre's masks are the reference masks with :class:`Deviation` s applied in mm.

Conventions: masks are (z, y, x); shifts are given as (dz, dy, dx) in LPS mm (+x patient left, +y posterior,
+z superior).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from benchmarks.simulation.common import Mask, SimulationError, Spacing, parse_kind

__all__ = [
    "JITTER_CORRELATION_MM",
    "Deviation",
    "DeviationKind",
    "SubmittedStructure",
    "apply_deviations",
    "distance_to_voxels_mm",
    "grow_mm",
    "parse_deviation",
    "shift_mm",
    "smooth_mm",
]

JITTER_CORRELATION_MM: Final = 10.0
"""Correlation length (Gaussian sigma, mm) of the random boundary perturbation of ``jitter_mm``."""


class DeviationKind(StrEnum):
    """Kinds of contouring deviation.

    * ``margin_mm`` (value: float mm): grow (> 0) or shrink (< 0) isotropically in mm.
    * ``shift_mm`` (value: (dz, dy, dx) mm): translate.
    * ``rename`` (value: str): write the structure under another name (e.g. ``"Cord"``); mask unchanged.
    * ``drop_slices`` (value: int): delete the N most superior contoured slices (N > 0) or the |N| most inferior
      (N < 0).
    * ``smooth`` (value: float mm): Gaussian smoothing of the mask with this sigma, re-thresholded at 0.5.
    * ``swap_laterality`` (no value): left and right structures are labelled the wrong way round (their masks
      swap; names stay). With a structure (e.g. ``Lung_L``) only that pair swaps.
    * ``omit`` (no value): the structure is not submitted.
    * ``jitter_mm`` (value: float mm): random, smooth boundary perturbation of this amplitude (standard deviation
      of the displacement, correlation length :data:`JITTER_CORRELATION_MM`), drawn from the seed.
    """

    MARGIN_MM = "margin_mm"
    SHIFT_MM = "shift_mm"
    RENAME = "rename"
    DROP_SLICES = "drop_slices"
    SMOOTH = "smooth"
    SWAP_LATERALITY = "swap_laterality"
    OMIT = "omit"
    JITTER_MM = "jitter_mm"


DeviationValue = float | int | str | tuple[float, float, float] | None


@dataclass(frozen=True)
class Deviation:
    """One deviation of a centre's contours from the reference.

    Attributes:
        kind: a :class:`DeviationKind` (strings are normalised).
        structure: TG-263 name of the reference structure it applies to; ``None`` means every structure (not
            allowed for ``rename``).
        value: the amount or parameter, see :class:`DeviationKind`.
    """

    kind: DeviationKind
    structure: str | None = None
    value: DeviationValue = None

    def __post_init__(self) -> None:
        kind = parse_kind(DeviationKind, self.kind, "unknown deviation kind")
        object.__setattr__(self, "kind", kind)
        value = self.value
        if kind in (DeviationKind.MARGIN_MM, DeviationKind.SMOOTH, DeviationKind.JITTER_MM):
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise SimulationError(f"{kind.value}: value must be a finite number of mm, got {value!r}")
            if kind is not DeviationKind.MARGIN_MM and value < 0:
                raise SimulationError(f"{kind.value}: value must be >= 0 mm, got {value!r}")
            object.__setattr__(self, "value", float(value))
        elif kind is DeviationKind.SHIFT_MM:
            if not isinstance(value, tuple | list) or len(value) != 3:
                raise SimulationError(f"shift_mm: value must be (dz, dy, dx) in mm, got {value!r}")
            object.__setattr__(self, "value", tuple(float(v) for v in value))
        elif kind is DeviationKind.RENAME:
            if not isinstance(value, str) or not value.strip() or len(value) > 64:
                raise SimulationError(f"rename: value must be a new name of 1..64 characters, got {value!r}")
            if self.structure is None:
                raise SimulationError("rename: a structure must be named (renaming every structure is ambiguous)")
        elif kind is DeviationKind.DROP_SLICES:
            if isinstance(value, bool) or not isinstance(value, int) or value == 0:
                raise SimulationError(f"drop_slices: value must be a non-zero integer, got {value!r}")
        elif value is not None:
            raise SimulationError(f"{kind.value}: takes no value, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> Deviation:
        """Parse ``"kind:structure[:value]"``, e.g. ``"margin_mm:PTV:3"``, ``"shift_mm:GTV:0,0,5"`` ((dz, dy, dx)
        mm), ``"rename:SpinalCord:Cord"``, ``"drop_slices:PTV:2"``, ``"omit:Heart"``, ``"swap_laterality:*"``.
        A structure of ``*`` (or empty) means every structure.

        Raises:
            SimulationError: naming the text and the problem.
        """
        parts = text.split(":", 2)
        if len(parts) < 2:
            raise SimulationError(f"deviation {text!r}: expected 'kind:structure[:value]'")
        kind_text, structure_text = parts[0].strip(), parts[1].strip()
        structure = None if structure_text in ("", "*") else structure_text
        raw = parts[2].strip() if len(parts) == 3 else None
        kind = parse_kind(DeviationKind, kind_text, f"deviation {text!r}: unknown kind")
        value: DeviationValue
        try:
            if raw is None or raw == "":
                value = None
            elif kind is DeviationKind.SHIFT_MM:
                numbers = [float(v) for v in raw.split(",")]
                if len(numbers) != 3:
                    raise SimulationError(f"deviation {text!r}: shift needs three numbers dz,dy,dx in mm")
                value = (numbers[0], numbers[1], numbers[2])
            elif kind is DeviationKind.DROP_SLICES:
                value = int(raw)
            elif kind is DeviationKind.RENAME:
                value = raw
            else:
                value = float(raw)
        except ValueError as exc:
            if isinstance(exc, SimulationError):
                raise
            raise SimulationError(f"deviation {text!r}: bad value {raw!r} for {kind.value}") from None
        try:
            return cls(kind, structure, value)
        except SimulationError as exc:
            raise SimulationError(f"deviation {text!r}: {exc}") from None

    def __str__(self) -> str:
        structure = self.structure or "*"
        if self.value is None:
            return f"{self.kind.value}:{structure}"
        if isinstance(self.value, tuple):
            return f"{self.kind.value}:{structure}:{','.join(f'{v:g}' for v in self.value)}"
        if isinstance(self.value, float):
            return f"{self.kind.value}:{structure}:{self.value:g}"
        return f"{self.kind.value}:{structure}:{self.value}"


def parse_deviation(text: str) -> Deviation:
    """Parse ``"kind:structure[:value]"`` into a :class:`Deviation` (see :meth:`Deviation.parse`)."""
    return Deviation.parse(text)


@dataclass
class SubmittedStructure:
    """A structure as the simulated centre submits it.

    Attributes:
        name: (3006,0026) ROIName written in the centre's RTSTRUCT.
        canonical: the TG-263 name of the reference structure it stands for (what a correct name mapping gives).
        mask: (z, y, x) mask on the case grid.
        interpreted_type: (3006,00A4) RTROIInterpretedType.
    """

    name: str
    canonical: str
    mask: Mask
    interpreted_type: str


def distance_to_voxels_mm(mask: Mask, *, spacing_mm: Spacing) -> NDArray[np.float64]:
    """Distance (mm) from each voxel centre outside ``mask`` to the mask's surface, 0 inside.

    The surface is taken at the voxel faces (a mask voxel is the box around its centre, as in the traced
    contours, whose edges run half-way between inside and outside centres). The distance is measured along the
    line to the nearest mask voxel centre, minus that voxel's half-extent in that direction (the half-extent of
    the ellipsoid with semi-axes ``spacing_mm / 2``): exact along the axes, an approximation elsewhere. For an
    empty mask every distance is +inf.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf)
    dist, nearest = ndimage.distance_transform_edt(~mask, sampling=spacing_mm, return_indices=True)
    half = np.asarray(spacing_mm, dtype=np.float64).reshape(3, 1, 1, 1) / 2.0
    delta_mm = (np.indices(mask.shape) - nearest) * (2.0 * half)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = delta_mm / dist
        half_extent = 1.0 / np.sqrt(((unit / half) ** 2).sum(axis=0))
    return np.where(mask, 0.0, dist - half_extent)


def grow_mm(mask: Mask, margin_mm: float, *, spacing_mm: Spacing) -> Mask:
    """Grow (``margin_mm`` > 0) or shrink (< 0) a (z, y, x) mask isotropically in mm.

    Growing adds every voxel whose centre lies within ``margin_mm`` of the mask's voxel-face surface (see
    :func:`distance_to_voxels_mm`); shrinking removes every voxel whose centre lies within ``|margin_mm|`` of the
    surface of the complement. Along an axis this rounds the margin to the nearest whole number of voxels
    (half a voxel rounds up). On curved shapes the result is within about one voxel of the analytic growth and,
    being measured from the voxel faces, tends to grow (or shrink) slightly too much rather than too little.
    """
    mask = np.asarray(mask, dtype=bool)
    if margin_mm == 0:
        return mask.copy()
    if margin_mm > 0:
        return np.asarray(mask | (distance_to_voxels_mm(mask, spacing_mm=spacing_mm) <= margin_mm))
    outside = ~mask
    return np.asarray(~(outside | (distance_to_voxels_mm(outside, spacing_mm=spacing_mm) <= -margin_mm)))


def shift_mm(mask: Mask, shift_zyx_mm: tuple[float, float, float], *, spacing_mm: Spacing) -> Mask:
    """Translate a (z, y, x) mask by (dz, dy, dx) mm.

    Whole-voxel shifts are exact; fractional shifts interpolate the mask linearly and threshold at 0.5 (the
    half-voxel boundary moves by exactly the shift along each axis). Voxels shifted off the grid are lost.
    """
    shift_vox = [d / s for d, s in zip(shift_zyx_mm, spacing_mm, strict=True)]
    if all(float(v).is_integer() for v in shift_vox):
        out = np.zeros_like(mask, dtype=bool)
        src = []
        dst = []
        for n, v in zip(mask.shape, shift_vox, strict=True):
            k = int(v)
            if abs(k) >= n:
                return out
            src.append(slice(max(0, -k), n - max(0, k)))
            dst.append(slice(max(0, k), n - max(0, -k)))
        out[tuple(dst)] = mask[tuple(src)]
        return out
    moved = ndimage.shift(mask.astype(np.float32), shift_vox, order=1, mode="constant", cval=0.0)
    # 0.5: threshold of the linearly interpolated indicator = half-voxel boundary; 1e-6 absorbs float32 round-off
    # exactly at 0.5 (a boundary voxel shifted by exactly half a voxel counts as inside).
    return np.asarray(moved >= 0.5 - 1e-6)


def smooth_mm(mask: Mask, sigma_mm: float, *, spacing_mm: Spacing) -> Mask:
    """Gaussian-smooth a (z, y, x) mask with ``sigma_mm`` (per-axis sigma in voxels from ``spacing_mm``) and
    threshold at 0.5: rounds corners, removes thin parts, and shrinks convex shapes slightly."""
    if sigma_mm == 0:
        return np.asarray(mask, dtype=bool).copy()
    sigma_vox = [sigma_mm / s for s in spacing_mm]
    smoothed = ndimage.gaussian_filter(mask.astype(np.float32), sigma_vox, mode="constant", cval=0.0)
    return np.asarray(smoothed >= 0.5)


def _drop_slices(mask: Mask, count: int) -> Mask:
    out = mask.copy()
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    if slices.size == 0:
        return out
    chosen = slices[::-1][:count] if count > 0 else slices[:-count]
    out[chosen] = False
    return out


def _jitter(mask: Mask, amplitude_mm: float, *, spacing_mm: Spacing, rng: np.random.Generator) -> Mask:
    if amplitude_mm == 0 or not mask.any() or mask.all():
        return mask.copy()
    # Signed distance (mm) from voxel centres to the other side: > 0 outside, <= 0 inside.
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing_mm)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing_mm)
    signed = np.where(mask, -inside, outside)
    noise = ndimage.gaussian_filter(
        rng.standard_normal(mask.shape), [JITTER_CORRELATION_MM / s for s in spacing_mm], mode="wrap"
    )
    noise /= noise.std() or 1.0
    return np.asarray(signed <= amplitude_mm * noise)


_LATERALITY: Final = re.compile(r"_(L|R)$")


def _other_side(name: str) -> str | None:
    match = _LATERALITY.search(name)
    if match is None:
        return None
    side = "R" if match.group(1) == "L" else "L"
    return name[: match.start()] + "_" + side


def apply_deviations(
    masks: dict[str, Mask],
    interpreted_types: dict[str, str],
    deviations: Sequence[Deviation],
    *,
    spacing_mm: Spacing,
    rng: np.random.Generator,
) -> list[SubmittedStructure]:
    """Apply ``deviations`` in order to reference ``masks`` (TG-263 name -> (z, y, x) mask).

    Returns:
        The submitted structures, in reference order (omitted ones removed).

    Raises:
        SimulationError: a deviation names a structure that does not exist (or was omitted).
    """
    submitted = [
        SubmittedStructure(name, name, np.asarray(mask, dtype=bool).copy(), interpreted_types.get(name, "ORGAN"))
        for name, mask in masks.items()
    ]

    def targets(dev: Deviation) -> list[SubmittedStructure]:
        if dev.structure is None:
            return list(submitted)
        found = [s for s in submitted if s.canonical == dev.structure] or [
            s for s in submitted if s.name == dev.structure
        ]
        if not found:
            names = ", ".join(s.canonical for s in submitted)
            raise SimulationError(f"deviation {dev}: no structure {dev.structure!r}; structures: {names}")
        return found

    for dev in deviations:
        if dev.kind is DeviationKind.SWAP_LATERALITY:
            chosen = targets(dev)
            done: set[str] = set()
            for s in chosen:
                other_name = _other_side(s.canonical)
                if other_name is None:
                    if dev.structure is not None:
                        raise SimulationError(f"deviation {dev}: {s.canonical!r} has no _L/_R laterality")
                    continue
                if s.canonical in done:
                    continue
                partner = next((p for p in submitted if p.canonical == other_name), None)
                if partner is None:
                    raise SimulationError(f"deviation {dev}: no partner structure {other_name!r} to swap with")
                s.mask, partner.mask = partner.mask, s.mask
                done.update({s.canonical, partner.canonical})
            continue
        for s in targets(dev):
            if dev.kind is DeviationKind.MARGIN_MM:
                assert isinstance(dev.value, float)
                s.mask = grow_mm(s.mask, dev.value, spacing_mm=spacing_mm)
            elif dev.kind is DeviationKind.SHIFT_MM:
                assert isinstance(dev.value, tuple)
                s.mask = shift_mm(s.mask, dev.value, spacing_mm=spacing_mm)
            elif dev.kind is DeviationKind.RENAME:
                assert isinstance(dev.value, str)
                s.name = dev.value
            elif dev.kind is DeviationKind.DROP_SLICES:
                assert isinstance(dev.value, int)
                s.mask = _drop_slices(s.mask, dev.value)
            elif dev.kind is DeviationKind.SMOOTH:
                assert isinstance(dev.value, float)
                s.mask = smooth_mm(s.mask, dev.value, spacing_mm=spacing_mm)
            elif dev.kind is DeviationKind.JITTER_MM:
                assert isinstance(dev.value, float)
                s.mask = _jitter(s.mask, dev.value, spacing_mm=spacing_mm, rng=rng)
            elif dev.kind is DeviationKind.OMIT:
                submitted.remove(s)
    names = [s.name for s in submitted]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SimulationError(f"deviations {[str(d) for d in deviations]} give duplicate ROI names {duplicates}")
    return submitted
