"""The credentialing flow end to end, and its ingest guarantees (idempotent, nothing half-written)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import flows.steps as flow_steps
from benchmarks.cases import BuiltCase, build_case
from benchmarks.protocols import load_protocol
from benchmarks.simulator import Deviation, SimulatedSubmission, simulate_submission
from flows.catalogue import build_reference, publish_case, register_case
from flows.credentialing import (
    IngestError,
    credential_submission,
    decide_outcome,
    ingest_submission,
    score_contours,
    update_credentials,
    validate_submission,
)
from flows.runtime import using_settings
from models.enums import CredentialStatus, SubmissionStatus
from models.settings import Settings
from models.tables import AuditEvent, Credential, Outcome, StructureResult, Submission, Technique

CASE = "lung-sabr-outlining-mini"


@pytest.fixture
def built(settings: Settings) -> BuiltCase:
    return build_case(CASE, settings.cases_dir)


@pytest.fixture
def registered(settings: Settings, built: BuiltCase) -> int:
    """The case registered in the test database (task bodies via .fn: no Prefect server needed)."""
    reference = build_reference.fn(CASE, str(settings.cases_dir))
    return register_case.fn(reference, actor="tests", database_url=settings.resolved_database_url)


def _simulate(built: BuiltCase, tmp: Path, provider: str, *deviations: str, seed: int = 0) -> SimulatedSubmission:
    return simulate_submission(
        built, provider=provider, deviations=[Deviation.parse(d) for d in deviations], seed=seed, out_dir=tmp / provider
    )


def _run_tasks(settings: Settings, directory: Path, provider: str) -> int:
    """Every step of the flow through the tasks' own functions."""
    url = settings.resolved_database_url
    sid = ingest_submission.fn(
        str(directory),
        provider_code=provider,
        case_code=CASE,
        case_version="1.0",
        actor="tests",
        database_url=url,
        data_dir=str(settings.data_dir),
    )
    if validate_submission.fn(sid, actor="tests", database_url=url):
        score_contours.fn(sid, actor="tests", database_url=url)
        decide_outcome.fn(sid, actor="tests", database_url=url, validity_days=365)
        update_credentials.fn(sid, actor="tests", database_url=url, validity_days=365)
    return sid


def _stored_dirs(settings: Settings) -> list[Path]:
    root = settings.submissions_dir
    return sorted(p for p in root.rglob("*") if p.is_dir()) if root.exists() else []


class TestFlowUnderPrefect:
    """The real flow, with task runs recorded by one session-wide Prefect test server."""

    def test_close_and_far_centres(
        self, prefect_harness: None, settings: Settings, engine: Engine, built: BuiltCase, tmp_path: Path
    ) -> None:
        with using_settings(settings):
            publish_case(CASE, actor="tests")
        close = _simulate(built, tmp_path, "the-royal-marsden", "margin_mm:PTV:1", "rename:SpinalCord:Cord")
        far = _simulate(built, tmp_path, "the-christie", "margin_mm:PTV:8", "shift_mm:GTV:0,0,10")
        assert close.expected_outcome.value != "unacceptable_variation"
        assert far.expected_outcome.value == "unacceptable_variation"

        results: dict[str, dict[str, Any]] = {}
        runs: dict[str, Any] = {}
        for sim in (close, far):
            with using_settings(settings):
                state = credential_submission(str(sim.directory), sim.provider, CASE, actor="tests", return_state=True)
            results[sim.provider] = state.result()
            runs[sim.provider] = state.state_details.flow_run_id
        # The pipeline (DICOM -> names -> rasterise -> Dice -> protocol) agrees with the simulator's oracle.
        assert results["the-royal-marsden"]["outcome"] == close.expected_outcome.value
        assert results["the-christie"]["outcome"] == far.expected_outcome.value
        assert all(r["status"] == "decided" and r["attempt"] == 1 for r in results.values())

        with Session(engine) as session:
            lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
            creds = session.exec(select(Credential).where(Credential.technique_id == lung.id)).all()
            # One outlining benchmark is one stage of four: both stay pending, the close centre's outlining
            # stage passed and the far centre's failed; the other stages are named as missing.
            assert sorted(c.status.value for c in creds) == ["pending", "pending"]
            outlining = sorted(
                next(s["status"] for s in c.evidence["stages"] if s["stage"] == "outlining_benchmark") for c in creds
            )
            assert outlining == ["failed", "passed"]
            for c in creds:
                assert "planning benchmark: missing" in c.evidence["outstanding"]
                assert "facility questionnaire: missing" in c.evidence["outstanding"]
            actions = {e.action for e in session.exec(select(AuditEvent)).all()}
        assert {
            "case.registered",
            "submission.received",
            "submission.validated",
            "submission.scored",
            "submission.decided",
            "outcome.decided",
            "credential.created",
        } <= actions

        # Observability: task runs named by what they do, and the outcome as a markdown artifact of each run.
        far_id = results["the-christie"]["submission_id"]
        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[runs["the-christie"]]))
        structures = dict.fromkeys(c.structure for c in load_protocol("uk-lung-sabr").outlining_criteria())
        assert {"PTV", "GTV", "SpinalCord"} <= set(structures)
        with get_client(sync_client=True) as client:
            tasks = client.read_task_runs(flow_run_filter=this_run)
            artifacts = client.read_artifacts(flow_run_filter=this_run)
            lines = _run_log_lines(client, runs["the-christie"], expect=f"submission {far_id} (the-christie, ")
        assert sorted(t.name for t in tasks) == sorted(
            [
                "ingest[the-christie lung-sabr-outlining-mini]",
                f"validate[submission {far_id}]",
                f"score-contours[submission {far_id}]",
                *(f"score-contours[{name}]" for name in structures),  # one task run per structure scored
                f"decide[submission {far_id}]",
                f"update-credentials[submission {far_id}]",
            ]
        )
        # Every step's log line names the submission and its provider.
        label = f"submission {far_id} (the-christie, {CASE}@1.0, attempt 1): "
        for step in ("received", "validated", "scored (validated -> scored)", "decided unacceptable_variation"):
            assert any(line.startswith(label + step) for line in lines), (step, lines)
        [artifact] = artifacts
        assert artifact.key == f"submission-{far_id}" and artifact.type == "markdown"
        markdown = str(artifact.data)
        assert markdown.startswith(f"# Submission {far_id}: unacceptable variation")
        assert f"[/submissions/{far_id}/report](/submissions/{far_id}/report)" in markdown
        assert "| PTV | dice |" in markdown


def _run_log_lines(client: Any, flow_run_id: Any, *, expect: str, timeout: float = 15.0) -> list[str]:
    """The messages the flow run (and its task runs) logged to the API, waiting for the batched log writes."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    while True:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        lines = [log.message for log in logs]
        if sum(expect in line for line in lines) >= 4 or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


class TestTasks:
    def test_dice_results_carry_unit_and_parameters(
        self, settings: Settings, engine: Engine, built: BuiltCase, registered: int, tmp_path: Path
    ) -> None:
        sim = _simulate(built, tmp_path, "the-royal-marsden", "rename:Lung_L:Lt Lung")
        sid = _run_tasks(settings, sim.directory, "the-royal-marsden")
        with Session(engine) as session:
            rows = session.exec(
                select(StructureResult).where(StructureResult.submission_id == sid, StructureResult.metric == "dice")
            ).all()
            lung = next(r for r in rows if r.structure == "Lung_L")
        assert lung.submitted_name == "Lt Lung" and lung.unit == "1"
        assert lung.value == pytest.approx(1.0)  # unchanged contours: identical masks on the same grid
        assert lung.parameters["grid"] == "reference CT" and len(lung.parameters["spacing_mm"]) == 3
        assert {r.structure for r in rows} == {"Body", "GTV", "PTV", "SpinalCord", "Lung_L", "Lung_R", "Heart"}
        with Session(engine) as session:
            metrics = {
                r.metric: r
                for r in session.exec(
                    select(StructureResult).where(
                        StructureResult.submission_id == sid, StructureResult.structure == "Lung_L"
                    )
                ).all()
            }
        assert {"hd95_mm", "hausdorff_mm", "msd_mm", "surface_dice", "added_path_length_mm"} <= set(metrics)
        assert metrics["hd95_mm"].value == 0.0 and metrics["hd95_mm"].unit == "mm"
        assert metrics["surface_dice"].parameters["tolerance_mm"] == 2.0

    def test_reingest_returns_the_same_submission(
        self, settings: Settings, engine: Engine, built: BuiltCase, registered: int, tmp_path: Path
    ) -> None:
        sim = _simulate(built, tmp_path, "the-royal-marsden", "margin_mm:PTV:1")
        first = _run_tasks(settings, sim.directory, "the-royal-marsden")
        again = _run_tasks(settings, sim.directory, "the-royal-marsden")
        assert again == first
        with Session(engine) as session:
            assert len(session.exec(select(Submission)).all()) == 1
            assert len(session.exec(select(Outcome)).all()) == 1
        assert len([p for p in _stored_dirs(settings) if len(p.name) == 64]) == 1

    def test_changed_upload_is_attempt_two(
        self, settings: Settings, engine: Engine, built: BuiltCase, registered: int, tmp_path: Path
    ) -> None:
        first = _simulate(built, tmp_path / "a", "the-christie", "margin_mm:PTV:8")
        second = _simulate(built, tmp_path / "b", "the-christie", "margin_mm:PTV:1", seed=1)
        _run_tasks(settings, first.directory, "the-christie")
        sid = _run_tasks(settings, second.directory, "the-christie")
        with Session(engine) as session:
            sub = session.get(Submission, sid)
            assert sub is not None and sub.attempt == 2
            cred = session.exec(select(Credential).where(Credential.technique_id.is_not(None))).one()  # type: ignore[union-attr]
            outlining = next(s for s in cred.evidence["stages"] if s["stage"] == "outlining_benchmark")
            assert (outlining["status"], outlining["submission_id"], outlining["attempt"]) == ("passed", sid, 2)
            assert cred.status is CredentialStatus.PENDING  # the other stages of lung SABR are still missing

    def test_unknown_provider_leaves_nothing(
        self, settings: Settings, engine: Engine, built: BuiltCase, registered: int, tmp_path: Path
    ) -> None:
        sim = _simulate(built, tmp_path, "nobody", "margin_mm:PTV:1")
        with pytest.raises(IngestError, match="unknown provider code 'nobody'"):
            _run_tasks(settings, sim.directory, "nobody")
        with Session(engine) as session:
            assert session.exec(select(Submission)).all() == []
        assert _stored_dirs(settings) == []

    def test_database_failure_after_copy_removes_the_copy(
        self,
        settings: Settings,
        engine: Engine,
        built: BuiltCase,
        registered: int,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        sim = _simulate(built, tmp_path, "the-christie", "margin_mm:PTV:1")

        def broken_audit(*args: object, **kwargs: object) -> None:
            raise RuntimeError("database went away")

        monkeypatch.setattr(flow_steps, "record_audit", broken_audit)
        with pytest.raises(RuntimeError, match="database went away"):
            _run_tasks(settings, sim.directory, "the-christie")
        with Session(engine) as session:
            assert session.exec(select(Submission)).all() == []
        assert [p for p in _stored_dirs(settings) if len(p.name) == 64 or p.name.startswith(".incoming")] == []

    def test_empty_folder_is_refused(self, settings: Settings, registered: int, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(FileNotFoundError, match="holds no files"):
            _run_tasks(settings, tmp_path / "empty", "the-christie")

    def test_frame_of_reference_mismatch_is_rejected_with_reason(
        self, settings: Settings, engine: Engine, built: BuiltCase, registered: int, tmp_path: Path
    ) -> None:
        sim = _simulate(built, tmp_path, "the-christie", "margin_mm:PTV:1")
        # Re-stamp every file with another frame of reference: internally consistent, but not the case's CT.
        for path in sim.directory.rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            if "FrameOfReferenceUID" in ds:
                ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
            for item in ds.get("ReferencedFrameOfReferenceSequence", []):
                item.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
            for item in ds.get("StructureSetROISequence", []):
                item.ReferencedFrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
            ds.save_as(path)
        sid = _run_tasks(settings, sim.directory, "the-christie")
        with Session(engine) as session:
            sub = session.get(Submission, sid)
            assert sub is not None and sub.status is SubmissionStatus.REJECTED
            assert sub.rejection_reason is not None and "FrameOfReferenceUID" in sub.rejection_reason
            assert "1.2.826.0.1.3680043.8.498.1" in sub.rejection_reason
            assert session.exec(select(Outcome)).all() == []

    def test_stray_file_is_rejected_naming_it(
        self, settings: Settings, engine: Engine, built: BuiltCase, registered: int, tmp_path: Path
    ) -> None:
        sim = _simulate(built, tmp_path, "the-christie", "margin_mm:PTV:1")
        (sim.directory / "notes.txt").write_text("plan notes")
        sid = _run_tasks(settings, sim.directory, "the-christie")
        with Session(engine) as session:
            sub = session.get(Submission, sid)
            assert sub is not None and sub.status is SubmissionStatus.REJECTED
            assert sub.rejection_reason is not None and "notes.txt" in sub.rejection_reason

    def test_missing_and_unrecognised_structures_are_reported(
        self, settings: Settings, engine: Engine, built: BuiltCase, registered: int, tmp_path: Path
    ) -> None:
        sim = _simulate(built, tmp_path, "the-christie", "omit:Heart", "rename:Lung_R:Zebra")
        sid = _run_tasks(settings, sim.directory, "the-christie")
        with Session(engine) as session:
            outcome = session.exec(select(Outcome).where(Outcome.submission_id == sid)).one()
            scored = session.exec(
                select(AuditEvent).where(AuditEvent.action == "submission.scored", AuditEvent.subject_id == str(sid))
            ).one()
        assert outcome.level.value == "unacceptable_variation" == sim.expected_outcome.value
        assert any("required structure Heart is missing from the submission" in r for r in outcome.reasons)
        assert scored.after is not None
        assert scored.after["unmatched_submitted"] == ["Zebra"]
        assert sorted(scored.after["missing"]) == ["Heart", "Lung_R"]
