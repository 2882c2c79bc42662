"""The benchmark case library: a deterministic, idempotent builder for the cases of
:mod:`benchmarks.case_catalogue` (specifications and QA stages: :mod:`benchmarks.case_spec`, re-exported here).

A built case is a directory::

    <out_dir>/<case_id>-<version>/
        dicom/CT/CT.0001.dcm ...    reference CT series
        dicom/RTSTRUCT.dcm          reference structure set
        dicom/RTPLAN.dcm            reference plan (planning and dosimetry cases)
        dicom/RTDOSE.dcm            reference dose of that plan (planning and dosimetry cases)
        manifest.json               case metadata, per-file SHA-256 and the content hash

``dicom/`` holds only DICOM files, so it can be read like a submission (``qa_checks.dicom_io.load_submission``).

Everything written is a function of the case id and version (UIDs seeded from them, fixed dates), so two builds
give byte-identical files and the same ``content_sha256``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from benchmarks.case_catalogue import CASES
from benchmarks.case_spec import (
    CASE_STAGES,
    STAGE_DOSIMETRY,
    STAGE_OUTLINING,
    STAGE_PLANNING,
    CaseSpec,
    CaseSpecError,
    PlanSpec,
)
from benchmarks.dicom_writer import (
    CtSeriesInfo,
    PlanTarget,
    read_ct_series_info,
    write_ct_series,
    write_rtdose,
    write_rtplan,
    write_rtstruct,
)
from benchmarks.dose_model import DoseModelOptions, ModelDose, compute_reference_dose
from benchmarks.phantoms import Phantom

__all__ = [
    "CASE_STAGES",
    "STAGE_DOSIMETRY",
    "STAGE_OUTLINING",
    "STAGE_PLANNING",
    "BuiltCase",
    "CaseError",
    "CaseSpec",
    "CaseSpecError",
    "PlanSpec",
    "build_case",
    "build_case_from_spec",
    "content_hash",
    "get_case",
    "list_cases",
    "model_dose",
    "reference_files",
    "write_plan_and_dose",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME: Final = "manifest.json"
DICOM_DIR_NAME: Final = "dicom"
CT_DIR_NAME: Final = "CT"
RTSTRUCT_NAME: Final = "RTSTRUCT.dcm"
RTPLAN_NAME: Final = "RTPLAN.dcm"
RTDOSE_NAME: Final = "RTDOSE.dcm"

ProgressCallback = Callable[[str], None]
"""Called with a short description before each build step (for progress display)."""


class CaseError(ValueError):
    """Unknown case id or an inconsistent built case; the message names the case and the problem."""


@dataclass(frozen=True)
class BuiltCase:
    """A case written to disk.

    Attributes:
        spec: the case specification.
        directory: the case directory.
        dicom_dir: the directory holding only the reference DICOM files (CT series and RT Structure Set).
        ct_dir: directory of the reference CT series.
        rtstruct_path: the reference RT Structure Set.
        content_sha256: SHA-256 over the reference files (see :func:`content_hash`).
        ct: UIDs and geometry of the reference CT series.
        rtplan_path, rtdose_path: the reference RT Plan and RT Dose (planning and dosimetry cases), else ``None``.
    """

    spec: CaseSpec
    directory: Path
    dicom_dir: Path
    ct_dir: Path
    rtstruct_path: Path
    content_sha256: str
    ct: CtSeriesInfo
    rtplan_path: Path | None = None
    rtdose_path: Path | None = None

    @property
    def manifest_path(self) -> Path:
        """Path of ``manifest.json``."""
        return self.directory / MANIFEST_NAME

    def phantom(self) -> Phantom:
        """Rebuild the phantom behind the reference files (reference masks on the CT grid)."""
        return self.spec.builder()


def list_cases() -> list[CaseSpec]:
    """All benchmark cases, sorted by id."""
    return sorted(CASES, key=lambda spec: spec.case_id)


def get_case(case_id: str) -> CaseSpec:
    """Return the case ``case_id``.

    Raises:
        CaseError: unknown id (the message lists the known ids).
    """
    for spec in CASES:
        if spec.case_id == case_id:
            return spec
    known = ", ".join(spec.case_id for spec in list_cases())
    raise CaseError(f"unknown case id {case_id!r}; known cases: {known}")


def reference_files(directory: Path) -> list[Path]:
    """The reference DICOM files of a built case directory (CT slices, the RT Structure Set and, for planning
    and dosimetry cases, the RT Plan and RT Dose), sorted by relative POSIX path; an incomplete directory gives
    the files present."""
    dicom = directory / DICOM_DIR_NAME
    files = sorted((dicom / CT_DIR_NAME).glob("*.dcm"))
    for name in (RTSTRUCT_NAME, RTPLAN_NAME, RTDOSE_NAME):
        if (dicom / name).is_file():
            files.append(dicom / name)
    return sorted(files, key=lambda p: p.relative_to(directory).as_posix())


def content_hash(directory: Path) -> str:
    """SHA-256 over the reference files of a case directory, sorted by relative POSIX path.

    Each file contributes its relative path, a NUL byte, its length as 8 little-endian bytes and its bytes, so
    renaming or moving a file changes the hash. ``manifest.json`` is not included.
    """
    digest = hashlib.sha256()
    for path in reference_files(directory):
        data = path.read_bytes()
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _manifest(spec: CaseSpec, directory: Path, phantom: Phantom, ct: CtSeriesInfo, sha: str) -> dict[str, Any]:
    files = [
        {
            "path": path.relative_to(directory).as_posix(),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size,
        }
        for path in reference_files(directory)
    ]
    structures = [
        {
            "name": name,
            "interpreted_type": phantom.interpreted_types[name],
            "voxels": int(np.count_nonzero(mask)),
            "volume_cc": round(phantom.volume_cc(name), 4),
        }
        for name, mask in phantom.masks.items()
    ]
    manifest: dict[str, Any] = {
        "case_id": spec.case_id,
        "version": spec.version,
        "technique": spec.technique,
        "stage": spec.stage,
        "distributed_files": list(spec.distributed_files),
        "title": spec.title,
        "protocol_id": spec.protocol_id,
        "description": spec.description,
        "patient_id": spec.patient_id,
        "content_sha256": sha,
        "study_instance_uid": ct.study_uid,
        "ct_series_instance_uid": ct.series_uid,
        "frame_of_reference_uid": ct.frame_of_reference_uid,
        "grid": {
            "shape_zyx": list(phantom.shape),
            "spacing_zyx_mm": list(phantom.spacing_mm),
            "first_voxel_centre_xyz_mm": [ct.x0_mm, ct.y0_mm, ct.z_mm[0]],
        },
        "structures": structures,
        "files": files,
    }
    if spec.plan is not None:
        manifest["plan"] = {
            "fractions": spec.plan.fractions,
            "targets": [{"structure": t.structure, "dose_gy": t.dose_gy} for t in spec.plan.targets],
            "dose_grid_subsampling_zyx": list(spec.plan.subsampling),
        }
    return manifest


def _load_existing(spec: CaseSpec, directory: Path) -> BuiltCase | None:
    """Return the built case if ``directory`` holds a complete, unmodified build of ``spec``."""
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("case_id") != spec.case_id or manifest.get("version") != spec.version:
        return None
    expected = [entry.get("path") for entry in manifest.get("files", [])]
    present = [p.relative_to(directory).as_posix() for p in reference_files(directory)]
    if expected != present:
        return None
    sha = content_hash(directory)
    if sha != manifest.get("content_sha256"):
        logger.warning("case %s in %s was modified (hash mismatch); rebuilding", spec.case_id, directory)
        return None
    dicom = directory / DICOM_DIR_NAME
    has_plan = spec.plan is not None
    return BuiltCase(
        spec=spec,
        directory=directory,
        dicom_dir=dicom,
        ct_dir=dicom / CT_DIR_NAME,
        rtstruct_path=dicom / RTSTRUCT_NAME,
        content_sha256=sha,
        ct=read_ct_series_info(dicom / CT_DIR_NAME),
        rtplan_path=dicom / RTPLAN_NAME if has_plan else None,
        rtdose_path=dicom / RTDOSE_NAME if has_plan else None,
    )


def model_dose(plan: PlanSpec, phantom: Phantom, *, options: DoseModelOptions | None = None) -> ModelDose:
    """The analytic reference dose of ``plan`` on ``phantom`` (see :mod:`benchmarks.dose_model`)."""
    return compute_reference_dose(phantom, plan.targets, options=options or plan.options, subsampling=plan.subsampling)


def write_plan_and_dose(
    plan: PlanSpec,
    phantom: Phantom,
    model: ModelDose,
    ct: CtSeriesInfo,
    rtstruct_path: Path,
    out_dir: Path,
    *,
    uid_seed: str,
    label: str = "REFERENCE",
    plan_name: str = "",
    meterset_scale: float = 1.0,
    manufacturer: str = "rtqa",
) -> tuple[Path, Path]:
    """Write ``out_dir/RTPLAN.dcm`` and ``out_dir/RTDOSE.dcm`` for ``plan`` with the dose of ``model``.

    The isocentre is the volume centroid of the targets; the MLC aperture is a circle of the largest target's
    equivalent-sphere radius plus 2 mm. The beams are nominal (realistic attributes for a reader and a reviewer):
    the dose comes from the analytic model, not from the apertures, which for several targets around one
    isocentre do not cover them. Returns (plan path, dose path).
    """
    names = list(phantom.masks)
    targets = [PlanTarget(names.index(t.structure) + 1, t.structure, t.dose_gy) for t in plan.targets]
    union = np.zeros(phantom.shape, dtype=bool)
    for t in plan.targets:
        union |= phantom.masks[t.structure]
    iz, iy, ix = np.nonzero(union)
    iso = (float(phantom.x_mm[ix].mean()), float(phantom.y_mm[iy].mean()), float(phantom.z_mm[iz].mean()))
    radius = max(profile.radius_mm for profile in model.profiles.values()) + 2.0
    plan_path = write_rtplan(
        ct,
        rtstruct_path,
        out_dir / RTPLAN_NAME,
        targets=targets,
        fractions=plan.fractions,
        arcs=plan.arcs,
        isocentre_xyz_mm=(round(iso[0], 1), round(iso[1], 1), round(iso[2], 1)),
        aperture_radius_mm=round(radius, 1),
        label=label,
        plan_name=plan_name,
        machine_name=plan.machine_name,
        meterset_scale=meterset_scale,
        uid_seed=uid_seed,
        manufacturer=manufacturer,
    )
    dose_path = write_rtdose(
        model.dose.values_gy,
        model.dose.z_mm,
        model.dose.y_mm,
        model.dose.x_mm,
        ct,
        plan_path,
        out_dir / RTDOSE_NAME,
        label=label,
        uid_seed=uid_seed,
        manufacturer=manufacturer,
    )
    return plan_path, dose_path


def build_case(case_id: str, out_dir: Path | str, *, progress: ProgressCallback | None = None) -> BuiltCase:
    """Build case ``case_id`` into ``out_dir/<case_id>-<version>/`` (idempotent).

    If the directory already holds an unmodified build (manifest present, file list and content hash match),
    it is returned as is. Otherwise the reference files are (re)written from scratch.

    Args:
        case_id: see :func:`list_cases`.
        out_dir: parent directory (created if missing).
        progress: optional callback receiving a description of each step.

    Raises:
        CaseError: unknown case id.
    """
    return build_case_from_spec(get_case(case_id), out_dir, progress=progress)


def build_case_from_spec(spec: CaseSpec, out_dir: Path | str, *, progress: ProgressCallback | None = None) -> BuiltCase:
    """Build the case described by ``spec`` (registered or not, e.g. a coarse variant for tests) into
    ``out_dir/<case_id>-<version>/``, idempotently; see :func:`build_case`."""
    case_id = spec.case_id
    directory = Path(out_dir) / spec.directory_name
    existing = _load_existing(spec, directory)
    if existing is not None:
        logger.info("case %s already built in %s", case_id, directory)
        return existing

    def step(text: str) -> None:
        logger.info("%s: %s", case_id, text)
        if progress is not None:
            progress(text)

    step("building phantom")
    phantom = spec.builder()
    dicom = directory / DICOM_DIR_NAME
    for stale in (dicom, directory / MANIFEST_NAME):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    directory.mkdir(parents=True, exist_ok=True)

    step(f"writing CT series ({phantom.shape[0]} slices)")
    ct = write_ct_series(
        phantom,
        dicom / CT_DIR_NAME,
        patient_id=spec.patient_id,
        patient_name=spec.patient_name,
        uid_seed=spec.uid_seed,
        body_part_examined=spec.body_part_examined,
        study_id=spec.case_id[:16],
        series_description=f"{spec.case_id} CT"[:64],
    )
    step(f"writing reference RT Structure Set ({len(phantom.masks)} structures)")
    rtstruct = write_rtstruct(
        phantom.masks,
        ct,
        dicom / RTSTRUCT_NAME,
        interpreted_types=phantom.interpreted_types,
        colors=phantom.colors,
        label="REFERENCE",
        structure_set_name=spec.case_id[:64],
        uid_seed=spec.uid_seed,
        series_description="Reference structures",
    )
    rtplan_path = rtdose_path = None
    if spec.plan is not None:
        step(f"modelling the reference dose ({len(spec.plan.targets)} target(s))")
        model = model_dose(spec.plan, phantom)
        step(f"writing reference RT Plan and RT Dose ({model.dose.shape[0]} dose planes)")
        rtplan_path, rtdose_path = write_plan_and_dose(
            spec.plan, phantom, model, ct, rtstruct, dicom, uid_seed=spec.uid_seed, plan_name=spec.case_id
        )
    step("hashing and writing manifest")
    sha = content_hash(directory)
    manifest = _manifest(spec, directory, phantom, ct, sha)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return BuiltCase(
        spec=spec,
        directory=directory,
        dicom_dir=dicom,
        ct_dir=dicom / CT_DIR_NAME,
        rtstruct_path=rtstruct,
        content_sha256=sha,
        ct=ct,
        rtplan_path=rtplan_path,
        rtdose_path=rtdose_path,
    )
