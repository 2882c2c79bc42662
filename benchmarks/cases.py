"""The benchmark case library: case specifications and a deterministic, idempotent builder.

A built case is a directory::

    <out_dir>/<case_id>-<version>/
        dicom/CT/CT.0001.dcm ...    reference CT series
        dicom/RTSTRUCT.dcm          reference structure set
        dicom/RTPLAN.dcm            reference plan (planning cases only)
        dicom/RTDOSE.dcm            reference dose of that plan (planning cases only)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from benchmarks.anatomy import head_phantom, pelvis_phantom, thorax_phantom
from benchmarks.dicom_writer import (
    ArcSpec,
    CtSeriesInfo,
    PlanTarget,
    read_ct_series_info,
    write_ct_series,
    write_rtdose,
    write_rtplan,
    write_rtstruct,
)
from benchmarks.dose_model import (
    DEFAULT_DOSE_SUBSAMPLING,
    DoseModelOptions,
    ModelDose,
    TargetPrescription,
    compute_reference_dose,
)
from benchmarks.phantoms import Phantom, simple_thorax_phantom

__all__ = [
    "STAGE_BENCHMARK_CASE",
    "BuiltCase",
    "CaseError",
    "CaseSpec",
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

STAGE_BENCHMARK_CASE: Final = "benchmark_case"
"""QA stage of outlining and planning benchmark cases (Global Harmonisation Group name, snake case)."""

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
class PlanSpec:
    """The reference plan of a planning case.

    Attributes:
        targets: PTV names and total prescriptions (one (300A,0010) DoseReferenceSequence item each).
        fractions: (300A,0078) NumberOfFractionsPlanned.
        arcs: the VMAT arcs.
        subsampling: CT-to-dose-grid subsampling (z, y, x), see :func:`benchmarks.dose_model.compute_reference_dose`.
        options: dose-model options.
        machine_name: (300A,00B2) TreatmentMachineName.
    """

    targets: tuple[TargetPrescription, ...]
    fractions: int
    arcs: tuple[ArcSpec, ...]
    subsampling: tuple[int, int, int] = DEFAULT_DOSE_SUBSAMPLING
    options: DoseModelOptions = field(default_factory=DoseModelOptions)
    machine_name: str = "TrueBeam1"


@dataclass(frozen=True)
class CaseSpec:
    """A benchmark case.

    Attributes:
        case_id: stable identifier, e.g. ``"lung-sabr-outlining-mini"``.
        version: case version; a new version means new reference files (and a new content hash).
        technique: technique credentialed, e.g. ``"sabr_lung"``.
        stage: QA stage, :data:`STAGE_BENCHMARK_CASE`.
        title: human-readable title.
        protocol_id: id of the protocol file that scores submissions (see :mod:`benchmarks.protocols`).
        builder: returns the phantom (CT and reference masks); must be deterministic.
        patient_id, patient_name: (0010,0020) PatientID and (0010,0010) PatientName of the case.
        body_part_examined: (0018,0015) BodyPartExamined of the CT, e.g. ``"CHEST"``.
        description: what the case exercises.
        plan: the reference plan (RTPLAN and RTDOSE are written) for planning cases, ``None`` otherwise.
    """

    case_id: str
    version: str
    technique: str
    stage: str
    title: str
    protocol_id: str
    builder: Callable[[], Phantom]
    patient_id: str
    patient_name: str
    body_part_examined: str
    description: str = ""
    plan: PlanSpec | None = None

    @property
    def uid_seed(self) -> str:
        """Seed for every UID of the reference files."""
        return f"rtqa-case/{self.case_id}/{self.version}"

    @property
    def directory_name(self) -> str:
        """Name of the built case directory."""
        return f"{self.case_id}-{self.version}"


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
        rtplan_path, rtdose_path: the reference RT Plan and RT Dose (planning cases), else ``None``.
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


def _mini_lung_phantom() -> Phantom:
    return simple_thorax_phantom(spacing_mm=(3.0, 2.0, 2.0))


def _lung_planning_phantom() -> Phantom:
    return thorax_phantom()


def _prostate_planning_phantom() -> Phantom:
    return pelvis_phantom()


def _srs_planning_phantom() -> Phantom:
    return head_phantom()


_LUNG_ARCS: Final = (
    ArcSpec("Arc1 CW", 181.0, 10.0, "CW", collimator_deg=10.0),
    ArcSpec("Arc2 CC", 10.0, 181.0, "CC", collimator_deg=350.0),
)
"""Two partial arcs on the patient's right (gantry 181 -> 10 via 270) for a right-lung tumour."""

_FULL_ARCS: Final = (
    ArcSpec("Arc1 CW", 181.0, 179.0, "CW", collimator_deg=30.0),
    ArcSpec("Arc2 CC", 179.0, 181.0, "CC", collimator_deg=330.0),
)
"""Two full coplanar arcs."""

_SRS_ARCS: Final = (
    ArcSpec("Arc1 T0", 181.0, 179.0, "CW", couch_deg=0.0, collimator_deg=10.0),
    ArcSpec("Arc2 T45", 0.0, 179.0, "CW", couch_deg=45.0, collimator_deg=10.0),
    ArcSpec("Arc3 T315", 181.0, 0.0, "CW", couch_deg=315.0, collimator_deg=10.0),
)
"""A coplanar full arc and two non-coplanar half arcs (couch 45 and 315 degrees)."""

_CASES: Final[tuple[CaseSpec, ...]] = (
    CaseSpec(
        case_id="lung-sabr-outlining-mini",
        version="1.0",
        technique="sabr_lung",
        stage=STAGE_BENCHMARK_CASE,
        title="Lung SABR outlining benchmark (mini synthetic thorax)",
        protocol_id="uk-lung-sabr",
        builder=_mini_lung_phantom,
        patient_id="RTQA-LUNG-MINI",
        patient_name="Benchmark^LungSABR^Mini",
        body_part_examined="CHEST",
        description=(
            "Synthetic thorax (3 x 2 x 2 mm voxels) with a 2 cm GTV in the right lung, a 5 mm PTV margin, both "
            "lungs, heart, spinal cord and body; for testing the outlining pipeline end to end."
        ),
    ),
    CaseSpec(
        case_id="lung-sabr-planning",
        version="1.0",
        technique="sabr_lung",
        stage=STAGE_BENCHMARK_CASE,
        title="Lung SABR planning benchmark (54 Gy in 3 fractions)",
        protocol_id="uk-lung-sabr",
        builder=_lung_planning_phantom,
        patient_id="RTQA-LUNG-PLAN",
        patient_name="Benchmark^LungSABR^Planning",
        body_part_examined="CHEST",
        description=(
            "Digital adult thorax (2 x 1 x 1 mm voxels) with a 2.4 cm peripheral right-upper-lobe tumour, 5 mm "
            "PTV margin, lungs, heart, oesophagus, cord, canal and vertebra; reference VMAT plan 54 Gy / 3 "
            "fractions with an analytic dose meeting RTOG 0915 R50% and D2cm."
        ),
        plan=PlanSpec(targets=(TargetPrescription("PTV", 54.0),), fractions=3, arcs=_LUNG_ARCS),
    ),
    CaseSpec(
        case_id="prostate-sabr-planning",
        version="1.0",
        technique="sabr_prostate",
        stage=STAGE_BENCHMARK_CASE,
        title="Prostate SABR planning benchmark (36.25 Gy in 5 fractions)",
        protocol_id="prostate-sabr",
        builder=_prostate_planning_phantom,
        patient_id="RTQA-PROST-PLAN",
        patient_name="Benchmark^ProstateSABR^Planning",
        body_part_examined="PELVIS",
        description=(
            "Digital male pelvis (2 x 1 x 1 mm voxels): prostate, seminal vesicles, CTV, 5 mm PTV, rectum, "
            "bladder, femoral heads; reference VMAT plan 36.25 Gy / 5 fractions (PACE-B)."
        ),
        plan=PlanSpec(targets=(TargetPrescription("PTV", 36.25),), fractions=5, arcs=_FULL_ARCS),
    ),
    CaseSpec(
        case_id="srs-brain-planning",
        version="1.0",
        technique="srs_brain",
        stage=STAGE_BENCHMARK_CASE,
        title="Brain SRS planning benchmark (two metastases, 24 Gy and 18 Gy single fraction)",
        protocol_id="srs-brain",
        builder=_srs_planning_phantom,
        patient_id="RTQA-SRS-PLAN",
        patient_name="Benchmark^SRS^Planning",
        body_part_examined="HEAD",
        description=(
            "Digital adult head (2 x 1 x 1 mm voxels): brain, brainstem, optic chiasm and nerves, eyes, skull and "
            "two metastases (PTV 18 mm diameter: 24 Gy; PTV_2 26 mm: 18 Gy, RTOG 90-05 size bands) with 1 mm "
            "PTV margins; single-isocentre reference plan on a 1 mm dose grid."
        ),
        plan=PlanSpec(
            targets=(TargetPrescription("PTV", 24.0), TargetPrescription("PTV_2", 18.0)),
            fractions=1,
            arcs=_SRS_ARCS,
            subsampling=(1, 1, 1),
            machine_name="TrueBeamSTx",
        ),
    ),
)


def list_cases() -> list[CaseSpec]:
    """All benchmark cases, sorted by id."""
    return sorted(_CASES, key=lambda spec: spec.case_id)


def get_case(case_id: str) -> CaseSpec:
    """Return the case ``case_id``.

    Raises:
        CaseError: unknown id (the message lists the known ids).
    """
    for spec in _CASES:
        if spec.case_id == case_id:
            return spec
    known = ", ".join(spec.case_id for spec in list_cases())
    raise CaseError(f"unknown case id {case_id!r}; known cases: {known}")


def reference_files(directory: Path) -> list[Path]:
    """The reference DICOM files of a built case directory (CT slices, the RT Structure Set and, for planning
    cases, the RT Plan and RT Dose), sorted by relative POSIX path; an incomplete directory gives the files
    present."""
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
