"""Every element of every submitted file must decode, also where the files of a series share most elements: a
damaged value in one slice is found whichever slice it is in and however many intact copies the others hold."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from qa_checks.dicom_io import load_submission
from qa_checks.errors import InvalidValueError
from tests.qa_checks.conftest import DicomFactory

FD_HEADER = b"\x18\x00\x06\x93FD"  # (0018,9306) SingleCollimationWidth, explicit VR little endian
INTACT = FD_HEADER + b"\x08\x00" + struct.pack("<d", 1.0)
DAMAGED = FD_HEADER + b"\x07\x00" + struct.pack("<d", 1.0)[:7]  # 7 bytes: no FD value


def _ct_with_element(factory: DicomFactory, *, nested: bool) -> list[Path]:
    """Four CT slices carrying the same (0018,9306) value, at the top level or in a sequence item."""
    written = factory.ct_series([0.0, 2.0, 4.0, 6.0], np.arange(4.0), np.arange(4.0))
    for path in written.paths:
        ds = pydicom.dcmread(path)
        if nested:
            item = Dataset()
            item.SingleCollimationWidth = 1.0
            item.is_undefined_length_sequence_item = True  # damaging the value leaves the item readable
            ds.CTAcquisitionDetailsSequence = [item]
            ds["CTAcquisitionDetailsSequence"].is_undefined_length = True
        else:
            ds.SingleCollimationWidth = 1.0
        ds.save_as(path)
    return written.paths


def _damage(path: Path) -> None:
    data = path.read_bytes()
    assert data.count(INTACT) == 1
    path.write_bytes(data.replace(INTACT, DAMAGED))


@pytest.mark.parametrize("nested", [False, True])
def test_intact_copies_load(dicom_factory: DicomFactory, nested: bool) -> None:
    _ct_with_element(dicom_factory, nested=nested)
    assert load_submission(dicom_factory.root).ct is not None


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("damaged", [[0], [3], [1, 2]])
def test_a_damaged_copy_is_found_in_any_slice(dicom_factory: DicomFactory, nested: bool, damaged: list[int]) -> None:
    paths = _ct_with_element(dicom_factory, nested=nested)
    for k in damaged:
        _damage(paths[k])
    with pytest.raises(InvalidValueError) as caught:
        load_submission(dicom_factory.root)
    message = str(caught.value)
    assert paths[damaged[0]].name in message
    assert "cannot be decoded" in message
    assert "(0018,9306) SingleCollimationWidth" in message  # the damaged element, also inside a sequence item
