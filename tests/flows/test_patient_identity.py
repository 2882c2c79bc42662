"""Patient identity in submitted headers (:mod:`flows.patient_identity`): refused, never repeated, audited."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase, build_case, reference_files
from flows._store import engine_for
from flows.catalogue import build_reference, register_case
from flows.credentialing import IngestError, store_submission
from flows.patient_identity import (
    PatientIdentityError,
    UnreadableHeaderError,
    case_identity,
    check_patient_identity,
)
from models.settings import Settings
from models.tables import AuditEvent, Submission

CASE = {"PatientName": "Benchmark^Case", "PatientID": "RTQA-CASE", "PatientBirthDate": ""}
OTHER_CASE = {"PatientName": "Benchmark^Other", "PatientID": "RTQA-OTHER", "PatientBirthDate": ""}


def _write(folder: Path, name: str, **attributes: object) -> Path:
    ds = Dataset()
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[name])
    ds.Modality = "RTSTRUCT"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element with a short length."""
    if len(value) % 2:
        value += b" "
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value)) + value


class TestCheck:
    def test_the_case_identity_padded_or_empty_passes(self, tmp_path: Path) -> None:
        _write(tmp_path, "a.dcm", PatientName="Benchmark^Case^^", PatientID="RTQA-CASE ")
        _write(tmp_path, "CT/b.dcm", PatientName="", PatientID="")
        check_patient_identity(tmp_path, CASE)

    def test_another_identity_is_refused_naming_file_tag_and_the_case_value_only(self, tmp_path: Path) -> None:
        _write(tmp_path, "CT/a.dcm", PatientName="Benchmark^Case", PatientID="RTQA-CASE")
        _write(tmp_path, "CT/b.dcm", PatientName="SMITH^John", PatientID="9434765919", PatientBirthDate="19580412")
        _write(tmp_path, "RS.dcm", PatientName="SMITH^John")
        with pytest.raises(PatientIdentityError) as raised:
            check_patient_identity(tmp_path, CASE)
        message = str(raised.value)
        assert message.startswith("CT/b.dcm: a patient identity other than the benchmark's: differs from the case's")
        assert "(0010,0010) PatientName 'Benchmark^Case'" in message and "(0010,0030) PatientBirthDate ''" in message
        assert "(1 more files likewise)" in message and "nothing was stored" in message
        assert not any(value in message for value in ("SMITH", "John", "9434765919", "19580412"))
        assert raised.value.findings == (
            ("CT/b.dcm", ("(0010,0010) PatientName", "(0010,0020) PatientID", "(0010,0030) PatientBirthDate")),
            ("RS.dcm", ("(0010,0010) PatientName",)),
        )

    @pytest.mark.parametrize(
        ("keyword", "value"),
        [
            ("PatientAddress", "12 Acacia Avenue, Manchester"),
            ("OtherPatientIDs", "9434765919"),
            ("PatientTelephoneNumbers", "0161 000000"),
            ("PatientMotherBirthName", "JONES^Mary"),
        ],
    )
    def test_attributes_the_profile_removes_must_be_absent(self, tmp_path: Path, keyword: str, value: str) -> None:
        _write(tmp_path, "RS.dcm", PatientName="Benchmark^Case", **{keyword: value})
        with pytest.raises(PatientIdentityError, match=rf"RS\.dcm: .*\) {keyword} must be absent") as raised:
            check_patient_identity(tmp_path, CASE)
        assert value not in str(raised.value)

    def test_another_registered_case_identity_passes_for_validation_to_judge(self, tmp_path: Path) -> None:
        _write(tmp_path, "RS.dcm", PatientName="Benchmark^Other", PatientID="RTQA-OTHER")
        check_patient_identity(tmp_path, CASE, [OTHER_CASE])
        _write(tmp_path, "RS.dcm", PatientName="Benchmark^Other", PatientID="RTQA-CASE")  # a mixture is not a case
        with pytest.raises(PatientIdentityError):
            check_patient_identity(tmp_path, CASE, [OTHER_CASE])

    def test_an_identity_out_of_order_is_still_seen(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "RS.dcm", StructureSetLabel="x")
        with path.open("ab") as fh:  # after (3006,0002): out of order, but every reader still shows it
            fh.write(_element(0x00100010, b"PN", b"SMITH^John"))
        assert str(pydicom.dcmread(path).PatientName) == "SMITH^John"
        with pytest.raises(PatientIdentityError, match=r"\(0010,0010\) PatientName"):
            check_patient_identity(tmp_path, CASE)

    def test_an_identity_attribute_twice_is_refused(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "CT/RS.dcm", PatientName="SMITH^John", StructureSetLabel="x")
        with path.open("ab") as fh:  # a second PatientName that readers show instead of the first
            fh.write(_element(0x00100010, b"PN", b"Benchmark^Case"))
        assert str(pydicom.dcmread(path).PatientName) == "Benchmark^Case"
        with pytest.raises(UnreadableHeaderError, match=r"^CT/RS\.dcm: the file holds \(0010,0010\) PatientName more"):
            check_patient_identity(tmp_path, CASE)

    def test_a_damaged_file_cannot_be_checked(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "RS.dcm", PatientName="Benchmark^Case")
        data = bytearray(path.read_bytes())
        at = data.index(b"PN")
        data[at : at + 2] = b"\x50\x06"  # the VR of (0010,0010) damaged
        path.write_bytes(bytes(data))
        with pytest.raises(
            UnreadableHeaderError, match=r"^RS\.dcm: the DICOM file cannot be read \(NotImplementedError\)"
        ):
            check_patient_identity(tmp_path, CASE)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case("lung-sabr-outlining-mini", tmp_path_factory.mktemp("cases"))


class TestIngest:
    def test_refused_before_storage_and_audited_without_the_values(
        self, settings: Settings, built: BuiltCase, tmp_path: Path
    ) -> None:
        url = settings.resolved_database_url
        register_case.fn(
            build_reference.fn(built.spec.case_id, str(built.directory.parent)), actor="t", database_url=url
        )
        assert case_identity(reference_files(built.directory)[0])["PatientID"] == "RTQA-LUNG-MINI"
        upload = tmp_path / "upload"
        _write(upload, "RS.dcm", PatientName="NGUYEN^Wei", PatientID="RM123456")
        with pytest.raises(IngestError, match=r"^RS\.dcm: a patient identity other than the benchmark's"):
            store_submission(
                str(upload),
                provider_code="the-christie",
                case_code=built.spec.case_id,
                case_version=None,
                actor="phys@christie.test",
                database_url=url,
                data_dir=str(settings.data_dir),
            )
        with Session(engine_for(url)) as session:
            assert session.exec(select(Submission)).all() == []
            events = session.exec(select(AuditEvent).where(AuditEvent.action == "submission.refused")).all()
        assert len(events) == 1 and events[0].actor == "phys@christie.test" and events[0].subject_id == "the-christie"
        assert events[0].after == {
            "case": f"{built.spec.case_id}@{built.spec.version}",
            "rule": "patient identity (DICOM PS3.15 Basic Application Level Confidentiality Profile)",
            "files": [{"file": "RS.dcm", "tags": ["(0010,0010) PatientName", "(0010,0020) PatientID"]}],
            "files_refused": 1,
        }
        assert "NGUYEN" not in json.dumps([events[0].after, events[0].reason]) and "RM123456" not in events[0].reason
        assert not settings.submissions_dir.exists() or list(settings.submissions_dir.rglob("*")) == []
