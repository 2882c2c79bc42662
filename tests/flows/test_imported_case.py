"""A case imported from a DICOM export and the same export submitted unchanged by a centre: every structure scores
Dice 1 against itself and its dose passes gamma at 100%; the export with a lone per-beam RTDOSE is refused naming
the file and (3004,000A) DoseSummationType.

The export here is the library's own coarse lung planning case (CT, RTSTRUCT, RTPLAN, RTDOSE written by
benchmarks/dicom_writer.py); no real planning-system export with a redistribution licence is available offline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase
from flows.case_import import import_case
from flows.credentialing import (
    decide_outcome,
    ingest_submission,
    score_submission,
    update_credentials,
    validate_submission,
)
from models.enums import SubmissionStatus
from models.settings import Settings
from models.tables import DoseResult, StructureResult, Submission
from tests.coarse import build_coarse_lung

PROVIDER = "the-christie"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_coarse_lung(tmp_path_factory.mktemp("export"))


def _import(settings: Settings, export: BuiltCase, code: str, stage: str) -> None:
    import_case(
        export.dicom_dir,
        code=code,
        protocol_id="uk-lung-sabr",
        stage=stage,
        technique=None,
        version="1.0",
        title=None,
        actor="tests",
        database_url=settings.resolved_database_url,
        data_dir=settings.data_dir,
    )


def _submit(settings: Settings, folder: Path, code: str) -> int:
    url, data = settings.resolved_database_url, str(settings.data_dir)
    sid = ingest_submission.fn(
        str(folder), provider_code=PROVIDER, case_code=code, case_version=None, actor="t", database_url=url,
        data_dir=data,
    )  # fmt: skip
    if validate_submission.fn(sid, actor="t", database_url=url):
        score_submission.fn(sid, actor="t", database_url=url, data_dir=data)
        decide_outcome.fn(sid, actor="t", database_url=url, data_dir=data, validity_days=365)
        update_credentials.fn(sid, actor="t", database_url=url, validity_days=365)
    return sid


def test_export_submitted_unchanged_scores_perfectly(settings: Settings, engine: Engine, export: BuiltCase) -> None:
    _import(settings, export, "lung-export-outlining", "outlining_benchmark")
    _import(settings, export, "lung-export-tps", "complex_treatment_dosimetry_check")
    outlining = _submit(settings, export.dicom_dir, "lung-export-outlining")
    dosimetry = _submit(settings, export.dicom_dir, "lung-export-tps")
    with Session(engine) as session:
        dice = session.exec(
            select(StructureResult).where(StructureResult.submission_id == outlining, StructureResult.metric == "dice")
        ).all()
        assert len(dice) == 7 and all(r.value == 1.0 for r in dice), [(r.structure, r.value) for r in dice]
        rate = session.exec(
            select(DoseResult).where(
                DoseResult.submission_id == dosimetry, DoseResult.metric == "gamma_pass_rate_percent"
            )
        ).one()
        assert rate.value == 100.0
        assert session.get(Submission, dosimetry).status is SubmissionStatus.DECIDED  # type: ignore[union-attr]


def test_export_with_a_lone_beam_dose_is_refused(
    settings: Settings, engine: Engine, export: BuiltCase, tmp_path: Path
) -> None:
    _import(settings, export, "lung-export-tps", "complex_treatment_dosimetry_check")
    folder = tmp_path / "beam"
    shutil.copytree(export.dicom_dir, folder)
    ds = pydicom.dcmread(folder / "RTDOSE.dcm")
    ds.DoseSummationType = "BEAM"
    ds.save_as(folder / "RTDOSE.dcm")
    sid = _submit(settings, folder, "lung-export-tps")
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None and sub.status is SubmissionStatus.REJECTED
        reason = sub.rejection_reason or ""
    assert reason.startswith("RTDOSE.dcm: (3004,000A) DoseSummationType is 'BEAM'"), reason
    assert str(folder) not in reason and str(settings.data_dir) not in reason  # relative to the upload
