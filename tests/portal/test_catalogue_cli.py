"""Catalogue commands: cases import (validated like a submission, atomic), protocols validate / add (versions in the
data directory), and their one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from benchmarks.cases import BuiltCase
from benchmarks.protocols import PROTOCOL_DIR
from models.enums import QAStage
from models.settings import Settings
from models.tables import AuditEvent, BenchmarkCase, StageRequirement, Trial
from portal.cli import app
from tests.coarse import build_coarse_lung

runner = CliRunner()


@pytest.fixture
def env(settings: Settings, db_url: str, monkeypatch: pytest.MonkeyPatch, cli_staff: str) -> Settings:
    monkeypatch.setenv("RTQA_DATABASE_URL", db_url)
    monkeypatch.setenv("RTQA_DATA_DIR", str(settings.data_dir))
    return settings


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    """A planning export (CT, RTSTRUCT, RTPLAN, RTDOSE) in a folder of its own."""
    return build_coarse_lung(tmp_path_factory.mktemp("export"))


def _one_line(output: str) -> str:
    return " ".join(output.split())


def _import(source: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        ["cases", "import", str(source), "--code", "lung-patient-07", "--protocol", "uk-lung-sabr", *extra],
    )


class TestImport:
    def test_dosimetry_case_from_an_export(self, env: Settings, engine: Engine, export: BuiltCase) -> None:
        result = _import(export.dicom_dir, "--stage", "complex_treatment_dosimetry_check")
        assert result.exit_code == 0, result.output
        assert "imported lung-patient-07@1.0 (complex treatment dosimetry check, sabr_lung)" in _one_line(result.output)
        again = _import(export.dicom_dir, "--stage", "complex_treatment_dosimetry_check")
        assert again.exit_code == 0 and "already registered" in again.output
        with Session(engine) as session:
            case = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == "lung-patient-07")).one()
            assert case.stage is QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK
            assert (case.protocol_id, case.protocol_version) == ("uk-lung-sabr", "1.0")
            stored = Path(case.reference_path)
            assert sorted(p.name for p in (stored / "dicom").iterdir()) == [
                "CT",
                "RTDOSE.dcm",
                "RTPLAN.dcm",
                "RTSTRUCT.dcm",
            ]
            assert len(list((stored / "dicom" / "CT").glob("*.dcm"))) == len(list(export.ct_dir.glob("*.dcm")))
            assert session.exec(select(AuditEvent).where(AuditEvent.action == "case.imported")).one()
            # Its protocol's trial and stage requirements are registered with it.
            assert session.exec(select(Trial).where(Trial.code == "uk-lung-sabr")).one()
            assert len(session.exec(select(StageRequirement)).all()) == 4

    def test_per_beam_dose_is_refused_naming_file_and_tag(
        self, env: Settings, engine: Engine, export: BuiltCase, tmp_path: Path
    ) -> None:
        source = tmp_path / "beam-export"
        shutil.copytree(export.dicom_dir, source)
        ds = pydicom.dcmread(source / "RTDOSE.dcm")
        ds.DoseSummationType = "BEAM"
        ds.save_as(source / "RTDOSE.dcm")
        result = _import(source, "--stage", "complex_treatment_dosimetry_check")
        assert result.exit_code == 2
        text = _one_line(result.output)
        assert "RTDOSE.dcm" in text and "(3004,000A)" in text and "BEAM" in text and "Traceback" not in text
        with Session(engine) as session:
            assert session.exec(select(BenchmarkCase)).all() == []
        cases = env.data_dir / "cases"
        assert not cases.exists() or not any(p.name.startswith(".incoming") for p in cases.iterdir())

    def test_outlining_case_needs_a_structure_set(self, env: Settings, export: BuiltCase, tmp_path: Path) -> None:
        source = tmp_path / "ct-only"
        shutil.copytree(export.ct_dir, source)
        result = _import(source, "--stage", "outlining_benchmark")
        assert result.exit_code == 2
        assert "outlining benchmark cases need RTSTRUCT; the export has none" in _one_line(result.output)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--stage", "benchmark"], "stage 'benchmark': cases can be outlining_benchmark"),
            (["--stage", "outlining_benchmark", "--technique", "srs_brain"], "technique 'srs_brain' is not one of"),
        ],
    )
    def test_mistakes_get_one_line(self, env: Settings, export: BuiltCase, args: list[str], message: str) -> None:
        result = _import(export.dicom_dir, *args)
        assert result.exit_code == 2 and message in _one_line(result.output)
        assert len(result.output.strip().splitlines()) <= 2


class TestProtocols:
    def _new_version(self, tmp_path: Path, **changes: Any) -> Path:
        data = yaml.safe_load((PROTOCOL_DIR / "uk-lung-sabr.yaml").read_text())
        data.update(changes)
        path = tmp_path / "lung-1.1.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def test_validate(self, env: Settings, tmp_path: Path) -> None:
        ok = runner.invoke(app, ["protocols", "validate", str(self._new_version(tmp_path, version="1.1"))])
        assert ok.exit_code == 0 and "valid protocol uk-lung-sabr version 1.1" in _one_line(ok.output)
        bad = runner.invoke(app, ["protocols", "validate", str(self._new_version(tmp_path, fractionations="three"))])
        assert bad.exit_code == 2 and "fractionations" in bad.output and "Traceback" not in bad.output

    def test_add_a_version(self, env: Settings, engine: Engine, tmp_path: Path) -> None:
        path = self._new_version(tmp_path, version="1.1", title="UK lung SABR, 2027 revision")
        added = runner.invoke(app, ["protocols", "add", str(path)])
        assert added.exit_code == 0, added.output
        assert (env.data_dir / "protocols" / "uk-lung-sabr" / "1.1.yaml").is_file()
        again = runner.invoke(app, ["protocols", "add", str(path)])
        assert again.exit_code == 0 and "already present" in again.output
        listed = runner.invoke(app, ["protocols", "list"])
        assert "2027 revision" in listed.output and "added" in listed.output
        changed = self._new_version(tmp_path, version="1.1", title="something else")
        refused = runner.invoke(app, ["protocols", "add", str(changed)])
        assert refused.exit_code == 2 and "give the changed protocol a new version" in _one_line(refused.output)
        shipped_changed = self._new_version(tmp_path, version="1.0", title="edited in place")
        refused = runner.invoke(app, ["protocols", "add", str(shipped_changed)])
        assert refused.exit_code == 2 and "shipped version with other content" in _one_line(refused.output)
        with Session(engine) as session:
            assert session.exec(select(Trial).where(Trial.code == "uk-lung-sabr")).one()
