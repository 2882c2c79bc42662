"""Pushing submissions to the C-STORE receiver with dcmtk's storescu (a real sender, over TCP to a receiver on a free
port): a decided submission with the simulator oracle's outcome, and refusals the sender can read (association
rejected, per-instance statuses with an error comment, rejections visible through the API)."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.examples import get_path
from pynetdicom import AE, StoragePresentationContexts
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from benchmarks.cases import BuiltCase
from flows.dicom_receiver import DicomReceiver
from flows.dicom_staging import STAGING_DIR_NAME
from flows.runner import SubmissionRunner
from models.settings import Settings
from models.tables import AuditEvent, Submission
from portal.app import create_app
from tests.push.conftest import AET, CASE, beam_dose_for, rewrite, simulate, storescu, wait_for_receipts


def _submissions(engine: Engine) -> list[Submission]:
    with Session(engine) as session:
        return list(session.exec(select(Submission).order_by(col(Submission.id))).all())


def _staged(settings: Settings) -> list[Path]:
    root = settings.data_dir / STAGING_DIR_NAME
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _received(settings: Settings, engine: Engine, token: str, submission_id: int) -> dict[str, object]:
    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.get(
            f"/api/v1/submissions/{submission_id}/received", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


class TestPush:
    def test_a_pushed_submission_is_decided_with_the_oracles_outcome(
        self,
        receiver: DicomReceiver,
        settings: Settings,
        engine: Engine,
        built: BuiltCase,
        tokens: dict[str, str],
        tmp_path: Path,
    ) -> None:
        far = simulate(built, tmp_path / "far", "margin_mm:PTV:8", "shift_mm:GTV:0,0,10")
        assert far.expected_outcome.value == "unacceptable_variation"
        sent = storescu(receiver.port, far.directory)
        assert sent.returncode == 0, sent.stderr
        (receipt,) = wait_for_receipts(receiver, 1)
        assert receipt.created and receipt.case == f"{CASE}@1.0" and receipt.refused == ()
        assert receipt.by_modality == {"CT": len(list(far.ct_dir.glob("*.dcm"))), "RTSTRUCT": 1}
        (sub,) = _submissions(engine)
        assert sub.id == receipt.submission_id and sub.submitted_by == f"dicom:{AET}" and sub.status.value == "received"
        assert _staged(settings) == []

        assert SubmissionRunner(settings).drain() == [sub.id]
        with TestClient(create_app(settings, engine=engine)) as client:
            detail = client.get(
                f"/api/v1/submissions/{sub.id}", headers={"Authorization": f"Bearer {tokens['centre']}"}
            )
        assert detail.json()["status"] == "decided"
        assert detail.json()["outcomes"][0]["level"] == far.expected_outcome.value

        received = _received(settings, engine, tokens["centre"], sub.id or 0)
        assert received["instances_by_modality"] == receipt.by_modality
        assert received["via"] == {"route": "C-STORE", "by": f"dicom:{AET}", "senders": [f"dicom:{AET}"]}
        assert received["missing"] == [] and received["complete"] is True
        assert [s["modality"] for s in received["series"]] == ["CT", "RTSTRUCT"]  # type: ignore[index, union-attr]

    def test_the_same_push_again_is_already_received(
        self, receiver: DicomReceiver, engine: Engine, built: BuiltCase, tmp_path: Path
    ) -> None:
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        assert storescu(receiver.port, sim.directory).returncode == 0
        assert storescu(receiver.port, sim.directory).returncode == 0
        first, again = wait_for_receipts(receiver, 2)
        assert first.created and not again.created and again.submission_id == first.submission_id
        assert len(_submissions(engine)) == 1

    def test_an_unknown_calling_ae_title_is_rejected(
        self, receiver: DicomReceiver, settings: Settings, engine: Engine, built: BuiltCase
    ) -> None:
        sent = storescu(receiver.port, built.rtstruct_path, aet="NOT_REGISTERED")
        assert sent.returncode != 0
        assert "Association Rejected" in sent.stderr and "Calling AE Title Not Recognized" in sent.stderr
        assert "Rejected Permanent" in sent.stderr
        time.sleep(0.2)
        assert _submissions(engine) == [] and _staged(settings) == [] and list(receiver.receipts) == []

    def test_no_registered_title_rejects_everybody(self, settings: Settings, registered: int, built: BuiltCase) -> None:
        rx = DicomReceiver(settings, host="127.0.0.1", port=0)
        rx.start()
        try:
            sent = storescu(rx.port, built.rtstruct_path)
        finally:
            rx.stop()
        assert "Calling AE Title Not Recognized" in sent.stderr


class TestRefusals:
    def test_an_object_of_another_patient_is_refused_with_a_status_and_comment(
        self,
        receiver: DicomReceiver,
        settings: Settings,
        engine: Engine,
        built: BuiltCase,
        tokens: dict[str, str],
        tmp_path: Path,
    ) -> None:
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        rewrite(sim.rtstruct_path, sim.rtstruct_path, PatientID="SOMEONE-ELSE")
        sent = storescu(receiver.port, sim.directory)
        assert "0xc101: Error: Cannot understand" in sent.stderr
        assert "PatientID 'SOMEONE-ELSE' is not the case's 'RTQA-LUNG-MINI'" in sent.stderr
        (receipt,) = wait_for_receipts(receiver, 1)
        assert receipt.by_modality == {"CT": len(list(sim.ct_dir.glob("*.dcm")))}
        assert [r["status"] for r in receipt.refused] == ["0xC101"]

        # The CT alone became a submission, rejected for want of a structure set; the API says what is missing.
        SubmissionRunner(settings).drain()
        (sub,) = _submissions(engine)
        assert sub.status.value == "rejected" and "no RTSTRUCT" in (sub.rejection_reason or "")
        received = _received(settings, engine, tokens["centre"], sub.id or 0)
        assert received["refused_count"] == 1
        assert received["missing"] == [
            "RTSTRUCT: none received; outlining benchmark submissions need the structure set with your contours"
        ]
        refused = received["refused"][0]  # type: ignore[index]
        assert refused["modality"] == "RTSTRUCT" and "SOMEONE-ELSE" in refused["reason"]

    def test_a_missing_ct_slice_rejects_the_submission_and_is_named(
        self,
        receiver: DicomReceiver,
        settings: Settings,
        engine: Engine,
        built: BuiltCase,
        tokens: dict[str, str],
        tmp_path: Path,
    ) -> None:
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        slices = sorted(sim.ct_dir.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
        gone = pydicom.dcmread(slices[len(slices) // 2], stop_before_pixels=True)
        slices[len(slices) // 2].unlink()
        assert storescu(receiver.port, sim.directory).returncode == 0
        wait_for_receipts(receiver, 1)
        SubmissionRunner(settings).drain()
        (sub,) = _submissions(engine)
        assert sub.status.value == "rejected"
        assert "missing or irregular slices" in (sub.rejection_reason or "")
        received = _received(settings, engine, tokens["centre"], sub.id or 0)
        assert received["complete"] is False
        (missing,) = [m for m in received["missing"] if m.startswith("CT:")]  # type: ignore[union-attr]
        assert missing.startswith(f"CT: 1 of the case's {len(slices)} slices not received")
        assert f"InstanceNumber {gone.InstanceNumber} ({gone.SOPInstanceUID})" in missing

    def test_a_per_beam_dose_is_refused_for_a_case_that_takes_the_plan_dose(
        self, receiver: DicomReceiver, engine: Engine, built: BuiltCase, tmp_path: Path
    ) -> None:
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        dose = beam_dose_for(
            next(sim.ct_dir.glob("*.dcm")),
            tmp_path / "extra" / "beam.dcm",
            sop_instance_uid="1.2.826.0.1.3680043.8.498.1",
        )
        sent = storescu(receiver.port, sim.directory, dose)
        assert "0xc102: Error: Cannot understand" in sent.stderr
        assert "DoseSummationType BEAM: send the PLAN dose" in sent.stderr
        (receipt,) = wait_for_receipts(receiver, 1)
        assert receipt.created and "RTDOSE" not in receipt.by_modality
        assert receipt.refused[0]["status"] == "0xC102" and "'BEAM' (one beam's dose" in receipt.refused[0]["reason"]

    def test_other_storage_classes_and_foreign_frames_are_refused(
        self, receiver: DicomReceiver, engine: Engine, built: BuiltCase, tmp_path: Path
    ) -> None:
        nocase = rewrite(
            next(built.ct_dir.glob("*.dcm")),
            tmp_path / "nocase.dcm",
            FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.77",
            SOPInstanceUID="1.2.826.0.1.3680043.8.498.78",
        )
        sent = storescu(receiver.port, Path(get_path("mr")), nocase)
        assert "0x0122" in sent.stderr and "only CT, RTSTRUCT, RTPLAN and RTDOSE storage are taken" in sent.stderr
        assert "0xc100" in sent.stderr and "FrameOfReferenceUID is that of no benchmark case" in sent.stderr
        (receipt,) = wait_for_receipts(receiver, 1)  # the study of the foreign CT: nothing accepted, audited
        assert (
            receipt.submission_id is None and receipt.reason is not None and "no object was accepted" in receipt.reason
        )
        assert _submissions(engine) == []
        with Session(engine) as session:
            audits = session.exec(select(AuditEvent).where(AuditEvent.action == "dicom.push_refused")).all()
        assert [a.subject_id for a in audits] == ["the-christie"]

    def test_an_aborted_association_leaves_nothing(
        self, receiver: DicomReceiver, settings: Settings, engine: Engine, built: BuiltCase
    ) -> None:
        scu = AE(ae_title=AET)
        scu.requested_contexts = StoragePresentationContexts
        assoc = scu.associate("127.0.0.1", receiver.port, ae_title="RTQA")
        assert assoc.is_established
        for path in sorted(built.ct_dir.glob("*.dcm"))[:3]:
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
        assert len([p for p in _staged(settings) if p.suffix == ".dcm"]) == 3
        assoc.abort()
        deadline = time.monotonic() + 10
        while _staged(settings) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _staged(settings) == [] and _submissions(engine) == [] and list(receiver.receipts) == []


class TestQuietPeriod:
    def test_two_associations_make_one_submission(
        self, settings: Settings, engine: Engine, registered: int, ae: str, built: BuiltCase, tmp_path: Path
    ) -> None:
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        rx = DicomReceiver(settings, host="127.0.0.1", port=0, quiet_seconds=1.0)
        rx.start()
        try:
            assert storescu(rx.port, sim.ct_dir).returncode == 0
            time.sleep(0.3)
            assert list(rx.receipts) == []  # the CT waits for the rest
            assert storescu(rx.port, sim.rtstruct_path).returncode == 0
            (receipt,) = wait_for_receipts(rx, 1, timeout=30)
        finally:
            rx.stop()
        assert receipt.by_modality == {"CT": len(list(sim.ct_dir.glob("*.dcm"))), "RTSTRUCT": 1}
        assert len(_submissions(engine)) == 1

    def test_studies_left_unreleased_are_discarded_at_start(
        self, settings: Settings, registered: int, ae: str, built: BuiltCase
    ) -> None:
        leftover = settings.data_dir / STAGING_DIR_NAME / "the-christie" / "1.2.3" / "CT" / "1.2.3.4.dcm"
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"partial")
        rx = DicomReceiver(settings, host="127.0.0.1", port=0)
        rx.start()
        rx.stop()
        assert not leftover.exists() and list(rx.receipts) == []


@pytest.mark.parametrize("quiet", [0.0, -1.0])
def test_quiet_period_must_not_be_negative(settings: Settings, quiet: float) -> None:
    if quiet < 0:
        with pytest.raises(ValueError, match="quiet_seconds must be 0 or more"):
            DicomReceiver(settings, quiet_seconds=quiet)
    else:
        assert DicomReceiver(settings, quiet_seconds=quiet).quiet_seconds == 0.0
