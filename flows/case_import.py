"""Benchmark cases from real DICOM: a QA group's anonymised patient or phantom export becomes a registered case.

The export (CT series, RTSTRUCT, and for planning or dosimetry cases the RTPLAN and RTDOSE) is validated as a
submission is (every file DICOM, one object of each RT kind, references between them, one frame of reference,
the plan dose's DoseSummationType), checked for what its stage needs, then copied into the case library's layout
(``<cases dir>/<code>-<version>/dicom/CT/*.dcm``, ``RTSTRUCT.dcm``, ``RTPLAN.dcm``, ``RTDOSE.dcm``) through a
temporary folder and a rename, hashed, and registered. A failure leaves neither a folder nor a row.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, select

from benchmarks.cases import CT_DIR_NAME, DICOM_DIR_NAME, RTDOSE_NAME, RTPLAN_NAME, RTSTRUCT_NAME, content_hash
from flows._store import engine_for
from flows.catalogue import register_protocol
from flows.protocol_store import resolve_protocol
from flows.steps import add_case
from models.enums import QAStage
from models.tables import BenchmarkCase, Technique
from qa_checks.dicom_io import LoadedSubmission, load_submission

IMPORT_REQUIRES: dict[QAStage, tuple[str, ...]] = {
    QAStage.OUTLINING_BENCHMARK: ("CT", "RTSTRUCT"),
    QAStage.PLANNING_BENCHMARK: ("CT", "RTSTRUCT"),
    QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK: ("CT", "RTSTRUCT", "RTPLAN", "RTDOSE"),
}
"""What the reference of an imported case must hold, by stage (a planning case may also carry a reference plan)."""

CASE_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{1,98}[a-z0-9]$")
"""Case codes: lower-case letters, digits and hyphens, 3-100 characters."""


class CaseImportError(ValueError):
    """An export cannot become a case; the message names what is wrong and what to do."""


@dataclass(frozen=True)
class ImportedCase:
    """A registered case from an import."""

    case_id: int
    code: str
    version: str
    stage: QAStage
    technique: str
    directory: Path
    sha256: str
    created: bool


def _check(loaded: LoadedSubmission, stage: QAStage, source: Path) -> None:
    present = {
        "CT": loaded.ct,
        "RTSTRUCT": loaded.structure_set,
        "RTPLAN": loaded.plan,
        "RTDOSE": loaded.dose,
    }
    missing = [m for m in IMPORT_REQUIRES[stage] if present[m] is None]
    if missing:
        raise CaseImportError(f"{source}: {stage.label} cases need {', '.join(missing)}; the export has none")
    if loaded.dose is not None and loaded.plan is None:
        raise CaseImportError(f"{source}: the export holds an RTDOSE but no RTPLAN it belongs to")


def _copy_layout(loaded: LoadedSubmission, destination: Path) -> None:
    dicom = destination / DICOM_DIR_NAME
    (dicom / CT_DIR_NAME).mkdir(parents=True)
    for i, path in enumerate(sorted(loaded.files_by_modality.get("CT", ()))):
        shutil.copy2(path, dicom / CT_DIR_NAME / f"CT{i:04d}.dcm")
    for modality, name in (("RTSTRUCT", RTSTRUCT_NAME), ("RTPLAN", RTPLAN_NAME), ("RTDOSE", RTDOSE_NAME)):
        for path in loaded.files_by_modality.get(modality, ()):
            shutil.copy2(path, dicom / name)


def import_case(
    source: Path,
    *,
    code: str,
    protocol_id: str,
    stage: str,
    technique: str | None,
    version: str,
    title: str | None,
    actor: str,
    database_url: str,
    data_dir: Path,
) -> ImportedCase:
    """Validate an export and register it as case ``code`` at ``version`` (see the module docstring).

    Importing the same files again under the same code and version finds the case; other files under an existing
    code and version are refused (give a new version).

    Raises:
        CaseImportError: bad code, stage, technique, or an export that does not fit the stage.
        ProtocolError: unknown protocol.
        QAChecksError: unreadable or inconsistent DICOM (naming the file, tag and value).
    """
    if not CASE_CODE.match(code):
        raise CaseImportError(f"case code {code!r}: use 3-100 lower-case letters, digits and hyphens")
    try:
        stage_value = QAStage(stage)
    except ValueError:
        raise CaseImportError(f"stage {stage!r}: cases can be {', '.join(s.value for s in IMPORT_REQUIRES)}") from None
    if stage_value not in IMPORT_REQUIRES:
        raise CaseImportError(f"stage {stage!r}: cases can be {', '.join(s.value for s in IMPORT_REQUIRES)}")
    protocol = resolve_protocol(protocol_id, None, data_dir=data_dir)
    if technique is None:
        if len(protocol.techniques) != 1:
            raise CaseImportError(
                f"protocol {protocol.id!r} covers {', '.join(protocol.techniques)}: say which with --technique"
            )
        technique = protocol.techniques[0]
    elif technique not in protocol.techniques:
        raise CaseImportError(f"technique {technique!r} is not one of protocol {protocol.id!r}'s {protocol.techniques}")
    if not source.is_dir():
        raise CaseImportError(f"{source}: not a folder; give the folder holding the exported DICOM files")
    loaded = load_submission(source)
    _check(loaded, stage_value, source)

    cases_dir = data_dir / "cases"
    destination = cases_dir / f"{code}-{version}"
    cases_dir.mkdir(parents=True, exist_ok=True)
    tmp = cases_dir / f".incoming-{uuid.uuid4().hex}"
    try:
        _copy_layout(loaded, tmp)
        sha = content_hash(tmp)
        with Session(engine_for(database_url)) as session:
            tech = session.exec(select(Technique).where(Technique.code == technique)).first()
            if tech is None or tech.id is None:
                raise CaseImportError(f"unknown technique {technique!r}; run `rtqa db init`")
            existing = session.exec(
                select(BenchmarkCase).where(BenchmarkCase.case_code == code, BenchmarkCase.version == version)
            ).first()
            if existing is not None:
                if existing.reference_sha256 != sha:
                    raise CaseImportError(
                        f"case {code}@{version} already exists with other reference files; import with a new --version"
                    )
                assert existing.id is not None
                return ImportedCase(
                    existing.id, code, version, existing.stage, technique, Path(existing.reference_path), sha, False
                )
            if destination.exists():
                raise CaseImportError(f"{destination} exists but no case {code}@{version} is registered; remove it")
            os.replace(tmp, destination)
            try:
                case = BenchmarkCase(
                    case_code=code,
                    version=version,
                    title=title or f"{code} (imported from {source.name})",
                    technique_id=tech.id,
                    stage=stage_value,
                    protocol_id=protocol.id,
                    protocol_version=protocol.version,
                    reference_sha256=sha,
                    reference_path=str(destination.resolve()),
                )
                add_case(session, case, actor=actor, action="case.imported")
                register_protocol(session, protocol, actor=actor)
                session.commit()
            except BaseException:
                session.rollback()
                shutil.rmtree(destination, ignore_errors=True)
                raise
            assert case.id is not None
            return ImportedCase(case.id, code, version, stage_value, technique, destination, sha, True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
