"""The benchmark case library: case specifications and a deterministic, idempotent builder.

A built case is a directory::

    <out_dir>/<case_id>-<version>/
        dicom/CT/CT.0001.dcm ...    reference CT series
        dicom/RTSTRUCT.dcm          reference structure set
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

from benchmarks.dicom_writer import CtSeriesInfo, read_ct_series_info, write_ct_series, write_rtstruct
from benchmarks.phantoms import Phantom, simple_thorax_phantom

__all__ = [
    "STAGE_BENCHMARK_CASE",
    "BuiltCase",
    "CaseError",
    "CaseSpec",
    "build_case",
    "content_hash",
    "get_case",
    "list_cases",
    "reference_files",
]

logger = logging.getLogger(__name__)

STAGE_BENCHMARK_CASE: Final = "benchmark_case"
"""QA stage of outlining and planning benchmark cases (Global Harmonisation Group name, snake case)."""

MANIFEST_NAME: Final = "manifest.json"
DICOM_DIR_NAME: Final = "dicom"
CT_DIR_NAME: Final = "CT"
RTSTRUCT_NAME: Final = "RTSTRUCT.dcm"

ProgressCallback = Callable[[str], None]
"""Called with a short description before each build step (for progress display)."""


class CaseError(ValueError):
    """Unknown case id or an inconsistent built case; the message names the case and the problem."""


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
    """

    spec: CaseSpec
    directory: Path
    dicom_dir: Path
    ct_dir: Path
    rtstruct_path: Path
    content_sha256: str
    ct: CtSeriesInfo

    @property
    def manifest_path(self) -> Path:
        """Path of ``manifest.json``."""
        return self.directory / MANIFEST_NAME

    def phantom(self) -> Phantom:
        """Rebuild the phantom behind the reference files (reference masks on the CT grid)."""
        return self.spec.builder()


def _mini_lung_phantom() -> Phantom:
    return simple_thorax_phantom(spacing_mm=(3.0, 2.0, 2.0))


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
    """The reference DICOM files of a built case directory (CT slices and the RT Structure Set), sorted by
    relative POSIX path; an incomplete directory gives the files present."""
    dicom = directory / DICOM_DIR_NAME
    files = sorted((dicom / CT_DIR_NAME).glob("*.dcm"))
    rtstruct = dicom / RTSTRUCT_NAME
    if rtstruct.is_file():
        files.append(rtstruct)
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
    return {
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
    return BuiltCase(
        spec=spec,
        directory=directory,
        dicom_dir=dicom,
        ct_dir=dicom / CT_DIR_NAME,
        rtstruct_path=dicom / RTSTRUCT_NAME,
        content_sha256=sha,
        ct=read_ct_series_info(dicom / CT_DIR_NAME),
    )


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
    spec = get_case(case_id)
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
    )
