"""The data behind a submission report's figures, computed from the stored submission files and the case's reference
files with the scorer's own functions (:mod:`qa_checks`); no plotting and nothing about the web.

By stage:

* outlining benchmark: for every scored structure, the reference CT slice through the reference structure's
  centroid with the reference and submitted contours drawn on that plane (:class:`ContourSlice`);
* planning benchmark: the DVH of every structure a criterion judges, from the centre's dose on the centre's
  structures and from the reference dose on the reference structures (:class:`DvhCurve`); a composite (``Lungs``)
  is the union of its parts' masks on the dose grid, as the scorer builds it;
* complex treatment dosimetry check (TPS check): the DVHs of the protocol's structures (reference structures) in
  the centre's dose and in the reference dose, the gamma histogram the scorer stored, and the gamma map recomputed
  with the stored parameters on the axial slice through the protocol's target (:class:`GammaSlice`).

DVHs are :func:`qa_checks.dvh.compute_dvh` with its default supersampling on the dose grid cropped around the
structure, as the planning scorer computes them, so a curve agrees with the stored D_x and V_x values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.errors import InvalidDicomError
from sqlmodel import Session, col, select

from benchmarks.cases import RTDOSE_NAME, RTSTRUCT_NAME, reference_files
from benchmarks.protocols import GAMMA_METRIC
from flows._store import submission_files
from flows.protocol_store import resolve_protocol
from flows.steps import load_submission_and_case
from models.enums import QAStage
from models.tables import DoseResult, PlanResult, StructureResult
from qa_checks.dicom_io import LoadedSubmission, load_submission
from qa_checks.dvh import compute_dvh
from qa_checks.figure_data import Window, contours_on_plane, image_extent_mm, slice_through, window_around
from qa_checks.gamma import gamma_3d
from qa_checks.geometry import DoseGrid
from qa_checks.rasterise import rasterise
from qa_checks.structures import Structure, StructureSet
from qa_checks.target_geometry import crop_dose

__all__ = [
    "ContourSlice",
    "DvhCurve",
    "FigureData",
    "GammaSlice",
    "contour_slice",
    "dvh_curve",
    "figure_data",
    "gamma_slice",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

NOT_DVH_STRUCTURES: Final = frozenset({"Body", "External"})
"""Structures left out of the TPS check's DVHs: the whole body says nothing about the recalculation."""

WINDOW_MARGIN_MM: Final = 15.0
"""Room shown around the contours of a structure's slice, mm."""

WINDOW_MIN_MM: Final = 60.0
"""Smallest width and height of a contour slice's view, mm (a small target still shows its surroundings)."""


@dataclass(frozen=True, eq=False)
class DvhCurve:
    """A cumulative DVH: ``volume_percent[i]`` of the structure receives at least ``dose_gy[i]``.

    ``source`` is ``"submitted"`` (the centre's dose, and for a plan the centre's structures) or ``"reference"``.
    """

    structure: str
    source: str
    dose_gy: FloatArray
    volume_percent: FloatArray
    volume_cc: float


@dataclass(frozen=True, eq=False)
class ContourSlice:
    """One structure on the reference CT slice through its reference centroid.

    Attributes:
        ct_hu: the slice, (y, x), Hounsfield units.
        extent: ``(left, right, bottom, top)`` mm of the slice (:func:`qa_checks.figure_data.image_extent_mm`).
        reference, submitted: the contours on the slice's plane, (N, 2) arrays of (x, y) mm.
        window: the part of the slice to show, around both sets of contours.
    """

    structure: str
    submitted_name: str | None
    slice_index: int
    z_mm: float
    ct_hu: npt.NDArray[np.float32]
    extent: tuple[float, float, float, float]
    reference: tuple[FloatArray, ...]
    submitted: tuple[FloatArray, ...]
    window: Window | None


@dataclass(frozen=True, eq=False)
class GammaSlice:
    """The gamma map on one axial slice of the reference dose grid.

    Attributes:
        gamma: (y, x) gamma values, NaN where not evaluated (below the low-dose threshold or beyond the centre's
            grid).
        reference_dose_gy: the reference dose on the same slice, for isodose lines.
        x_mm, y_mm: the slice's pixel-centre coordinates (columns, rows), mm.
        target_paths: the target's reference contours on the slice's plane, (x, y) mm.
        pass_rate_percent, points: the recomputed 3D result's pass rate over reached points, and how many points it
            has: equal to the stored values when the scorer's parameters are reused.
    """

    target: str | None
    slice_index: int
    z_mm: float
    gamma: npt.NDArray[np.float32]
    reference_dose_gy: FloatArray
    x_mm: FloatArray
    y_mm: FloatArray
    extent: tuple[float, float, float, float]
    target_paths: tuple[FloatArray, ...]
    pass_rate_percent: float
    points: int
    parameters: dict[str, Any]


@dataclass(frozen=True, eq=False)
class FigureData:
    """Everything the stage's figures draw, plus what could not be drawn and how long each part took (seconds)."""

    stage: QAStage
    dvhs: tuple[DvhCurve, ...] = ()
    contours: tuple[ContourSlice, ...] = ()
    gamma: GammaSlice | None = None
    histogram: dict[str, int] | None = None
    problems: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)


def dvh_curve(
    dose: DoseGrid,
    region: Structure | npt.NDArray[np.bool_],
    *,
    structure: str,
    source: str,
    ct_slice_thickness_mm: float | None = None,
) -> DvhCurve:
    """The cumulative DVH (in % of the structure volume) of ``region`` (a structure, or a mask on ``dose``'s
    grid) in ``dose``, computed as the planning scorer computes it.

    Raises:
        ValueError: the region has no volume on the dose grid (and :func:`qa_checks.dvh.compute_dvh`'s errors).
    """
    cropped, box = crop_dose(dose, region)
    target = region if isinstance(region, Structure) else region[box]
    kwargs: dict[str, Any] = {}
    if ct_slice_thickness_mm is not None:
        kwargs["ct_slice_thickness_mm"] = ct_slice_thickness_mm
    dvh = compute_dvh(cropped, target, **kwargs)
    return DvhCurve(structure, source, dvh.dose_bins_gy, dvh.cumulative_volume_percent, dvh.volume_cc)


def contour_slice(
    reference: Structure, submitted: Structure | None, ct: Any, *, structure: str, submitted_name: str | None
) -> ContourSlice | None:
    """``structure`` on the CT slice through the reference's centroid (None when the reference has no voxel on
    the CT). Contours within half a slice spacing of the slice's plane are drawn."""
    mask = rasterise(reference, ct)
    k = slice_through(mask, ct)
    if k is None:
        return None
    z = float(ct.z_mm[k])
    half = abs(float(ct.spacing_mm[0])) / 2
    ref_paths = contours_on_plane(reference, z, tolerance_mm=half)
    sub_paths = contours_on_plane(submitted, z, tolerance_mm=half) if submitted is not None else ()
    return ContourSlice(
        structure=structure,
        submitted_name=submitted_name,
        slice_index=k,
        z_mm=z,
        ct_hu=np.asarray(ct.values[k], dtype=np.float32),
        extent=image_extent_mm(ct.x_mm, ct.y_mm),
        reference=ref_paths,
        submitted=sub_paths,
        window=window_around([*ref_paths, *sub_paths], margin_mm=WINDOW_MARGIN_MM, min_size_mm=WINDOW_MIN_MM),
    )


def gamma_slice(
    reference: DoseGrid, evaluated: DoseGrid, parameters: dict[str, Any], *, target: Structure | None
) -> GammaSlice:
    """Gamma of ``evaluated`` against ``reference`` with the stored ``parameters`` (a ``DoseResult``'s: dose
    criterion, DTA, normalisation and its dose, low-dose threshold, search step and distance, cap), cut on the axial
    slice through ``target``'s centroid on the reference grid (the slice of the maximum reference dose without a
    target)."""
    result = gamma_3d(
        reference,
        evaluated,
        dose_percent=float(parameters["dose_percent"]),
        distance_mm=float(parameters["distance_mm"]),
        lower_cutoff_percent=float(parameters["lower_cutoff_percent"]),
        local=parameters.get("normalisation") == "local",
        normalisation_gy=float(parameters["normalisation_gy"]),
        search_step_mm=float(parameters["search_step_mm"]),
        max_search_distance_mm=float(parameters["max_search_distance_mm"]),
        max_gamma=None if parameters.get("max_gamma") is None else float(parameters["max_gamma"]),
    )
    k = slice_through(rasterise(target, reference), reference) if target is not None else None
    if k is None:
        k = int(np.unravel_index(int(np.argmax(reference.values_gy)), reference.shape)[0])
    z = float(reference.z_mm[k])
    paths = contours_on_plane(target, z, tolerance_mm=abs(reference.spacing_mm[0]) / 2) if target is not None else ()
    return GammaSlice(
        target=target.name if target is not None else None,
        slice_index=k,
        z_mm=z,
        gamma=np.asarray(result.gamma[k], dtype=np.float32),
        reference_dose_gy=np.asarray(reference.values_gy[k], dtype=np.float64),
        x_mm=np.asarray(reference.x_mm, dtype=np.float64),
        y_mm=np.asarray(reference.y_mm, dtype=np.float64),
        extent=image_extent_mm(reference.x_mm, reference.y_mm),
        target_paths=paths,
        pass_rate_percent=result.pass_rate_percent,
        points=result.n_evaluated,
        parameters=result.parameters.as_dict(),
    )


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = round(time.perf_counter() - start, 3)


def _reference(case_path: str, *names: str) -> LoadedSubmission:
    """The case's reference files, only ``names`` (file names) when given, read as a submission."""
    files = reference_files(Path(case_path))
    if names:
        files = [p for p in files if p.name in names]
    return load_submission(files)


def _submitted_without_ct(storage: str, *, sum_beams: bool) -> tuple[LoadedSubmission, float | None]:
    """The stored submission's RT objects, read without its CT series (the reference CT is the same one, and its
    pixels are the slow part), and the CT's slice spacing (mm) from the slices' headers alone."""
    rt_files: list[Path] = []
    z_mm: list[float] = []
    for path in submission_files(Path(storage)):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "ImagePositionPatient"])
        except InvalidDicomError:
            continue  # not read by the scorer either
        if str(header.get("Modality", "")).upper() == "CT":
            position = header.get("ImagePositionPatient")
            if position is not None and len(position) == 3:
                z_mm.append(float(position[2]))
        else:
            rt_files.append(path)
    planes = np.unique(np.round(z_mm, 4))
    spacing = float(np.median(np.diff(planes))) if planes.size > 1 else None
    return load_submission(rt_files, sum_beams=sum_beams), spacing


def _outlining(session: Session, submission_id: int, storage: str, case_path: str, out: dict[str, Any]) -> None:
    timings = out["timings_s"]
    reference = _timed(timings, "read reference", lambda: _reference(case_path))
    submitted, _ = _timed(timings, "read submission", lambda: _submitted_without_ct(storage, sum_beams=False))
    assert reference.structure_set is not None and reference.ct is not None
    rows = session.exec(
        select(StructureResult).where(StructureResult.submission_id == submission_id).order_by(col(StructureResult.id))
    ).all()
    names = dict.fromkeys((r.structure, r.submitted_name) for r in rows)
    slices, problems = [], []
    start = time.perf_counter()
    for structure, submitted_name in names:
        ref = reference.structure_set.get(structure)
        sub = submitted.structure_set.get(submitted_name) if submitted.structure_set and submitted_name else None
        cut = contour_slice(ref, sub, reference.ct, structure=structure, submitted_name=submitted_name) if ref else None
        if cut is None:
            problems.append(f"{structure}: the reference has no voxel on the CT to cut a slice through")
        else:
            slices.append(cut)
    timings["contours"] = round(time.perf_counter() - start, 3)
    out.update(contours=tuple(slices), problems=tuple(problems))


def _curves(
    pairs: list[tuple[str, Any, Any]], submitted_dose: DoseGrid, reference_dose: DoseGrid, thickness: float | None
) -> tuple[list[DvhCurve], list[str]]:
    curves, problems = [], []
    for structure, sub_region, ref_region in pairs:
        for source, dose, region in (
            ("submitted", submitted_dose, sub_region),
            ("reference", reference_dose, ref_region),
        ):
            if region is None:
                problems.append(f"{structure}: no {source} structure to draw a DVH of")
                continue
            try:
                curves.append(
                    dvh_curve(dose, region, structure=structure, source=source, ct_slice_thickness_mm=thickness)
                )
            except ValueError as err:
                problems.append(f"{structure} ({source}): {err}")
    return curves, problems


def _union(structure_set: StructureSet | None, names: list[str], dose: DoseGrid) -> npt.NDArray[np.bool_] | None:
    parts = [structure_set.get(n) for n in names] if structure_set is not None else []
    if not parts or any(p is None for p in parts):
        return None
    mask = np.zeros(dose.shape, dtype=bool)
    for p in parts:
        assert p is not None
        mask |= rasterise(p, dose)
    return mask


def _planning(session: Session, submission_id: int, storage: str, case_path: str, out: dict[str, Any]) -> None:
    timings = out["timings_s"]
    reference = _timed(timings, "read reference", lambda: _reference(case_path, RTSTRUCT_NAME, RTDOSE_NAME))
    submitted, thickness = _timed(timings, "read submission", lambda: _submitted_without_ct(storage, sum_beams=True))
    assert submitted.dose is not None and reference.dose is not None
    rows = session.exec(
        select(PlanResult).where(PlanResult.submission_id == submission_id).order_by(col(PlanResult.id))
    ).all()
    judged = list(dict.fromkeys(r.structure for r in rows if r.structure and r.parameters.get("criteria")))
    params = {r.structure: r.parameters for r in rows if r.structure and r.metric == "Volume"}
    pairs: list[tuple[str, Any, Any]] = []
    for name in judged:
        p = params.get(name, {})
        if "composite_of" in p:
            sub_region: Any = _union(submitted.structure_set, list(p.get("submitted_names", [])), submitted.dose)
            ref_region: Any = _union(reference.structure_set, list(p["composite_of"]), reference.dose)
        else:
            sub_name = p.get("submitted_name")
            ss = submitted.structure_set
            sub_region = ss.get(str(sub_name)) if ss is not None and sub_name else None
            ref_region = reference.structure_set.get(name) if reference.structure_set is not None else None
        pairs.append((name, sub_region, ref_region))
    curves, problems = _timed(timings, "dvh", lambda: _curves(pairs, submitted.dose, reference.dose, thickness))
    out.update(dvhs=tuple(curves), problems=tuple(problems))


def _dosimetry(
    session: Session, submission_id: int, storage: str, case: Any, data_dir: Path, out: dict[str, Any]
) -> None:
    timings = out["timings_s"]
    reference = _timed(timings, "read reference", lambda: _reference(case.reference_path, RTSTRUCT_NAME, RTDOSE_NAME))
    submitted, _ = _timed(timings, "read submission", lambda: _submitted_without_ct(storage, sum_beams=True))
    assert submitted.dose is not None and reference.dose is not None
    protocol = resolve_protocol(case.protocol_id, case.protocol_version, data_dir=data_dir)
    ss = reference.structure_set
    names = [n for n in protocol.required_structures if n not in NOT_DVH_STRUCTURES and ss is not None and n in ss]
    pairs = [(n, ss.get(n), ss.get(n)) for n in names] if ss is not None else []
    curves, problems = _timed(timings, "dvh", lambda: _curves(pairs, submitted.dose, reference.dose, None))
    rows = {
        r.metric: r for r in session.exec(select(DoseResult).where(DoseResult.submission_id == submission_id)).all()
    }
    histogram = rows["gamma_histogram"].parameters.get("bins") if "gamma_histogram" in rows else None
    gamma = None
    if GAMMA_METRIC in rows:
        target_name = protocol.planning.prescription.target if protocol.planning is not None else None
        target = ss.get(target_name) if ss is not None and target_name else None
        stored = dict(rows[GAMMA_METRIC].parameters)
        gamma = _timed(timings, "gamma", lambda: gamma_slice(reference.dose, submitted.dose, stored, target=target))
    out.update(dvhs=tuple(curves), problems=tuple(problems), gamma=gamma, histogram=histogram)


def figure_data(session: Session, submission_id: int, *, data_dir: Path) -> FigureData:
    """The figure data of submission ``submission_id`` by its case's stage (see the module docstring).

    Raises:
        LookupError: no submission has that id.
        QAChecksError: a stored file can no longer be read (the report says so rather than failing).
    """
    sub, case = load_submission_and_case(session, submission_id)
    out: dict[str, Any] = {"timings_s": {}}
    if case.stage is QAStage.OUTLINING_BENCHMARK:
        _outlining(session, submission_id, sub.storage_path, case.reference_path, out)
    elif case.stage is QAStage.PLANNING_BENCHMARK:
        _planning(session, submission_id, sub.storage_path, case.reference_path, out)
    elif case.stage is QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK:
        _dosimetry(session, submission_id, sub.storage_path, case, data_dir, out)
    logger.info("report figure data of submission %s: %s", submission_id, out["timings_s"])
    return FigureData(stage=case.stage, **out)
