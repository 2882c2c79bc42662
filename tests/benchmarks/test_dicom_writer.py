"""Tests of benchmarks.dicom_writer: CT series and RT Structure Set files, read back with pydicom and with
qa_checks.dicom_io / qa_checks.rasterise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from skimage.draw import polygon2mask

from benchmarks.dicom_writer import (
    CT_IMAGE_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    CtSeriesInfo,
    DicomWriteError,
    mask_to_contours,
    read_ct_series_info,
    write_ct_series,
    write_rtstruct,
)
from benchmarks.phantoms import Phantom, simple_thorax_phantom

PATIENT_ID = "RTQA-TEST"
PATIENT_NAME = "Test^Phantom"


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return simple_thorax_phantom()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, phantom: Phantom) -> tuple[CtSeriesInfo, Path]:
    out = tmp_path_factory.mktemp("written")
    ct = write_ct_series(
        phantom,
        out / "CT",
        uid_seed="test-seed",
        patient_id=PATIENT_ID,
        patient_name=PATIENT_NAME,
        body_part_examined="CHEST",
    )
    rs = write_rtstruct(
        phantom.masks, ct, out / "RS.dcm", interpreted_types=phantom.interpreted_types, uid_seed="test-seed"
    )
    return ct, rs


def _dice(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    return 2.0 * float(np.count_nonzero(a & b)) / float(np.count_nonzero(a) + np.count_nonzero(b))


def _even_odd_fill(ct: CtSeriesInfo, polygons_xyz: list[tuple[int, NDArray[np.float64]]]) -> NDArray[np.bool_]:
    """Independent rasteriser for the tests: even-odd fill of each slice's polygons at voxel centres."""
    mask = np.zeros(ct.shape, dtype=bool)
    for k, points in polygons_xyz:
        rows = (points[:, 1] - ct.y0_mm) / ct.row_spacing_mm
        cols = (points[:, 0] - ct.x0_mm) / ct.column_spacing_mm
        mask[k] ^= polygon2mask((ct.rows, ct.columns), np.column_stack([rows, cols]))  # type: ignore[no-untyped-call]
    return mask


class TestWriteCtSeries:
    def test_files_and_geometry(self, written: tuple[CtSeriesInfo, Path], phantom: Phantom) -> None:
        ct, _ = written
        assert len(ct.paths) == phantom.shape[0]
        assert ct.shape == phantom.shape
        ds = pydicom.dcmread(ct.paths[3])
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE
        assert ds.SOPClassUID == CT_IMAGE_STORAGE
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == ct.sop_instance_uids[3]
        assert [float(v) for v in ds.ImagePositionPatient] == [phantom.x_mm[0], phantom.y_mm[0], phantom.z_mm[3]]
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.0]  # (row spacing along y, column spacing along x)
        assert float(ds.SliceThickness) == 3.0
        assert ds.PatientPosition == "HFS"
        assert ds.FrameOfReferenceUID == ct.frame_of_reference_uid
        assert ds.StudyInstanceUID == ct.study_uid
        assert ds.SeriesInstanceUID == ct.series_uid

    def test_type1_and_type2_attributes_present(self, written: tuple[CtSeriesInfo, Path]) -> None:
        ds = pydicom.dcmread(written[0].paths[0])
        for keyword in (
            "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
            "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "Modality", "SeriesInstanceUID",
            "SeriesNumber", "FrameOfReferenceUID", "PositionReferenceIndicator", "Manufacturer", "InstanceNumber",
            "ImageType", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
            "BitsStored", "HighBit", "PixelRepresentation", "RescaleIntercept", "RescaleSlope", "KVP",
            "AcquisitionNumber", "SOPClassUID", "SOPInstanceUID",
        ):  # fmt: skip
            assert keyword in ds, keyword

    def test_hu_round_trip_exact(self, written: tuple[CtSeriesInfo, Path], phantom: Phantom) -> None:
        # Phantom HU are integers inside the storable range, so the round trip is exact.
        for k in (0, 17, phantom.shape[0] - 1):
            ds = pydicom.dcmread(written[0].paths[k])
            hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            np.testing.assert_array_equal(hu, phantom.hu[k])

    def test_same_seed_same_uids_and_bytes(self, tmp_path: Path, phantom: Phantom) -> None:
        small = simple_thorax_phantom(shape=(3, 20, 30))
        a = write_ct_series(small, tmp_path / "a", uid_seed="s1", patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
        b = write_ct_series(small, tmp_path / "b", uid_seed="s1", patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
        c = write_ct_series(small, tmp_path / "c", uid_seed="s2", patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
        assert a.sop_instance_uids == b.sop_instance_uids
        assert a.study_uid == b.study_uid and a.frame_of_reference_uid == b.frame_of_reference_uid
        assert all(pa.read_bytes() == pb.read_bytes() for pa, pb in zip(a.paths, b.paths, strict=True))
        assert set(a.sop_instance_uids).isdisjoint(c.sop_instance_uids)
        assert a.study_uid != c.study_uid
        assert all(pydicom.uid.UID(u).is_valid for u in a.sop_instance_uids)
        assert len(set(a.sop_instance_uids)) == 3

    def test_read_ct_series_info_round_trip(self, written: tuple[CtSeriesInfo, Path]) -> None:
        ct, _ = written
        assert read_ct_series_info(ct.paths[0].parent) == ct

    def test_shape_mismatch(self, tmp_path: Path, phantom: Phantom) -> None:
        class Bad:
            hu = np.zeros((2, 3, 4), dtype=np.float32)
            z_mm = np.arange(2.0)
            y_mm = np.arange(3.0)
            x_mm = np.arange(5.0)

        with pytest.raises(DicomWriteError, match=r"volume.hu has shape \(2, 3, 4\); expected \(z, y, x\)"):
            write_ct_series(Bad(), tmp_path, patient_id=PATIENT_ID, patient_name=PATIENT_NAME)

    def test_non_uniform_axis(self, tmp_path: Path) -> None:
        class Bad:
            hu = np.zeros((3, 2, 2), dtype=np.float32)
            z_mm = np.array([0.0, 1.0, 3.0])
            y_mm = np.arange(2.0)
            x_mm = np.arange(2.0)

        with pytest.raises(DicomWriteError, match="z_mm must be uniformly increasing"):
            write_ct_series(Bad(), tmp_path, patient_id=PATIENT_ID, patient_name=PATIENT_NAME)

    def test_read_info_of_empty_directory(self, tmp_path: Path) -> None:
        with pytest.raises(DicomWriteError, match="no CT image files"):
            read_ct_series_info(tmp_path)


class TestMaskToContours:
    def test_encloses_exactly_the_voxel_centres_with_holes(self, written: tuple[CtSeriesInfo, Path]) -> None:
        ct, _ = written
        rng = np.random.default_rng(7)
        z, y, x = np.meshgrid(*(np.arange(n) for n in ct.shape), indexing="ij", sparse=True)
        ring = ((y - 50) ** 2 + (x - 70) ** 2 <= 30**2) & ((y - 50) ** 2 + (x - 70) ** 2 > 12**2) & (z > 5) & (z < 30)
        island = (y - 50) ** 2 + (x - 70) ** 2 <= 4**2  # an island inside the hole
        blobs = rng.random(ct.shape) > 0.7  # speckle: single voxels, diagonal touches, many holes
        mask = np.asarray(ring | (island & (z > 5) & (z < 30)) | (blobs & (z == 2)))
        polygons = mask_to_contours(mask, ct)
        rebuilt = _even_odd_fill(ct, [(c.slice_index, c.points_mm) for c in polygons])
        np.testing.assert_array_equal(rebuilt, mask)
        assert all(c.points_mm[0, 2] == ct.z_mm[c.slice_index] for c in polygons)

    def test_vertices_on_half_voxel_lattice(self, written: tuple[CtSeriesInfo, Path], phantom: Phantom) -> None:
        ct, _ = written
        for contour in mask_to_contours(phantom.masks["GTV"], ct):
            cols = (contour.points_mm[:, 0] - ct.x0_mm) / ct.column_spacing_mm
            rows = (contour.points_mm[:, 1] - ct.y0_mm) / ct.row_spacing_mm
            # Marching squares at level 0.5 on a binary image puts every vertex on a voxel edge midpoint.
            assert np.allclose(cols * 2, np.round(cols * 2)) and np.allclose(rows * 2, np.round(rows * 2))

    def test_empty_mask_gives_no_contours(self, written: tuple[CtSeriesInfo, Path]) -> None:
        assert mask_to_contours(np.zeros(written[0].shape, dtype=bool), written[0]) == []

    def test_shape_mismatch(self, written: tuple[CtSeriesInfo, Path]) -> None:
        with pytest.raises(DicomWriteError, match=r"mask has shape \(1, 2, 3\), but the CT grid"):
            mask_to_contours(np.zeros((1, 2, 3), dtype=bool), written[0])


class TestWriteRtstruct:
    def test_references(self, written: tuple[CtSeriesInfo, Path]) -> None:
        ct, rs_path = written
        ds = pydicom.dcmread(rs_path)
        assert ds.SOPClassUID == RT_STRUCTURE_SET_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert ds.Modality == "RTSTRUCT"
        assert ds.StudyInstanceUID == ct.study_uid
        assert ds.PatientID == ct.patient_id
        frame = ds.ReferencedFrameOfReferenceSequence[0]
        assert frame.FrameOfReferenceUID == ct.frame_of_reference_uid
        study = frame.RTReferencedStudySequence[0]
        assert study.ReferencedSOPInstanceUID == ct.study_uid
        series = study.RTReferencedSeriesSequence[0]
        assert series.SeriesInstanceUID == ct.series_uid
        assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == list(ct.sop_instance_uids)
        uid_by_z = dict(zip(ct.z_mm, ct.sop_instance_uids, strict=True))
        for roi_contour in ds.ROIContourSequence:
            for item in roi_contour.ContourSequence:
                assert item.ContourGeometricType == "CLOSED_PLANAR"
                assert len(item.ContourData) == 3 * item.NumberOfContourPoints
                z = float(item.ContourData[2])
                assert item.ContourImageSequence[0].ReferencedSOPInstanceUID == uid_by_z[z]
                assert item.ContourImageSequence[0].ReferencedSOPClassUID == CT_IMAGE_STORAGE

    def test_rois(self, written: tuple[CtSeriesInfo, Path], phantom: Phantom) -> None:
        ds = pydicom.dcmread(written[1])
        names = [roi.ROIName for roi in ds.StructureSetROISequence]
        assert names == list(phantom.masks)
        numbers = [roi.ROINumber for roi in ds.StructureSetROISequence]
        assert [c.ReferencedROINumber for c in ds.ROIContourSequence] == numbers
        assert [o.ReferencedROINumber for o in ds.RTROIObservationsSequence] == numbers
        types = {n: o.RTROIInterpretedType for n, o in zip(names, ds.RTROIObservationsSequence, strict=True)}
        assert types == phantom.interpreted_types
        assert all(roi.ReferencedFrameOfReferenceUID == written[0].frame_of_reference_uid
                   for roi in ds.StructureSetROISequence)  # fmt: skip

    def test_masks_round_trip_with_pydicom(self, written: tuple[CtSeriesInfo, Path], phantom: Phantom) -> None:
        ct, rs_path = written
        ds = pydicom.dcmread(rs_path)
        z_index = {z: k for k, z in enumerate(ct.z_mm)}
        for roi, roi_contour in zip(ds.StructureSetROISequence, ds.ROIContourSequence, strict=True):
            polygons = []
            for item in roi_contour.ContourSequence:
                pts = np.asarray([float(v) for v in item.ContourData]).reshape(-1, 3)
                polygons.append((z_index[pts[0, 2]], pts))
            rebuilt = _even_odd_fill(ct, polygons)
            # The traced polygons enclose exactly the mask's voxel centres, so the round trip is exact.
            np.testing.assert_array_equal(rebuilt, phantom.masks[roi.ROIName], err_msg=roi.ROIName)

    def test_masks_round_trip_with_qa_checks(self, written: tuple[CtSeriesInfo, Path], phantom: Phantom) -> None:
        dicom_io = pytest.importorskip("qa_checks.dicom_io")
        rasterise = pytest.importorskip("qa_checks.rasterise")
        ct, rs_path = written
        volume = dicom_io.read_ct_series(ct.paths[0].parent)
        np.testing.assert_array_equal(volume.values, phantom.hu)
        np.testing.assert_array_equal(volume.x_mm, phantom.x_mm)
        structure_set = dicom_io.read_rtstruct(rs_path)
        for name, mask in phantom.masks.items():
            got = rasterise.rasterise(structure_set[name], volume)
            # Required agreement Dice >= 0.98; the contours pass half-way between voxel centres, so an even-odd
            # rasteriser sampling voxel centres reproduces the mask exactly (checked above with our own fill).
            assert _dice(got, mask) >= 0.98, name

    def test_same_seed_same_bytes(self, tmp_path: Path, written: tuple[CtSeriesInfo, Path], phantom: Phantom) -> None:
        ct, rs_path = written
        again = write_rtstruct(
            phantom.masks, ct, tmp_path / "RS.dcm", interpreted_types=phantom.interpreted_types, uid_seed="test-seed"
        )
        assert again.read_bytes() == rs_path.read_bytes()

    def test_empty_structure_written_without_contours(self, tmp_path: Path, written: tuple[CtSeriesInfo, Path]) -> None:
        ct, _ = written
        path = write_rtstruct({"Empty": np.zeros(ct.shape, dtype=bool)}, ct, tmp_path / "RS.dcm")
        ds = pydicom.dcmread(path)
        assert ds.StructureSetROISequence[0].ROIName == "Empty"
        assert "ContourSequence" not in ds.ROIContourSequence[0]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"label": ""}, r"StructureSetLabel must be 1..16 characters, got ''"),
            ({"label": "x" * 17}, r"StructureSetLabel must be 1..16 characters"),
            ({"roi_generation_algorithm": "GUESS"}, r"ROIGenerationAlgorithm must be .* got 'GUESS'"),
        ],
    )
    def test_invalid_arguments(
        self, tmp_path: Path, written: tuple[CtSeriesInfo, Path], kwargs: dict[str, str], message: str
    ) -> None:
        ct, _ = written
        with pytest.raises(DicomWriteError, match=message):
            write_rtstruct({"A": np.zeros(ct.shape, dtype=bool)}, ct, tmp_path / "RS.dcm", **kwargs)  # type: ignore[arg-type]


class TestRtstructModules:
    def test_type1_and_type2_attributes_present(self, written: tuple[CtSeriesInfo, Path]) -> None:
        ds = pydicom.dcmread(written[1])
        for keyword in (
            "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
            "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "Modality", "SeriesInstanceUID",
            "SeriesNumber", "OperatorsName", "Manufacturer", "StructureSetLabel", "StructureSetDate",
            "StructureSetTime", "StructureSetROISequence", "ROIContourSequence", "RTROIObservationsSequence",
            "SOPClassUID", "SOPInstanceUID",
        ):  # fmt: skip
            assert keyword in ds, keyword
        for roi in ds.StructureSetROISequence:
            for keyword in ("ROINumber", "ReferencedFrameOfReferenceUID", "ROIName", "ROIGenerationAlgorithm"):
                assert keyword in roi, keyword
        for obs in ds.RTROIObservationsSequence:
            for keyword in ("ObservationNumber", "ReferencedROINumber", "RTROIInterpretedType", "ROIInterpreter"):
                assert keyword in obs, keyword


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
class TestDciodvfy:
    """Conformance of the written files per dicom3tools' IOD verifier (runs only where the tool exists)."""

    @pytest.mark.parametrize("which", ["ct", "rtstruct"])
    def test_no_errors(self, written: tuple[CtSeriesInfo, Path], which: str) -> None:
        path = written[0].paths[0] if which == "ct" else written[1]
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], "\n".join(errors)
