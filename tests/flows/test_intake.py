"""Upload intake pieces: names kept inside the upload, stray files, and reasons free of server paths."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from flows.intake import UnsafeUploadError, is_dicom_file, remove_stray_files, safe_relative_path
from flows.steps import relative_to_submission


class TestSafeRelativePath:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("CT/ct1.dcm", "CT/ct1.dcm"),
            ("./CT//ct1.dcm", "CT/ct1.dcm"),
            ("CT\\ct1.dcm", "CT/ct1.dcm"),
            ("a..b.dcm", "a..b.dcm"),
        ],
    )
    def test_kept(self, name: str, expected: str) -> None:
        assert safe_relative_path(name) == PurePosixPath(expected)

    @pytest.mark.parametrize(
        ("name", "match"),
        [
            ("/etc/passwd", "absolute"),
            ("\\\\server\\share\\x.dcm", "absolute"),
            ("C:\\x.dcm", "absolute"),
            ("c:x.dcm", "absolute"),
            ("CT/../../x.dcm", r"'\.\.'"),
            ("..\\x.dcm", r"'\.\.'"),
            ("", "empty"),
            ("./", "empty"),
        ],
    )
    def test_refused(self, name: str, match: str) -> None:
        with pytest.raises(UnsafeUploadError, match=match):
            safe_relative_path(name)


class TestStrayFiles:
    def test_dicom_with_and_without_preamble_is_kept(self, tmp_path: Path) -> None:
        import pydicom
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        ds = pydicom.Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
        ds.SOPInstanceUID = "1.2.3.4"
        ds.Modality = "RTSTRUCT"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(tmp_path / "with.dcm", enforce_file_format=True)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(tmp_path / "bare.dcm", implicit_vr=True, little_endian=True)
        assert (tmp_path / "bare.dcm").read_bytes()[128:132] != b"DICM"
        (tmp_path / "notes.txt").write_text("a text file of more than 132 bytes " * 10)
        (tmp_path / "short").write_bytes(b"x")
        assert [is_dicom_file(tmp_path / n) for n in ("with.dcm", "bare.dcm", "notes.txt", "short")] == [
            True,
            True,
            False,
            False,
        ]
        warnings = remove_stray_files(tmp_path)
        assert warnings == ["notes.txt: not a DICOM file; ignored", "short: not a DICOM file; ignored"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.dcm", "with.dcm"]

    def test_emptied_folders_are_removed(self, tmp_path: Path) -> None:
        (tmp_path / "__MACOSX" / "CT").mkdir(parents=True)
        (tmp_path / "__MACOSX" / "CT" / "._a.dcm").write_bytes(b"\0")
        assert remove_stray_files(tmp_path) == ["__MACOSX/CT/._a.dcm: a hidden or archiver file; ignored"]
        assert list(tmp_path.iterdir()) == []


class TestRelativeToSubmission:
    def test_storage_path_is_taken_out(self, tmp_path: Path) -> None:
        root = tmp_path / "submissions" / "the-christie" / ("a" * 64)
        message = f"the submission holds 2 RTSTRUCT files ({root}/rs.dcm, {root}/extra/rs2.dcm); {root}: bad"
        assert relative_to_submission(message, str(root)) == (
            "the submission holds 2 RTSTRUCT files (rs.dcm, extra/rs2.dcm); the submission: bad"
        )

    def test_resolved_form_is_taken_out_too(self, tmp_path: Path) -> None:
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        message = f"{(tmp_path / 'real').resolve()}/ct.dcm: not a DICOM file"
        assert relative_to_submission(message, str(tmp_path / "link")) == "ct.dcm: not a DICOM file"
