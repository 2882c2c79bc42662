"""(3006,0050) ContourData parsed from its raw bytes equals pydicom's DS conversion, value for value."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from qa_checks.dicom_io import read_rtstruct
from qa_checks.errors import QAChecksError
from qa_checks.rtstruct_reader import _contour_data
from tests.qa_checks.conftest import DicomFactory, box_contours

TAG = Tag(0x30060050)


def item_with_raw(value: bytes, *, vr: str | None = "DS", little_endian: bool = True) -> Dataset:
    """A ContourSequence item holding ContourData as pydicom leaves it after reading: raw, unconverted."""
    item = Dataset()
    item._dict[TAG] = RawDataElement(TAG, vr, len(value), value, 0, vr is None, little_endian)
    return item


def pydicom_values(value: bytes, *, vr: str | None = "DS", little_endian: bool = True) -> list[float]:
    """The straightforward path: pydicom converts the element, each DS value is then taken as a float."""
    data = item_with_raw(value, vr=vr, little_endian=little_endian).ContourData
    return [float(v) for v in (data if isinstance(data, pydicom.multival.MultiValue) else [data])]


# Valid DS text in its many spellings: signs, exponents, no digits after or before the point, padding.
VALID = [
    b"1\\2\\3",
    b"-12.5\\+3.25e2\\.5 ",
    b"1.\\-0.000001\\1E-3",
    b" 7.125\\ 8 \\9.0\x00",
    b"-123.4567890123\\1.23456789012345\\-1.234567890e-10",
    b"0\\-0\\+0.0",
    b"1e308\\-2.22507385e-308\\5e-324",
    "\\".join(f"{v:.6f}" for v in np.random.default_rng(3).uniform(-400, 400, 3000)).encode(),
    "\\".join(f"{v:.13f}" for v in np.random.default_rng(4).uniform(-1, 1, 300)).encode(),
]


class TestContourDataFastPath:
    @pytest.mark.parametrize("value", VALID)
    @pytest.mark.parametrize(("vr", "little_endian"), [("DS", True), (None, True), ("DS", False)])
    def test_equals_pydicom_exactly(self, value: bytes, vr: str | None, little_endian: bool) -> None:
        expected = pydicom_values(value, vr=vr, little_endian=little_endian)
        item = item_with_raw(value, vr=vr, little_endian=little_endian)
        got = _contour_data(item)
        assert got is not None and got.dtype == np.float64
        assert got.tolist() == expected  # exact, bit for bit
        assert isinstance(item.get_item(TAG), RawDataElement)  # read without converting the dataset

    def test_fast_path_taken_without_pydicom_conversion(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("pydicom's DS conversion was used")

        monkeypatch.setattr(pydicom.valuerep.DSfloat, "__new__", refuse)
        got = _contour_data(item_with_raw(b"1.5\\-2\\3e1"))
        assert got is not None and got.tolist() == [1.5, -2.0, 30.0]

    @pytest.mark.parametrize(
        "value",
        [
            b"1.5\\2.5\\12345678901234567",  # a value over 16 characters (invalid DS)
            b"1.5\\ 2.5 x\\3",  # a character outside the DS repertoire
            b"1_0\\2\\3",  # Python's float accepts underscores, DS does not
            b"1.2.3\\2\\3",  # malformed numbers
            b"1e\\2\\3",
            b"1\\\\2",  # an empty value
        ],
    )
    def test_irregular_text_goes_through_pydicom(self, value: bytes) -> None:
        item = item_with_raw(value)
        try:
            expected: list[float] | type[Exception] = pydicom_values(value)
        except ValueError:
            expected = ValueError
        if expected is ValueError:
            with pytest.raises(ValueError):
                _contour_data(item)
        else:
            got = _contour_data(item)
            assert got is not None and got.tolist() == expected
        assert not isinstance(item.get_item(TAG), RawDataElement)  # pydicom converted it

    def test_already_converted_value(self) -> None:
        item = item_with_raw(b"1.25\\-2\\3")
        _ = item.ContourData  # converted by pydicom
        got = _contour_data(item)
        assert got is not None and got.tolist() == [1.25, -2.0, 3.0]

    def test_other_vr_goes_through_pydicom(self) -> None:
        item = Dataset()
        item.ContourData = [1.0, 2.5, -3.0]
        got = _contour_data(item)
        assert got is not None and got.tolist() == [1.0, 2.5, -3.0]

    @pytest.mark.parametrize("value", [b"", b"  ", b" \x00"])
    def test_empty_is_none(self, value: bytes) -> None:
        assert _contour_data(item_with_raw(value)) is None

    def test_absent_is_none(self) -> None:
        assert _contour_data(Dataset()) is None

    def test_single_value(self) -> None:
        got = _contour_data(item_with_raw(b"2.5"))
        assert got is not None and got.tolist() == [2.5]


class TestReadRTStructContourData:
    def test_pydicom_example(self) -> None:
        path = examples.get_path("rt_ss")
        ss = read_rtstruct(path)
        ds = pydicom.dcmread(path, force=True)
        expected = [
            [[float(v) for v in item.ContourData] for item in roi.ContourSequence] for roi in ds.ROIContourSequence
        ]
        got = [[c.points_mm.ravel().tolist() for c in s.contours] for s in ss]
        assert got == expected

    @pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
    def test_transfer_syntaxes(self, dicom_factory: DicomFactory, tmp_path: Path, syntax: str) -> None:
        path = dicom_factory.rtstruct(
            None, {"GTV": box_contours((-5.123456, 7.5), (-3.0, 4.25), np.array([-2.0, 0.0, 2.0]))}
        )
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = syntax
        out = tmp_path / "converted.dcm"
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
        reread = pydicom.dcmread(out)
        assert reread.file_meta.TransferSyntaxUID == syntax
        expected = [[float(v) for v in item.ContourData] for item in reread.ROIContourSequence[0].ContourSequence]
        got = [c.points_mm.ravel().tolist() for c in read_rtstruct(out)["GTV"].contours]
        assert got == expected and len(got) > 0

    def test_count_not_multiple_of_three(self, dicom_factory: DicomFactory, caplog: pytest.LogCaptureFixture) -> None:
        path = dicom_factory.rtstruct(None, {"GTV": box_contours((-5.0, 5.0), (-3.0, 3.0), np.array([-2.0, 0.0, 2.0]))})
        ds = pydicom.dcmread(path)
        ds.ROIContourSequence[0].ContourSequence[0].ContourData = ["1.0", "2.0", "3.0", "4.0"]
        ds.save_as(path, enforce_file_format=True)
        with caplog.at_level(logging.WARNING), pytest.raises(QAChecksError, match=r"has 4 values, not a multiple of 3"):
            read_rtstruct(path)
