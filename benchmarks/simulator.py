"""Simulated centre submissions for benchmark cases, with an oracle outcome.

A centre contours the supplied benchmark CT, so a simulated submission is the case's CT series copied unchanged
(same frame of reference and SOP instances) plus the centre's own RT Structure Set: the reference masks with
:class:`Deviation` s applied in mm on the CT grid, optionally under the centre's own names.

The *oracle* measures the deviated masks against the reference masks directly on the phantom grid (no DICOM
round trip) and scores them with the case's protocol, giving ``expected_outcome``: what a correct pipeline
(read, map names to TG-263, rasterise, measure, evaluate) should decide. It assumes every submitted name maps to
the TG-263 name it stands for (``rename`` keeps that meaning; ``swap_laterality`` swaps the masks under correct
names), so a rename to a name no mapper could recognise makes the oracle more lenient than the pipeline.

Planning cases also take simulated plan submissions (:func:`simulate_plan_submission`): the case's CT and
reference structures with the centre's RTPLAN and RTDOSE, the dose being the case's analytic reference dose with
:class:`PlanDeviation` s applied (planning deviations such as under-coverage or an organ overdose, and TPS-check
deviations such as a scaled, shifted or noisy dose). Each deviation carries :class:`ExpectedEffect` s: the value a
measurement should take according to the deviation's definition, and the oracle's own measurement of it on the
modelled dose grid. The plan oracle (:func:`plan_oracle`) scores the deviated dose on the modelled grid with the
protocol: a planning benchmark with its planning criteria (coverage, maximum dose, conformity, organ-at-risk
limits for the plan's fractions), a TPS check with a 3D gamma against the reference dose and its gamma criterion.

Conventions: masks are (z, y, x); shifts are given as (dz, dy, dx) in LPS mm (+x patient left, +y posterior,
+z superior).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from benchmarks.cases import CT_DIR_NAME, BuiltCase, PlanSpec, model_dose, write_plan_and_dose
from benchmarks.dicom_writer import read_ct_series_info, write_rtstruct
from benchmarks.dose_model import ModelDose, add_organ_overdose
from benchmarks.phantoms import Phantom
from benchmarks.protocols import (
    GAMMA_METRIC,
    GAMMA_STRUCTURE,
    PLAN_INDEX_METRICS,
    GammaSection,
    Protocol,
    load_protocol,
)
from qa_checks.dvh import compute_dvh, dvh_measurements, is_dvh_metric
from qa_checks.gamma import gamma_3d
from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import PlanIndices, compute_plan_indices
from qa_checks.protocol import Criterion, Evaluation, OutcomeLevel, evaluate

__all__ = [
    "JITTER_CORRELATION_MM",
    "STORED_DOSE_LEVELS",
    "Deviation",
    "DeviationKind",
    "ExpectedEffect",
    "PlanCheck",
    "PlanDeviation",
    "PlanDeviationKind",
    "PlanOracle",
    "SimulatedPlanSubmission",
    "SimulatedSubmission",
    "SimulationError",
    "SubmittedStructure",
    "apply_deviations",
    "apply_plan_deviations",
    "distance_to_voxels_mm",
    "dose_centroid_mm",
    "expected_gamma_outcome",
    "grow_mm",
    "oracle_measurements",
    "parse_deviation",
    "plan_check_of",
    "plan_measurements",
    "plan_oracle",
    "shift_mm",
    "simulate_plan_submission",
    "simulate_submission",
    "smooth_mm",
    "storage_tolerance",
    "target_measurements",
]

logger = logging.getLogger(__name__)

JITTER_CORRELATION_MM: Final = 10.0
"""Correlation length (Gaussian sigma, mm) of the random boundary perturbation of ``jitter_mm``."""

Mask = NDArray[np.bool_]
Spacing = tuple[float, float, float]


class SimulationError(ValueError):
    """Invalid deviation or simulation request; the message names the deviation and the bad value."""


_Kind = TypeVar("_Kind", bound=StrEnum)


def _kind(kinds: type[_Kind], value: str, problem: str) -> _Kind:
    """``value`` as a member of ``kinds``; otherwise a SimulationError "<problem> <value>; known kinds: ..."."""
    try:
        return kinds(value)
    except ValueError:
        known = ", ".join(k.value for k in kinds)
        raise SimulationError(f"{problem} {value!r}; known kinds: {known}") from None


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
        kind = _kind(DeviationKind, self.kind, "unknown deviation kind")
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
        kind = _kind(DeviationKind, kind_text, f"deviation {text!r}: unknown kind")
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


@dataclass(frozen=True)
class SimulatedSubmission:
    """A simulated centre submission and the outcome a correct pipeline should reach.

    Attributes:
        directory: submission directory (``CT/`` copied from the case + the centre's RT Structure Set).
        provider: the submitting provider (centre).
        case_id: the benchmark case.
        deviations: deviations applied, in order.
        expected_outcome: the oracle's outcome under the case's protocol.
        expected_reason: the oracle's reasons joined with ``"; "`` (or a per-protocol statement).
        rtstruct_path: the centre's RT Structure Set.
        ct_dir: the copied CT series.
        seed: the seed used (UIDs and random deviations).
        structure_names: submitted ROI name -> TG-263 name it stands for.
        measurements: the oracle's measurements, ``(structure, metric) -> value``.
        evaluation: the oracle's full protocol evaluation.
    """

    directory: Path
    provider: str
    case_id: str
    deviations: tuple[Deviation, ...]
    expected_outcome: OutcomeLevel
    expected_reason: str
    rtstruct_path: Path
    ct_dir: Path
    seed: int
    structure_names: dict[str, str] = field(default_factory=dict)
    measurements: dict[tuple[str, str], float] = field(default_factory=dict)
    evaluation: Evaluation | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (for sidecar files and demos)."""
        return {
            "directory": str(self.directory),
            "provider": self.provider,
            "case_id": self.case_id,
            "seed": self.seed,
            "deviations": [str(d) for d in self.deviations],
            "expected_outcome": self.expected_outcome.value,
            "expected_reason": self.expected_reason,
            "rtstruct_path": str(self.rtstruct_path),
            "structure_names": dict(self.structure_names),
            "measurements": [
                {"structure": s, "metric": m, "value": v} for (s, m), v in sorted(self.measurements.items())
            ],
        }


def _safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "centre"


def _prepare_output_dir(out: Path, *, overwrite: bool, ours: re.Pattern[str]) -> Path:
    """Empty ``out`` for a new simulated submission.

    A previous simulated submission (a ``CT/`` folder and files whose names match ``ours``) is replaced; any other
    content is refused unless ``overwrite``, so a mistyped ``--out`` never deletes someone's files.
    """
    if out.exists():
        if not out.is_dir():
            raise SimulationError(f"{out}: output path exists and is not a directory")
        entries = list(out.iterdir())
        foreign = [e.name for e in entries if not (e.name == CT_DIR_NAME and e.is_dir()) and not ours.match(e.name)]
        if foreign and not overwrite:
            raise SimulationError(
                f"{out}: output directory holds files other than a simulated submission "
                f"({', '.join(sorted(foreign))}); pass overwrite=True to replace them"
            )
        if entries:
            shutil.rmtree(out)
    return out


def simulate_submission(
    case: BuiltCase,
    *,
    provider: str,
    deviations: Sequence[Deviation],
    seed: int,
    out_dir: Path | str,
    overwrite: bool = False,
) -> SimulatedSubmission:
    """Write a simulated submission of ``provider`` for ``case`` into ``out_dir`` and compute its oracle outcome.

    Layout: ``out_dir/CT/`` (the case's CT files, copied byte for byte) and ``out_dir/RTSTRUCT_<provider>.dcm``
    (new SOP instance and series UIDs, same study and frame of reference, seeded by case, provider and
    ``seed``).

    Args:
        case: a built case (see :func:`benchmarks.cases.build_case`).
        provider: provider (centre) name; also the (3006,0002) StructureSetLabel (first 16 characters).
        deviations: applied in order to the reference masks.
        seed: seeds the UIDs and random deviations (``jitter_mm``); same inputs, same files.
        out_dir: submission directory. It must be missing, empty, or hold a previous simulated submission
            (only ``CT/`` and ``RTSTRUCT_*.dcm``), which is replaced; anything else needs ``overwrite``.
        overwrite: replace whatever ``out_dir`` holds.

    Raises:
        SimulationError: bad deviation, or ``out_dir`` holds other files and ``overwrite`` is false.
    """
    if not provider.strip():
        raise SimulationError(f"provider must be non-empty, got {provider!r}")
    out = _prepare_output_dir(Path(out_dir), overwrite=overwrite, ours=re.compile(r"^RTSTRUCT_.+\.dcm$"))
    deviations = tuple(deviations)
    rng = np.random.default_rng(seed)
    phantom = case.phantom()
    spacing = phantom.spacing_mm
    submitted = apply_deviations(phantom.masks, phantom.interpreted_types, deviations, spacing_mm=spacing, rng=rng)

    ct_out = out / CT_DIR_NAME
    ct_out.mkdir(parents=True, exist_ok=True)
    for path in sorted(case.ct_dir.glob("*.dcm")):
        shutil.copyfile(path, ct_out / path.name)
    ct_info = read_ct_series_info(ct_out)
    rs_path = out / f"RTSTRUCT_{_safe_file_part(provider)}.dcm"
    uid_seed = f"rtqa-submission/{case.spec.case_id}/{case.spec.version}/{provider}/{seed}"
    write_rtstruct(
        {s.name: s.mask for s in submitted},
        ct_info,
        rs_path,
        interpreted_types={s.name: s.interpreted_type for s in submitted},
        colors={s.name: phantom.colors[s.canonical] for s in submitted if s.canonical in phantom.colors},
        label=provider[:16],
        structure_set_name=f"{case.spec.case_id} {provider}"[:64],
        uid_seed=uid_seed,
        series_number=100,
        series_description=f"{provider} structures"[:64],
        manufacturer=f"{provider} planning system"[:64],
        institution_name=provider[:64],
    )

    protocol = load_protocol(case.spec.protocol_id)
    criteria = protocol.outlining_criteria()
    if not criteria:
        raise SimulationError(f"protocol {protocol.id!r} of case {case.spec.case_id!r} has no outlining criteria")
    measurements = oracle_measurements(submitted, phantom.masks, {c.key for c in criteria}, spacing_mm=spacing)
    evaluation = evaluate(criteria, measurements, present_structures={s.canonical for s in submitted})
    reason = (
        "; ".join(evaluation.reasons)
        if evaluation.reasons
        else f"all {len(criteria)} outlining criteria of {protocol.id} met at the per-protocol level"
    )
    logger.info(
        "simulated %s submission of %s with %s: expected %s",
        provider,
        case.spec.case_id,
        [str(d) for d in deviations],
        evaluation.outcome.value,
    )
    return SimulatedSubmission(
        directory=out,
        provider=provider,
        case_id=case.spec.case_id,
        deviations=deviations,
        expected_outcome=evaluation.outcome,
        expected_reason=reason,
        rtstruct_path=rs_path,
        ct_dir=ct_out,
        seed=seed,
        structure_names={s.name: s.canonical for s in submitted},
        measurements=measurements,
        evaluation=evaluation,
    )


# Plan and dose deviations -----------------------------------------------------------------------------------------


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


_MODEL_KINDS: Final = (PlanDeviationKind.UNDER_COVERAGE, PlanDeviationKind.POOR_CONFORMITY)
"""Planning deviations that change the dose-model options."""

HOT_SPOT_SIGMA_FRACTION: Final = 0.25
"""Gaussian sigma of the ``hot_spot`` peak as a fraction of the PTV's equivalent-sphere radius."""


def _add_hot_spot(model: ModelDose, percent: float) -> ModelDose:
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
        kind = _kind(PlanDeviationKind, self.kind, "unknown plan deviation kind")
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
        kind = _kind(PlanDeviationKind, parts[0], f"plan deviation {text!r}: unknown kind")
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


@dataclass(frozen=True)
class ExpectedEffect:
    """What a deviation should do to one measurement.

    Attributes:
        deviation: the deviation (as text).
        structure: the structure measured (``None`` for whole-grid measurements).
        metric: what is measured, e.g. ``"coverage_percent"``, ``"d95_gy"``, ``"dmax_percent"``, ``"r50"``,
            ``"dmax_gy"``, ``"dose_centroid_shift_mm"``, ``"difference_sd_gy"``.
        reference: the measurement on the dose before this deviation.
        expected: the value the deviation should give (from its definition, not from the modified dose).
        tolerance: how far a correct measurement may lie from ``expected`` (absolute, same unit).
        measured: the oracle's measurement on the modelled dose grid (no DICOM round trip).
        basis: how ``expected`` and ``tolerance`` were derived.
    """

    deviation: str
    structure: str | None
    metric: str
    reference: float
    expected: float
    tolerance: float
    measured: float
    basis: str

    @property
    def met(self) -> bool:
        """True when the oracle's measurement lies within ``tolerance`` of ``expected``."""
        return abs(self.measured - self.expected) <= self.tolerance


def _target_regions(model: ModelDose) -> dict[str, NDArray[np.bool_]]:
    """Voxels nearer to each target than to any other (all voxels for a single target)."""
    names = [rx.structure for rx in model.prescriptions]
    if len(names) == 1:
        return {names[0]: np.ones(model.dose.shape, dtype=bool)}
    distances = np.stack(
        [ndimage.distance_transform_edt(~model.masks[n], sampling=model.dose.spacing_mm) for n in names]
    )
    nearest = np.argmin(distances, axis=0)
    return {n: nearest == i for i, n in enumerate(names)}


def target_measurements(model: ModelDose, values_gy: NDArray[np.float64]) -> dict[tuple[str, str], float]:
    """Voxel-based plan measurements of every target on the model's dose grid.

    Per PTV: ``coverage_percent`` (% of PTV voxels >= prescription), ``d95_gy`` (5th percentile of the PTV voxel
    doses), ``dmax_percent`` (maximum PTV voxel dose, % of prescription) and ``r50`` (voxels >= 50% of the
    prescription in the target's own region, see :func:`_target_regions`, over PTV voxels).
    """
    out: dict[tuple[str, str], float] = {}
    for rx in model.prescriptions:
        ptv = model.masks[rx.structure]
        region = _target_regions(model)[rx.structure] if len(model.prescriptions) > 1 else None
        doses = values_gy[ptv]
        out[(rx.structure, "coverage_percent")] = 100.0 * float(np.count_nonzero(doses >= rx.dose_gy)) / doses.size
        out[(rx.structure, "d95_gy")] = float(np.quantile(doses, 0.05))
        out[(rx.structure, "dmax_percent")] = 100.0 * float(doses.max()) / rx.dose_gy
        half = values_gy >= 0.5 * rx.dose_gy
        if region is not None:
            half &= region
        out[(rx.structure, "r50")] = float(np.count_nonzero(half)) / doses.size
    return out


def dose_centroid_mm(values_gy: NDArray[np.float64], grid: DoseGrid) -> tuple[float, float, float]:
    """Centroid (z, y, x) mm of ``max(dose - 50% of its maximum, 0)``: the high-dose cloud's centre, which moves
    exactly with a translation of the dose (away from the grid edges)."""
    weights = np.clip(values_gy - 0.5 * float(values_gy.max()), 0.0, None)
    total = float(weights.sum())
    return (
        float((weights.sum(axis=(1, 2)) * grid.z_mm).sum() / total),
        float((weights.sum(axis=(0, 2)) * grid.y_mm).sum() / total),
        float((weights.sum(axis=(0, 1)) * grid.x_mm).sum() / total),
    )


def _apply_dose_deviation(
    deviation: PlanDeviation, values: NDArray[np.float64], model: ModelDose, rng: np.random.Generator
) -> NDArray[np.float64]:
    kind = deviation.kind
    if kind is PlanDeviationKind.DOSE_SCALE_PERCENT:
        assert isinstance(deviation.value, float)
        return values * (1.0 + deviation.value / 100.0)
    if kind is PlanDeviationKind.DOSE_SHIFT_MM:
        assert isinstance(deviation.value, tuple)
        shift_vox = [v / s for v, s in zip(deviation.value, model.dose.spacing_mm, strict=True)]
        shifted: NDArray[np.float64] = ndimage.shift(values, shift_vox, order=1, mode="nearest")
        return shifted
    assert isinstance(deviation.value, float)
    sd_gy = deviation.value / 100.0 * float(values.max())
    noisy = values + rng.normal(0.0, sd_gy, size=values.shape)
    if "Body" in model.masks:
        noisy = np.where(model.masks["Body"], noisy, values)
    return np.clip(noisy, 0.0, None)


# Tolerances of the expected effects (see each use).
COVERAGE_TOLERANCE_PERCENT: Final = 1.0
"""Coverage is tuned by bisection on the dose grid itself, so it lands within one grid shell's share of a
percent; 1 percentage point also absorbs the tilt's discreteness on small targets."""

R50_RELATIVE_TOLERANCE: Final = 0.05
"""R50% is set by a voxel quantile of the distance map; the bath and tilt move the 50% isodose by a fraction of a
voxel, a few % of the volume on small targets."""


def _expected_effects(
    deviation: PlanDeviation,
    before: ModelDose,
    after: ModelDose,
    reference_r50: dict[str, float],
) -> list[ExpectedEffect]:
    text = str(deviation)
    kind = deviation.kind
    m0 = target_measurements(before, before.dose.values_gy)
    m1 = target_measurements(after, after.dose.values_gy)
    effects: list[ExpectedEffect] = []
    for rx in before.prescriptions:
        s = rx.structure
        if kind is PlanDeviationKind.UNDER_COVERAGE:
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "coverage_percent",
                    m0[(s, "coverage_percent")],
                    deviation.amount,
                    COVERAGE_TOLERANCE_PERCENT,
                    m1[(s, "coverage_percent")],
                    "coverage set by the dose model",
                )
            )
        elif kind is PlanDeviationKind.HOT_SPOT:
            value = max(deviation.amount, m0[(s, "dmax_percent")])
            # The peak sits exactly on a PTV voxel centre, so the maximum is the requested value (or the
            # original maximum if that was higher); the tolerance covers floating-point round-off only.
            tol = 1e-6 * value
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "dmax_percent",
                    m0[(s, "dmax_percent")],
                    value,
                    tol,
                    m1[(s, "dmax_percent")],
                    "Gaussian peak of the requested height on a PTV voxel",
                )
            )
        elif kind is PlanDeviationKind.POOR_CONFORMITY:
            expected = deviation.amount * reference_r50[s]
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "r50",
                    m0[(s, "r50")],
                    expected,
                    R50_RELATIVE_TOLERANCE * expected,
                    m1[(s, "r50")],
                    "R50% target of the dose model times the factor",
                )
            )
        elif kind is PlanDeviationKind.DOSE_SCALE_PERCENT:
            factor = 1.0 + deviation.amount / 100.0
            ref = m0[(s, "d95_gy")]
            # A uniform scaling scales every voxel dose, hence the D95 quantile, exactly: 1e-6 relative covers
            # floating-point round-off only.
            effects.append(
                ExpectedEffect(
                    text,
                    s,
                    "d95_gy",
                    ref,
                    ref * factor,
                    1e-6 * ref,
                    m1[(s, "d95_gy")],
                    "uniform scaling of every voxel dose",
                )
            )
    if kind is PlanDeviationKind.ORGAN_OVERDOSE:
        organ = deviation.structure
        assert organ is not None
        ref = float(before.dose.values_gy[before.masks[organ]].max())
        measured = float(after.dose.values_gy[after.masks[organ]].max())
        expected = max(ref, deviation.amount)
        # The raised dose is exactly the requested value inside the organ part; the tolerance covers float noise.
        effects.append(
            ExpectedEffect(
                text,
                organ,
                "dmax_gy",
                ref,
                expected,
                1e-6 * expected,
                measured,
                "organ part nearest the targets raised to the requested dose",
            )
        )
    elif kind is PlanDeviationKind.DOSE_SHIFT_MM:
        assert isinstance(deviation.value, tuple)
        c0 = dose_centroid_mm(before.dose.values_gy, before.dose)
        c1 = dose_centroid_mm(after.dose.values_gy, after.dose)
        moved = float(np.linalg.norm(np.subtract(c1, c0)))
        # Linear interpolation blurs the cloud slightly and clips its weights at 50% of a (slightly lower)
        # maximum: the centroid follows the shift to within about a tenth of a voxel.
        tol = 0.1 * max(before.dose.spacing_mm) + 0.05
        effects.append(
            ExpectedEffect(
                text,
                None,
                "dose_centroid_shift_mm",
                0.0,
                float(np.linalg.norm(deviation.value)),
                tol,
                moved,
                "translation of the dose cloud",
            )
        )
    elif kind is PlanDeviationKind.DOSE_NOISE_PERCENT:
        high = before.dose.values_gy >= 0.1 * float(before.dose.values_gy.max())
        difference = (after.dose.values_gy - before.dose.values_gy)[high]
        expected = deviation.amount / 100.0 * float(before.dose.values_gy.max())
        # Sample standard deviation over >= 1000 voxels: its relative standard error is below 3%; 10% is safe.
        effects.append(
            ExpectedEffect(
                text,
                None,
                "difference_sd_gy",
                0.0,
                expected,
                0.1 * expected,
                float(difference.std()),
                "Gaussian noise of the given standard deviation (above 10% of the maximum dose)",
            )
        )
    return effects


def apply_plan_deviations(
    case_plan: PlanSpec, phantom: Phantom, deviations: Sequence[PlanDeviation], *, rng: np.random.Generator
) -> tuple[ModelDose, ModelDose, tuple[ExpectedEffect, ...]]:
    """Model the reference dose of ``case_plan`` and the dose with ``deviations``.

    Planning deviations are applied first: those changing the dose-model options (under-coverage, poor
    conformity), then the local ones (hot spot, organ overdose), each group in the order given; dose deviations
    then act on the dose values in the order given. Each deviation's expected effects compare the dose after it
    with the dose just before it.

    Returns:
        (reference model, deviated model, expected effects).
    """
    reference = model_dose(case_plan, phantom)
    reference_r50 = {name: profile.target_r50 for name, profile in reference.profiles.items()}
    model_devs = [d for d in deviations if d.kind in _MODEL_KINDS]
    local_kinds = (PlanDeviationKind.HOT_SPOT, PlanDeviationKind.ORGAN_OVERDOSE)
    overdoses = [d for d in deviations if d.kind in local_kinds]
    dose_devs = [d for d in deviations if d.kind not in _MODEL_KINDS and d.kind not in local_kinds]
    for dev in overdoses:
        if dev.structure is not None and dev.structure not in phantom.masks:
            raise SimulationError(f"{dev}: structure {dev.structure!r} is not in the case ({', '.join(phantom.masks)})")
    effects: list[ExpectedEffect] = []
    current = reference
    options = case_plan.options
    for dev in model_devs:
        value = dev.amount
        if dev.kind is PlanDeviationKind.UNDER_COVERAGE:
            options = replace(options, coverage_percent=value)
        else:
            options = replace(options, r50_fraction_of_limit=options.r50_fraction_of_limit * value)
        following = model_dose(case_plan, phantom, options=options)
        effects.extend(_expected_effects(dev, current, following, reference_r50))
        current = following
    for dev in overdoses:
        if dev.kind is PlanDeviationKind.HOT_SPOT:
            following = _add_hot_spot(current, dev.amount)
        else:
            following = add_organ_overdose(current, str(dev.structure), dev.amount)
        effects.extend(_expected_effects(dev, current, following, reference_r50))
        current = following
    for dev in dose_devs:
        following = current.with_values(_apply_dose_deviation(dev, current.dose.values_gy, current, rng))
        effects.extend(_expected_effects(dev, current, following, reference_r50))
        current = following
    return reference, current, tuple(effects)


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


PlanCheck = Literal["planning", "tps_check"]
"""What a plan submission is scored as: a planning benchmark (the protocol's planning criteria) or a TPS check
(gamma of the submitted dose against the reference dose)."""

_DOSE_KINDS: Final = (
    PlanDeviationKind.DOSE_SCALE_PERCENT,
    PlanDeviationKind.DOSE_SHIFT_MM,
    PlanDeviationKind.DOSE_NOISE_PERCENT,
)
"""TPS-check deviations (applied to the dose values)."""


def plan_check_of(deviations: Sequence[PlanDeviation]) -> PlanCheck:
    """``"tps_check"`` when any deviation is a TPS-check dose deviation, else ``"planning"``."""
    return "tps_check" if any(d.kind in _DOSE_KINDS for d in deviations) else "planning"


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


@dataclass(frozen=True, eq=False)
class SimulatedPlanSubmission:
    """A simulated centre plan submission (planning benchmark or TPS check) and its expected effects.

    Attributes:
        directory: submission directory: ``CT/`` and ``RTSTRUCT.dcm`` copied from the case, and the centre's
            ``RTPLAN_<provider>.dcm`` and ``RTDOSE_<provider>.dcm``.
        provider, case_id, seed: as given.
        deviations: the deviations applied.
        rtplan_path, rtdose_path: the centre's plan and dose.
        reference: the reference dose model; ``submitted``: the centre's dose model (as written).
        expected_effects: what each deviation should do to the measurements.
        expected_gamma_outcome: the gamma outcome under the protocol's gamma section when it follows from the
            deviations alone (see :func:`expected_gamma_outcome`), else ``None``.
        expected_gamma_reason: why (or why no outcome is predicted).
        check: what the submission is scored as (see :data:`PlanCheck`).
        expected_outcome: the oracle's outcome under the case's protocol (see :func:`plan_oracle`).
        expected_reason: the oracle's reasons joined with ``"; "`` (or a per-protocol statement).
        measurements: the oracle's measurements, ``(structure, metric) -> value``.
        evaluation: the oracle's full protocol evaluation.
        borderline: criterion ids the oracle found within the RTDOSE storage tolerance of a level (see
            :attr:`PlanOracle.borderline`).
    """

    directory: Path
    provider: str
    case_id: str
    seed: int
    deviations: tuple[PlanDeviation, ...]
    rtplan_path: Path
    rtdose_path: Path
    reference: ModelDose
    submitted: ModelDose
    expected_effects: tuple[ExpectedEffect, ...]
    expected_gamma_outcome: OutcomeLevel | None = None
    expected_gamma_reason: str = ""
    check: PlanCheck = "planning"
    expected_outcome: OutcomeLevel | None = None
    expected_reason: str = ""
    measurements: dict[tuple[str, str], float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    borderline: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            "directory": str(self.directory),
            "provider": self.provider,
            "case_id": self.case_id,
            "seed": self.seed,
            "deviations": [str(d) for d in self.deviations],
            "rtplan_path": str(self.rtplan_path),
            "rtdose_path": str(self.rtdose_path),
            "expected_gamma_outcome": self.expected_gamma_outcome.value if self.expected_gamma_outcome else None,
            "expected_gamma_reason": self.expected_gamma_reason,
            "check": self.check,
            "expected_outcome": self.expected_outcome.value if self.expected_outcome else None,
            "expected_reason": self.expected_reason,
            "borderline": list(self.borderline),
            "measurements": [
                {"structure": s, "metric": m, "value": v} for (s, m), v in sorted(self.measurements.items())
            ],
            "expected_effects": [
                {
                    "deviation": e.deviation,
                    "structure": e.structure,
                    "metric": e.metric,
                    "reference": e.reference,
                    "expected": e.expected,
                    "tolerance": e.tolerance,
                    "measured": e.measured,
                    "basis": e.basis,
                }
                for e in self.expected_effects
            ],
        }


def simulate_plan_submission(
    case: BuiltCase,
    *,
    provider: str,
    deviations: Sequence[PlanDeviation],
    seed: int,
    out_dir: Path | str,
    overwrite: bool = False,
    check: PlanCheck | None = None,
) -> SimulatedPlanSubmission:
    """Write a simulated plan submission of ``provider`` for the planning case ``case`` into ``out_dir``.

    The centre plans on the case's CT and reference structures (copied byte for byte), so its RTPLAN references
    the case's RTSTRUCT; its RTPLAN and RTDOSE get new UIDs seeded by case, provider and ``seed``, and the dose
    is the reference dose model with ``deviations`` applied (see :func:`apply_plan_deviations`).

    The oracle outcome (``expected_outcome``) scores the deviated dose on the modelled grid with the case's
    protocol (see :func:`plan_oracle`): as a TPS check (gamma against the reference dose) when ``check`` is
    ``"tps_check"``, as a planning benchmark when it is ``"planning"``; by default a TPS check when any
    deviation is a dose deviation (``dose_scale_percent``, ``dose_shift_mm``, ``dose_noise_percent``), else a
    planning benchmark.

    Raises:
        SimulationError: the case has no plan, bad deviation, or ``out_dir`` holds other files and ``overwrite``
            is false.
    """
    if case.spec.plan is None:
        raise SimulationError(f"case {case.spec.case_id!r} is not a planning case (no reference plan)")
    if not provider.strip():
        raise SimulationError(f"provider must be non-empty, got {provider!r}")
    out = _prepare_output_dir(
        Path(out_dir), overwrite=overwrite, ours=re.compile(r"^(RTSTRUCT\.dcm|RTPLAN_.+\.dcm|RTDOSE_.+\.dcm)$")
    )
    deviations = tuple(deviations)
    rng = np.random.default_rng(seed)
    phantom = case.phantom()
    reference, submitted, effects = apply_plan_deviations(case.spec.plan, phantom, deviations, rng=rng)

    ct_out = out / CT_DIR_NAME
    ct_out.mkdir(parents=True, exist_ok=True)
    for path in sorted(case.ct_dir.glob("*.dcm")):
        shutil.copyfile(path, ct_out / path.name)
    rs_path = out / "RTSTRUCT.dcm"
    shutil.copyfile(case.rtstruct_path, rs_path)
    ct_info = read_ct_series_info(ct_out)
    part = _safe_file_part(provider)
    staging = out / ".staging"
    plan_tmp, dose_tmp = write_plan_and_dose(
        case.spec.plan,
        phantom,
        submitted,
        ct_info,
        rs_path,
        staging,
        uid_seed=f"rtqa-plan-submission/{case.spec.case_id}/{case.spec.version}/{provider}/{seed}",
        label=provider[:16],
        plan_name=f"{case.spec.case_id} {provider}",
        manufacturer=f"{provider} planning system"[:64],
    )
    plan_path = plan_tmp.replace(out / f"RTPLAN_{part}.dcm")
    dose_path = dose_tmp.replace(out / f"RTDOSE_{part}.dcm")
    staging.rmdir()
    protocol = load_protocol(case.spec.protocol_id)
    gamma_outcome, gamma_reason = expected_gamma_outcome(deviations, protocol.gamma)
    chosen: PlanCheck = check or plan_check_of(deviations)
    oracle = plan_oracle(protocol, case.spec.plan, reference, submitted, check=chosen)
    logger.info(
        "simulated %s plan submission of %s with %s: expected %s (%s)",
        provider,
        case.spec.case_id,
        [str(d) for d in deviations],
        oracle.outcome.value,
        chosen,
    )
    return SimulatedPlanSubmission(
        directory=out,
        provider=provider,
        case_id=case.spec.case_id,
        seed=seed,
        deviations=deviations,
        rtplan_path=plan_path,
        rtdose_path=dose_path,
        reference=reference,
        submitted=submitted,
        expected_effects=effects,
        expected_gamma_outcome=gamma_outcome,
        expected_gamma_reason=gamma_reason,
        check=chosen,
        expected_outcome=oracle.outcome,
        expected_reason=oracle.reason,
        measurements=oracle.measurements,
        evaluation=oracle.evaluation,
        borderline=oracle.borderline,
    )
