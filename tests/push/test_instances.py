"""Checks on one pushed instance, the case index and the staging area, without a network: each refusal's status,
the words of its reason, and what is left on disk."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.examples import get_path
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase
from flows.dicom_cases import CaseIndex, CaseMatchError, CaseReference, ReferenceSlice
from flows.dicom_instances import (
    COMMENT_MAX_CHARS,
    InstanceHeader,
    InstanceRefusedError,
    PushStatus,
    check_against_case,
    check_sop_class,
    read_header,
)
from flows.dicom_staging import Staging
from models.enums import QAStage
from models.settings import Settings
from models.tables import AuditEvent, Submission
from tests.push.conftest import CASE, OWN, beam_dose_for, rewrite

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _ref(
    case_id: int,
    code: str,
    *,
    frame: str = "1.2.3",
    series: str = "1.2.3.1",
    patient: str | None = "P1",
    stage: QAStage = QAStage.OUTLINING_BENCHMARK,
    days: int = 0,
) -> CaseReference:
    return CaseReference(
        case_id=case_id,
        case_code=code,
        version=f"{days + 1}.0",
        stage=stage,
        created_at=T0 + timedelta(days=days),
        frame_of_reference_uid=frame,
        ct_series_uid=series,
        ct_slices=(ReferenceSlice("1.2.3.1.1", 1, 0.0),),
        patient_id=patient,
        rtplan_uid=None,
    )


def _header(**changes: object) -> InstanceHeader:
    values: dict[str, object] = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.481.3",
        "sop_instance_uid": "1.2.9",
        "modality": "RTSTRUCT",
        "study_uid": "1.2.8",
        "series_uid": "1.2.7",
        "patient_id": "P1",
        "frame_of_reference_uids": ("1.2.3",),
        "referenced_ct_series_uids": ("1.2.3.1",),
        "dose_summation_type": None,
        "instance_number": 1,
    }
    values.update(changes)
    return InstanceHeader(**values)  # type: ignore[arg-type]


class TestReadHeader:
    def test_an_rtstruct_names_its_frame_and_ct_series(self, built: BuiltCase) -> None:
        header = read_header(built.rtstruct_path)
        ds = pydicom.dcmread(built.rtstruct_path)
        assert header.modality == "RTSTRUCT" and header.sop_instance_uid == ds.SOPInstanceUID
        assert header.frame_of_reference_uids == (built.ct.frame_of_reference_uid,)
        assert header.referenced_ct_series_uids == (built.ct.series_uid,)

    def test_a_class_other_than_the_four_is_not_supported(self) -> None:
        with pytest.raises(
            InstanceRefusedError, match=r"MR Image Storage \(1.2.840.10008.5.1.4.1.1.4\) is not taken"
        ) as err:
            read_header(Path(get_path("mr")))
        assert err.value.status is PushStatus.SOP_CLASS_NOT_SUPPORTED
        with pytest.raises(InstanceRefusedError) as err:
            check_sop_class("1.2.840.10008.5.1.4.1.1.7")
        assert err.value.status == 0x0122

    @pytest.mark.parametrize(
        ("expected", "words"),
        [
            (
                {"expected_sop_class": "1.2.840.10008.5.1.4.1.1.481.5"},
                "SOPClassUID 1.2.840.10008.5.1.4.1.1.481.3 differs",
            ),
            ({"expected_sop_instance": "1.2.3.4"}, "SOPInstanceUID .* differs from the request's 1.2.3.4"),
        ],
    )
    def test_a_dataset_contradicting_the_request_does_not_match(
        self, built: BuiltCase, expected: dict[str, str], words: str
    ) -> None:
        with pytest.raises(InstanceRefusedError, match=words) as err:
            read_header(built.rtstruct_path, **expected)
        assert err.value.status is PushStatus.DOES_NOT_MATCH_SOP_CLASS

    @pytest.mark.parametrize(
        ("changes", "words"),
        [
            ({"Modality": "CT"}, r"\(0008,0060\) Modality 'CT' does not fit RT Structure Set Storage"),
            ({"StudyInstanceUID": None}, r"\(0020,000D\) StudyInstanceUID is missing"),
        ],
    )
    def test_wrong_or_missing_attributes_do_not_match(
        self, built: BuiltCase, tmp_path: Path, changes: dict[str, str | None], words: str
    ) -> None:
        ds = pydicom.dcmread(built.rtstruct_path)
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(tmp_path / "x.dcm")
        with pytest.raises(InstanceRefusedError, match=words) as err:
            read_header(tmp_path / "x.dcm")
        assert err.value.status is PushStatus.DOES_NOT_MATCH_SOP_CLASS and len(err.value.comment) <= COMMENT_MAX_CHARS

    def test_bytes_that_are_not_dicom_cannot_be_understood(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.dcm"
        junk.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
        with pytest.raises(InstanceRefusedError) as err:
            read_header(junk)
        assert err.value.status is PushStatus.CANNOT_UNDERSTAND


class TestCheckAgainstCase:
    def test_the_case_patient_and_study_must_agree(self) -> None:
        case = [_ref(1, "a")]
        check_against_case(_header(), case, study_frame_of_reference_uid="1.2.3", study_patient_id="P1")
        cases = [
            (
                _header(patient_id="P2"),
                case,
                None,
                None,
                PushStatus.ANOTHER_PATIENT,
                "PatientID 'P2' is not the case's 'P1'",
            ),
            (
                _header(patient_id="P2"),
                [_ref(1, "a", patient=None)],
                None,
                "P1",
                PushStatus.ANOTHER_PATIENT,
                "differs from 'P1'",
            ),
            (_header(), [], None, None, PushStatus.NO_CASE, "that of no benchmark case"),
            (_header(), case, "1.2.4", None, PushStatus.OTHER_FRAME_OF_REFERENCE, "differs from 1.2.4 of the study"),
        ]
        for header, candidates, frame, patient, status, words in cases:
            with pytest.raises(InstanceRefusedError, match=words) as err:
                check_against_case(header, candidates, study_frame_of_reference_uid=frame, study_patient_id=patient)
            assert err.value.status is status and len(err.value.comment) <= COMMENT_MAX_CHARS

    def test_a_plan_without_a_frame_of_reference_waits_for_the_rest(self) -> None:
        plan = _header(modality="RTPLAN", frame_of_reference_uids=(), referenced_ct_series_uids=())
        check_against_case(plan, [], study_frame_of_reference_uid=None, study_patient_id=None)

    @pytest.mark.parametrize(
        ("summation", "stage", "refused"),
        [
            ("PLAN", QAStage.OUTLINING_BENCHMARK, False),
            ("BEAM", QAStage.OUTLINING_BENCHMARK, True),
            ("BEAM", QAStage.PLANNING_BENCHMARK, False),
            ("BEAM", QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK, False),
            ("FRACTION", QAStage.PLANNING_BENCHMARK, True),
            (None, QAStage.PLANNING_BENCHMARK, True),
        ],
    )
    def test_only_the_plan_dose_or_summable_beam_doses(
        self, summation: str | None, stage: QAStage, refused: bool
    ) -> None:
        dose = _header(modality="RTDOSE", dose_summation_type=summation, referenced_ct_series_uids=())
        check = lambda: check_against_case(  # noqa: E731
            dose, [_ref(1, "a", stage=stage)], study_frame_of_reference_uid=None, study_patient_id=None
        )
        if not refused:
            check()
            return
        with pytest.raises(InstanceRefusedError, match=r"\(3004,000A\) DoseSummationType is") as err:
            check()
        assert err.value.status is PushStatus.NOT_A_PLAN_DOSE


class TestCaseIndex:
    def test_the_frame_of_reference_decides_and_the_newest_version_wins(self) -> None:
        index = CaseIndex([_ref(1, "a"), _ref(2, "a", days=3), _ref(3, "b", frame="9.9", series="9.9.1")])
        assert index.identify(frame_of_reference_uids=["1.2.3"]).case_id == 2
        assert index.identify(frame_of_reference_uids=[], ct_series_uids=["9.9.1"]).case_code == "b"
        # A frame of reference given: a CT series of another case does not make it that case.
        assert index.candidates(frame_of_reference_uids=["7.7"], ct_series_uids=["9.9.1"]) == []

    def test_no_case_and_several_cases_are_refused_by_name(self) -> None:
        index = CaseIndex([_ref(1, "a"), _ref(2, "b")])
        with pytest.raises(CaseMatchError, match=r"no benchmark case has \(0020,0052\) FrameOfReferenceUID 7.7"):
            index.identify(frame_of_reference_uids=["7.7"])
        with pytest.raises(CaseMatchError, match=r"several benchmark cases \(a@1.0, b@1.0\)") as err:
            index.identify(frame_of_reference_uids=["1.2.3"])
        assert err.value.comment == "the objects match several benchmark cases"
        with pytest.raises(CaseMatchError, match="carry no"):
            index.identify(frame_of_reference_uids=[])

    def test_loaded_from_the_registered_cases(self, engine: Engine, registered: int, built: BuiltCase) -> None:
        with Session(engine) as session:
            index = CaseIndex.load(session)
        (ref,) = index.references
        assert (ref.case_code, ref.frame_of_reference_uid, ref.ct_series_uid) == (
            CASE,
            built.ct.frame_of_reference_uid,
            built.ct.series_uid,
        )
        assert len(ref.ct_slices) == len(list(built.ct_dir.glob("*.dcm"))) and ref.patient_id == "RTQA-LUNG-MINI"
        assert [s.z_mm for s in ref.ct_slices] == sorted(s.z_mm for s in ref.ct_slices if s.z_mm is not None)


def _copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target


class TestStaging:
    @pytest.fixture
    def index(self, engine: Engine, registered: int) -> CaseIndex:
        with Session(engine) as session:
            return CaseIndex.load(session)

    def test_files_land_whole_and_a_resend_replaces(
        self, settings: Settings, index: CaseIndex, built: BuiltCase, tmp_path: Path
    ) -> None:
        staging = Staging(tmp_path / "stage", settings)
        ct = next(built.ct_dir.glob("*.dcm"))
        for n in range(2):
            staged = staging.receive(_copy(ct, tmp_path / f"in{n}.dcm"), provider_code=OWN, index=index, sender="t")
        files = sorted(p.relative_to(staging.root).as_posix() for p in staging.root.rglob("*") if p.is_file())
        ds = pydicom.dcmread(ct)
        assert files == [
            f"{OWN}/{ds.StudyInstanceUID}/.study.json",
            f"{OWN}/{ds.StudyInstanceUID}/CT/{ds.SOPInstanceUID}.dcm",
        ]
        assert staged.path.read_bytes() == ct.read_bytes() and not (tmp_path / "in1.dcm").exists()

    def test_over_the_upload_limit_or_the_disk_reserve_is_out_of_resources(
        self, settings: Settings, index: CaseIndex, built: BuiltCase, tmp_path: Path
    ) -> None:
        ct = sorted(built.ct_dir.glob("*.dcm"))
        small = Staging(tmp_path / "a", settings.model_copy(update={"max_upload_bytes": ct[0].stat().st_size + 10}))
        small.receive(_copy(ct[0], tmp_path / "0.dcm"), provider_code=OWN, index=index, sender="t")
        with pytest.raises(InstanceRefusedError, match="RTQA_MAX_UPLOAD_BYTES") as err:
            small.receive(_copy(ct[1], tmp_path / "1.dcm"), provider_code=OWN, index=index, sender="t")
        assert err.value.status is PushStatus.OUT_OF_RESOURCES
        full = Staging(tmp_path / "b", settings, min_free_bytes=1 << 62)
        with pytest.raises(InstanceRefusedError, match="disk is nearly full") as err:
            full.receive(_copy(ct[0], tmp_path / "2.dcm"), provider_code=OWN, index=index, sender="t")
        assert err.value.status == 0xA700 and not any(p.suffix == ".dcm" for p in full.root.rglob("*"))

    def test_a_study_of_no_case_leaves_no_row_and_no_file_but_an_audit_record(
        self, settings: Settings, engine: Engine, index: CaseIndex, built: BuiltCase, tmp_path: Path
    ) -> None:
        staging = Staging(tmp_path / "stage", settings)
        plan = rewrite(
            Path(get_path("rt_plan")),
            tmp_path / "plan.dcm",
            PatientID="RTQA-LUNG-MINI",
            StudyInstanceUID=built.ct.study_uid,
        )
        if "FrameOfReferenceUID" in pydicom.dcmread(plan):
            ds = pydicom.dcmread(plan)
            del ds.FrameOfReferenceUID
            ds.save_as(plan)
        staging.receive(plan, provider_code=OWN, index=index, sender="dicom:X")  # no frame: taken for now
        receipt = staging.finalise(OWN, built.ct.study_uid, index=index, via="C-STORE")
        assert receipt is not None and receipt.submission_id is None and receipt.status == PushStatus.NO_CASE
        assert receipt.reason is not None and "carry no (0020,0052) FrameOfReferenceUID" in receipt.reason
        assert not any(staging.root.rglob("*.dcm")) and not settings.submissions_dir.exists()
        with Session(engine) as session:
            assert session.exec(select(Submission)).all() == []
            (audit,) = session.exec(select(AuditEvent).where(AuditEvent.action == "dicom.push_refused")).all()
        assert (
            audit.actor == "dicom:X"
            and audit.after is not None
            and audit.after["instances_by_modality"] == {"RTPLAN": 1}
        )

    def test_a_failure_to_store_keeps_the_study_for_another_try(
        self, settings: Settings, index: CaseIndex, built: BuiltCase, tmp_path: Path
    ) -> None:
        broken = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'missing' / 'x.db'}"})
        staging = Staging(tmp_path / "stage", broken)
        staging.receive(_copy(built.rtstruct_path, tmp_path / "rs.dcm"), provider_code=OWN, index=index, sender="t")
        with pytest.raises(OperationalError):
            staging.finalise(OWN, built.ct.study_uid, index=index, via="C-STORE")
        kept = [p.name for p in staging.root.rglob("*.dcm")]
        assert kept == [f"{pydicom.dcmread(built.rtstruct_path).SOPInstanceUID}.dcm"]
        assert not any(p.name.startswith(".finalising-") for p in staging.root.rglob("*"))

    def test_a_beam_dose_for_an_outlining_case_is_recorded_as_refused(
        self, settings: Settings, index: CaseIndex, built: BuiltCase, tmp_path: Path
    ) -> None:
        staging = Staging(tmp_path / "stage", settings)
        dose = beam_dose_for(
            next(built.ct_dir.glob("*.dcm")), tmp_path / "d.dcm", sop_instance_uid="1.2.826.0.1.3680043.8.498.9"
        )
        with pytest.raises(InstanceRefusedError) as err:
            staging.receive(dose, provider_code=OWN, index=index, sender="t")
        assert err.value.comment == "DoseSummationType BEAM: send the PLAN dose"
        (line,) = (staging.study_dir(OWN, built.ct.study_uid) / ".refused.jsonl").read_text().splitlines()
        assert '"status": "0xC102"' in line and os.path.exists(dose)
