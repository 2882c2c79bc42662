"""DICOM readers: pydicom's bundled RT examples, round trips in four patient positions, and every error."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import examples
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from qa_checks.dicom_io import load_submission, read_ct_series, read_rtdose, read_rtplan, read_rtstruct
from qa_checks.errors import (
    AmbiguousInputError,
    FrameOfReferenceMismatchError,
    InvalidGridError,
    MissingAttributeError,
    MissingReferenceError,
    NotDicomError,
    QAChecksError,
    UnsupportedDoseSummationError,
    UnsupportedDoseUnitsError,
    UnsupportedGeometryError,
    WrongModalityError,
)
from qa_checks.geometry import PATIENT_POSITIONS, DoseGrid, ImageVolume
from qa_checks.plan import DoseReference
from tests.qa_checks.conftest import DicomFactory, box_contours, rectangle


def hu_of_position(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], z: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """A HU field that differs along every axis, so any flip or transpose shows."""
    return x + 3.0 * y + 7.0 * z


# Integer-mm axes so that HU values are integers and compare exactly.
Z_MM = np.arange(-6.0, 7.0, 3.0)  # 5 slices, 3 mm
Y_MM = np.arange(-10.0, 11.0, 2.0)  # 11 rows, 2 mm
X_MM = np.arange(-12.0, 13.0, 1.0)  # 25 columns, 1 mm


# ----------------------------------------------------------------------------------------------------------
# pydicom's bundled examples


class TestPydicomRTStructExample:
    def test_structures(self) -> None:
        ss = read_rtstruct(examples.get_path("rt_ss"))
        assert ss.names == ("patient", "Isocenter 1", "Isocenter 2")
        assert [s.number for s in ss] == [1, 2, 3]
        assert [s.interpreted_type for s in ss] == ["EXTERNAL", "ISOCENTER", "ISOCENTER"]
        assert [len(s.contours) for s in ss] == [3, 1, 1]
        assert ss["patient"].colour == (220, 160, 120)
        assert {c.geometric_type for c in ss["Isocenter 1"].contours} == {"POINT"}
        assert ss["Isocenter 1"].is_empty  # a point is never rasterised

    def test_contour_points_and_planes(self) -> None:
        body = read_rtstruct(examples.get_path("rt_ss"))["patient"]
        first = body.contours[0].points_mm
        assert first.shape == (5, 3)
        np.testing.assert_array_equal(first[0], [-200.0, 150.0, -200.0])
        np.testing.assert_array_equal(body.z_planes_mm, [-200.0, -190.0, -180.0])

    def test_references(self) -> None:
        ss = read_rtstruct(examples.get_path("rt_ss"))
        assert ss.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2"
        assert ss.referenced_series_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2.1.1"
        assert ss.referenced_sop_instance_uids == frozenset()  # the example lists no contour images
        assert ss.label == "sep30"
        assert ss.path == str(examples.get_path("rt_ss"))

    def test_lookup_errors_list_names(self) -> None:
        ss = read_rtstruct(examples.get_path("rt_ss"))
        with pytest.raises(KeyError, match=r"no structure named 'Cord'.*'patient', 'Isocenter 1', 'Isocenter 2'"):
            ss["Cord"]
        assert ss.get("Cord") is None
        assert ss.get("patient") is ss["patient"]
        assert ss.by_number(3).name == "Isocenter 2"


class TestPydicomRTDoseExample:
    def test_relative_units_refused_by_default(self) -> None:
        with pytest.raises(UnsupportedDoseUnitsError, match=r"rtdose\.dcm: \(3004,0002\) DoseUnits is 'RELATIVE'"):
            read_rtdose(examples.get_path("rt_dose"))

    def test_beam_dose_refused_by_default(self) -> None:
        # The example is the dose of beam 1 only ((3004,000A) DoseSummationType BEAM): not a plan dose.
        with pytest.raises(
            UnsupportedDoseSummationError,
            match=r"rtdose\.dcm: \(3004,000A\) DoseSummationType is 'BEAM' .*export the plan dose",
        ):
            read_rtdose(examples.get_path("rt_dose"), allow_relative=True)

    def test_grid(self) -> None:
        dose = read_rtdose(examples.get_path("rt_dose"), allow_relative=True, allow_beam=True)
        assert dose.shape == (15, 10, 10)
        # (0020,0032) = [189.43125, 199.43125, -761.87], PixelSpacing 10 mm, offsets 0..70 step 5 mm.
        np.testing.assert_allclose(dose.x_mm, 189.43125 + 10.0 * np.arange(10), rtol=0, atol=1e-9)
        np.testing.assert_allclose(dose.y_mm, 199.43125 + 10.0 * np.arange(10), rtol=0, atol=1e-9)
        np.testing.assert_allclose(dose.z_mm, -761.87 + 5.0 * np.arange(15), rtol=0, atol=1e-9)
        assert dose.spacing_mm == pytest.approx((5.0, 10.0, 10.0), abs=1e-9)
        assert (dose.dose_units, dose.dose_type, dose.dose_summation_type) == ("RELATIVE", "PHYSICAL", "BEAM")
        assert dose.referenced_plan_uid == "1.2.123.456.78.9.0123.4567.89012345678901"
        assert (dose.summation, dose.referenced_beam_numbers, dose.notes) == ("BEAM", (1,), ())

    def test_scaling(self) -> None:
        dose = read_rtdose(examples.get_path("rt_dose"), allow_relative=True, allow_beam=True)
        raw = pydicom.dcmread(examples.get_path("rt_dose")).pixel_array
        # values = stored × (3004,000E) DoseGridScaling 1e-6; HFS, so no axis is flipped. Float64 product:
        # relative error ~1e-16.
        np.testing.assert_allclose(dose.values_gy, raw * 1e-6, rtol=1e-12)
        assert dose.values_gy.max() == pytest.approx(1.254, rel=1e-12)

    def test_non_conforming_values_logged_not_raised(self, caplog: pytest.LogCaptureFixture) -> None:
        # The example's ReferencedSOPInstanceUID has a component with a leading zero ("0123"): pydicom warns.
        with caplog.at_level(logging.WARNING, logger="qa_checks.dicom_io"):
            read_rtdose(examples.get_path("rt_dose"), allow_relative=True, allow_beam=True)
        messages = [r.getMessage() for r in caplog.records if r.name == "qa_checks.dicom_io"]
        assert any("rtdose.dcm" in m and "Invalid value for VR UI" in m for m in messages)

    def test_big_endian_copy_reads_the_same(self) -> None:
        little = read_rtdose(examples.get_path("rt_dose"), allow_relative=True, allow_beam=True)
        big = read_rtdose(get_testdata_file("rtdose_expb.dcm"), allow_relative=True, allow_beam=True)
        np.testing.assert_array_equal(little.values_gy, big.values_gy)

    def test_offset_vector_longer_than_frames(self) -> None:
        # rtdose_1frame.dcm keeps the 15-value (3004,000C) of its parent but holds a single frame.
        path = get_testdata_file("rtdose_1frame.dcm")
        with pytest.raises(InvalidGridError, match=r"rtdose_1frame\.dcm: \(3004,000C\) GridFrameOffsetVector has 15"):
            read_rtdose(path, allow_relative=True, allow_beam=True)


class TestPydicomRTPlanExample:
    def test_prescription_and_fractions(self) -> None:
        plan = read_rtplan(examples.get_path("rt_plan"))
        assert plan.prescription_dose_gy == pytest.approx(30.826203, abs=1e-9)
        assert plan.number_of_fractions == 30
        assert plan.dose_per_fraction_gy == pytest.approx(30.826203 / 30, abs=1e-9)
        assert (plan.label, plan.name, plan.approval_status, plan.geometry) == (
            "Plan1",
            "Plan1",
            "UNAPPROVED",
            "PATIENT",
        )
        assert plan.referenced_structure_set_uid == "1.2.333.444.55.6.7777.88888"
        assert plan.patient_position == "HFS"

    def test_beams(self) -> None:
        plan = read_rtplan(examples.get_path("rt_plan"))
        assert len(plan.beams) == 1
        beam = plan.beams[0]
        assert (beam.number, beam.name, beam.radiation_type, beam.machine_name) == (1, "Field 1", "PHOTON", "unit001")
        assert beam.nominal_beam_energy_mev == 6.0
        assert beam.meterset == pytest.approx(116.0036697, abs=1e-9)
        assert (beam.gantry_start_deg, beam.gantry_stop_deg, beam.is_arc) == (0.0, 0.0, False)
        assert beam.number_of_control_points == 2
        assert plan.treatment_machines == ("unit001",)


# ----------------------------------------------------------------------------------------------------------
# round trips


class TestCTRoundTrip:
    @pytest.mark.parametrize("position", PATIENT_POSITIONS)
    def test_values_follow_patient_coordinates(self, dicom_factory: DicomFactory, position: str) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM, position=position, hu=hu_of_position)
        volume = read_ct_series(ct.directory)
        np.testing.assert_array_equal(volume.z_mm, Z_MM)
        np.testing.assert_array_equal(volume.y_mm, Y_MM)
        np.testing.assert_array_equal(volume.x_mm, X_MM)
        zz, yy, xx = np.meshgrid(Z_MM, Y_MM, X_MM, indexing="ij")
        # HU are integers stored exactly as uint16 with intercept -1024: exact comparison.
        np.testing.assert_array_equal(volume.values, hu_of_position(xx, yy, zz))
        assert volume.patient_position == position
        assert volume.frame_of_reference_uid == ct.frame_of_reference_uid
        assert volume.series_instance_uid == ct.series_uid
        assert volume.sop_instance_uids == tuple(ct.sop_uids)

    def test_slices_sorted_by_position_not_file_order(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM, hu=hu_of_position)
        volume = read_ct_series(reversed(ct.paths))
        np.testing.assert_array_equal(volume.z_mm, Z_MM)
        assert volume.sop_instance_uids == tuple(ct.sop_uids)

    def test_geometry_properties(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        volume = read_ct_series(ct.directory)
        assert volume.shape == (5, 11, 25)
        assert volume.spacing_mm == (3.0, 2.0, 1.0)
        assert volume.voxel_volume_mm3 == 6.0

    def test_hidden_files_in_directory_ignored(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        (ct.directory / ".DS_Store").write_bytes(b"\x00\x01junk")
        assert read_ct_series(ct.directory).shape == (5, 11, 25)


class TestRTDoseRoundTrip:
    @pytest.mark.parametrize("position", PATIENT_POSITIONS)
    def test_relative_offsets(self, dicom_factory: DicomFactory, position: str) -> None:
        zz, yy, xx = np.meshgrid(Z_MM, Y_MM, X_MM, indexing="ij")
        dose_gy = 10.0 + 0.1 * xx + 0.2 * yy + 0.3 * zz
        path = dicom_factory.rtdose(dose_gy, Z_MM, Y_MM, X_MM, position=position)
        grid = read_rtdose(path)
        np.testing.assert_array_equal(grid.z_mm, Z_MM)
        np.testing.assert_array_equal(grid.y_mm, Y_MM)
        np.testing.assert_array_equal(grid.x_mm, X_MM)
        # Stored as integers of 1e-4 Gy: rounding error at most half a quantum.
        np.testing.assert_allclose(grid.values_gy, dose_gy, rtol=0, atol=0.5e-4 + 1e-12)
        assert grid.dose_units == "GY"
        assert grid.dose_summation_type == "PLAN"

    def test_absolute_offsets(self, dicom_factory: DicomFactory) -> None:
        zz = np.meshgrid(Z_MM + 100.0, Y_MM, X_MM, indexing="ij")[0]
        path = dicom_factory.rtdose(zz / 10.0, Z_MM + 100.0, Y_MM, X_MM, absolute_offsets=True)
        grid = read_rtdose(path)
        np.testing.assert_array_equal(grid.z_mm, Z_MM + 100.0)
        np.testing.assert_allclose(grid.values_gy, zz / 10.0, rtol=0, atol=0.5e-4 + 1e-12)

    def test_offset_vector_neither_relative_nor_absolute(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(np.ones((5, 11, 25)), Z_MM + 100.0, Y_MM, X_MM)
        ds = pydicom.dcmread(path)
        ds.GridFrameOffsetVector = [3.0, 6.0, 9.0, 12.0, 15.0]
        ds.save_as(path)
        with pytest.raises(
            InvalidGridError, match=r"rtdose\.dcm: first \(3004,000C\) GridFrameOffsetVector value is 3\.0"
        ):
            read_rtdose(path)


class TestRTPlanRoundTrip:
    def test_arc_plan(self, dicom_factory: DicomFactory) -> None:
        path, uid = dicom_factory.rtplan(prescription_gy=54.0, fractions=3, arc=True)
        plan = read_rtplan(path)
        assert plan.sop_instance_uid == uid
        assert (plan.prescription_dose_gy, plan.number_of_fractions, plan.intent) == (54.0, 3, "CURATIVE")
        beam = plan.beams[0]
        assert beam.is_arc and beam.gantry_rotation_direction == "CW"
        assert (beam.gantry_start_deg, beam.gantry_stop_deg) == (181.0, 179.0)
        assert (beam.fluence_mode, beam.nominal_beam_energy_mev, beam.collimator_deg) == ("FFF", 6.0, 10.0)
        assert beam.isocentre_mm == (1.5, -20.0, 12.0)
        assert plan.total_meterset == pytest.approx(2345.6, abs=1e-9)
        assert plan.software_versions == "16.1\\build 7"
        assert plan.frame_of_reference_uid == dicom_factory.frame_of_reference_uid

    def test_dose_references(self, dicom_factory: DicomFactory) -> None:
        path, _ = dicom_factory.rtplan(prescription_gy=24.0, fractions=1)
        ds = pydicom.dcmread(path)
        ds.DoseReferenceSequence[0].ReferencedROINumber = 3
        oar = Dataset()
        oar.DoseReferenceNumber = 2
        oar.DoseReferenceStructureType = "VOLUME"
        oar.DoseReferenceDescription = "stem"
        oar.DoseReferenceType = "ORGAN_AT_RISK"
        oar.ReferencedROINumber = 5
        oar.DeliveryMaximumDose = 15.0
        ds.DoseReferenceSequence.append(oar)
        ds.save_as(path)
        plan = read_rtplan(path)
        assert plan.dose_references == (
            DoseReference(1, "VOLUME", None, "TARGET", 3, 24.0, None, None),
            DoseReference(2, "VOLUME", "stem", "ORGAN_AT_RISK", 5, None, None, 15.0),
        )
        assert plan.dose_references[0].is_target and not plan.dose_references[1].is_target
        assert plan.target_prescription_doses_gy == (24.0,)


# ----------------------------------------------------------------------------------------------------------
# bad input


class TestReaderErrors:
    def test_not_dicom(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_text("contours attached\n")
        with pytest.raises(NotDicomError, match=r"notes\.txt: not a DICOM file"):
            read_rtstruct(path)

    def test_directory_is_not_a_file(self, tmp_path: Path) -> None:
        with pytest.raises(NotDicomError, match=re.escape(str(tmp_path))):
            read_rtplan(tmp_path)

    def test_wrong_modality(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        with pytest.raises(
            WrongModalityError, match=r"CT_0000\.dcm: \(0008,0060\) Modality is 'CT', expected 'RTSTRUCT'"
        ):
            read_rtstruct(ct.paths[0])
        path, _ = dicom_factory.rtplan()
        with pytest.raises(WrongModalityError, match=r"rtplan\.dcm: \(0008,0060\) Modality is 'RTPLAN', expected 'CT'"):
            read_ct_series([*ct.paths, path])

    def test_oblique_orientation(self, dicom_factory: DicomFactory) -> None:
        c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM, orientation=[c, s, 0.0, -s, c, 0.0])
        with pytest.raises(
            UnsupportedGeometryError, match=r"CT_0000\.dcm: \(0020,0037\) ImageOrientationPatient is \[0\.98"
        ):
            read_ct_series(ct.directory)

    def test_non_uniform_slice_spacing(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM, slice_z_mm=[-6.0, -3.0, 0.0, 3.0, 7.5])
        with pytest.raises(
            UnsupportedGeometryError, match=r"non-uniform slice spacing.*from 3\.0 mm \(.*CT_0003\.dcm\) to 7\.5 mm"
        ):
            read_ct_series(ct.directory)

    def test_duplicate_slice_position(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM, slice_z_mm=[-6.0, -3.0, 0.0, 3.0, 3.0])
        with pytest.raises(InvalidGridError, match=r"CT_0003\.dcm and .*CT_0004\.dcm have the same"):
            read_ct_series(ct.directory)

    def test_shifted_slice(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        ds = pydicom.dcmread(ct.paths[2])
        ds.ImagePositionPatient = [-11.0, -10.0, 0.0]
        ds.save_as(ct.paths[2])
        with pytest.raises(UnsupportedGeometryError, match=r"CT_0002\.dcm: \(0020,0032\) ImagePositionPatient x/y"):
            read_ct_series(ct.directory)

    def test_two_series(self, dicom_factory: DicomFactory) -> None:
        first = dicom_factory.ct_series(Z_MM, Y_MM, X_MM, directory="a")
        second = dicom_factory.ct_series(Z_MM, Y_MM, X_MM, directory="b")
        with pytest.raises(AmbiguousInputError, match=rf"2 series.*{re.escape(first.series_uid)}"):
            read_ct_series([*first.paths, *second.paths])

    def test_missing_rescale(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        ds = pydicom.dcmread(ct.paths[1])
        del ds.RescaleIntercept
        ds.save_as(ct.paths[1])
        with pytest.raises(MissingAttributeError, match=r"CT_0001\.dcm: \(0028,1052\) RescaleIntercept is missing"):
            read_ct_series(ct.directory)

    def test_dose_units_unknown(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(np.ones((5, 11, 25)), Z_MM, Y_MM, X_MM, dose_units="CGY")
        with pytest.raises(UnsupportedDoseUnitsError, match=r"DoseUnits is 'CGY'"):
            read_rtdose(path, allow_relative=True)

    def test_errors_share_a_base_class(self) -> None:
        for cls in (NotDicomError, WrongModalityError, MissingReferenceError, InvalidGridError, AmbiguousInputError):
            assert issubclass(cls, QAChecksError)


class TestGridValidation:
    def test_dose_grid_needs_only_four_arguments(self) -> None:
        grid = DoseGrid(np.zeros((2, 3, 4)), [0.0, 2.0], [0.0, 1.0, 2.0], [5.0, 4.0, 3.0, 2.0])
        assert grid.shape == (2, 3, 4)
        assert grid.spacing_mm == (2.0, 1.0, 1.0)
        assert grid.frame_of_reference_uid is None

    def test_non_monotonic_axis(self) -> None:
        with pytest.raises(InvalidGridError, match=r"z_mm is not strictly monotonic: 2\.0 mm is followed by 1\.0 mm"):
            DoseGrid(np.zeros((3, 1, 1)), [0.0, 2.0, 1.0], [0.0], [0.0])

    def test_repeated_coordinate(self) -> None:
        with pytest.raises(InvalidGridError, match=r"x_mm is not strictly monotonic"):
            DoseGrid(np.zeros((1, 1, 2)), [0.0], [0.0], [1.0, 1.0])

    def test_shape_mismatch(self) -> None:
        with pytest.raises(
            InvalidGridError, match=re.escape("values_gy has shape (2, 3, 4) but the axes give (z, y, x) = (2, 4, 3)")
        ):
            DoseGrid(np.zeros((2, 3, 4)), [0.0, 1.0], [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0])

    def test_axis_not_one_dimensional(self) -> None:
        with pytest.raises(InvalidGridError, match=r"y_mm must be a 1-D array"):
            DoseGrid(np.zeros((1, 1, 1)), [0.0], [[0.0]], [0.0])

    def test_image_volume_uid_count(self) -> None:
        with pytest.raises(InvalidGridError, match=r"sop_instance_uids has 1 entries but z_mm has 2 slices"):
            ImageVolume(np.zeros((2, 1, 1), np.float32), [0.0, 1.0], [0.0], [0.0], sop_instance_uids=("1.2",))

    def test_single_slice_spacing_undefined(self) -> None:
        grid = DoseGrid(np.zeros((1, 2, 2)), [0.0], [0.0, 1.0], [0.0, 1.0])
        with pytest.raises(InvalidGridError, match=r"z_mm has a single coordinate"):
            _ = grid.spacing_mm


# ----------------------------------------------------------------------------------------------------------
# submissions


def _box_structures(z_mm: npt.NDArray[np.float64]) -> dict[str, list[npt.NDArray[np.float64]]]:
    return {"PTV": box_contours((-5.5, 5.5), (-4.5, 4.5), z_mm[1:-1])}


class TestLoadSubmission:
    def test_complete_submission(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        ss_path = dicom_factory.rtstruct(ct, _box_structures(Z_MM))
        ss_uid = str(pydicom.dcmread(ss_path).SOPInstanceUID)
        _, plan_uid = dicom_factory.rtplan(structure_set_uid=ss_uid)
        dicom_factory.rtdose(np.ones((5, 11, 25)), Z_MM, Y_MM, X_MM, plan_uid=plan_uid)
        (dicom_factory.root / ".hidden").write_text("ignored")
        loaded = load_submission(dicom_factory.root)
        assert loaded.ct is not None and loaded.ct.shape == (5, 11, 25)
        assert loaded.structure_set is not None and loaded.structure_set.names == ("PTV",)
        assert loaded.plan is not None and loaded.plan.sop_instance_uid == plan_uid
        assert loaded.dose is not None and loaded.dose.referenced_plan_uid == plan_uid
        assert loaded.frame_of_reference_uid == dicom_factory.frame_of_reference_uid
        assert {m: len(p) for m, p in loaded.files_by_modality.items()} == {
            "CT": 5,
            "RTDOSE": 1,
            "RTPLAN": 1,
            "RTSTRUCT": 1,
        }

    def test_partial_submission(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        dicom_factory.rtstruct(ct, _box_structures(Z_MM))
        loaded = load_submission(dicom_factory.root)
        assert loaded.plan is None and loaded.dose is None
        assert loaded.structure_set is not None

    def test_non_dicom_file_named(self, dicom_factory: DicomFactory) -> None:
        dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        (dicom_factory.root / "README.txt").write_text("our contours")
        with pytest.raises(NotDicomError, match=r"README\.txt: not a DICOM file"):
            load_submission(dicom_factory.root)

    def test_two_structure_sets(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        dicom_factory.rtstruct(ct, _box_structures(Z_MM), path="a.dcm")
        dicom_factory.rtstruct(ct, _box_structures(Z_MM), path="b.dcm")
        with pytest.raises(AmbiguousInputError, match=r"2 RTSTRUCT files \(.*a\.dcm, .*b\.dcm\)"):
            load_submission(dicom_factory.root)

    def test_missing_referenced_series(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        other = generate_uid()
        dicom_factory.rtstruct(ct, _box_structures(Z_MM), referenced_series_uid=other)
        with pytest.raises(
            MissingReferenceError,
            match=(
                r"rtstruct\.dcm: \(3006,0014\) RTReferencedSeriesSequence \(0020,000E\) SeriesInstanceUID is "
                + re.escape(repr(other))
            ),
        ):
            load_submission(dicom_factory.root)

    def test_missing_referenced_image(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        ghost = generate_uid()
        dicom_factory.rtstruct(ct, _box_structures(Z_MM), extra_image_uids=[ghost])
        with pytest.raises(
            MissingReferenceError, match=rf"ReferencedSOPInstanceUID {re.escape(ghost)} not among the 5"
        ):
            load_submission(dicom_factory.root)

    def test_frame_of_reference_mismatch(self, dicom_factory: DicomFactory) -> None:
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        dicom_factory.rtstruct(ct, _box_structures(Z_MM))
        stray = generate_uid()
        dicom_factory.rtdose(np.ones((5, 11, 25)), Z_MM, Y_MM, X_MM, frame_of_reference_uid=stray)
        with pytest.raises(
            FrameOfReferenceMismatchError,
            match=(
                rf"\(0020,0052\) FrameOfReferenceUID.*{re.escape(ct.frame_of_reference_uid)}"
                rf".*RTDOSE .*rtdose\.dcm: {re.escape(stray)}"
            ),
        ):
            load_submission(dicom_factory.root)

    def test_dose_references_another_plan(self, dicom_factory: DicomFactory) -> None:
        _, plan_uid = dicom_factory.rtplan()
        wrong = generate_uid()
        dicom_factory.rtdose(np.ones((5, 11, 25)), Z_MM, Y_MM, X_MM, plan_uid=wrong)
        with pytest.raises(
            MissingReferenceError,
            match=(
                r"rtdose\.dcm: \(300C,0002\) ReferencedRTPlanSequence \(0008,1155\) ReferencedSOPInstanceUID is "
                + rf"'{re.escape(wrong)}'.*{re.escape(plan_uid)}"
            ),
        ):
            load_submission(dicom_factory.root)

    def test_empty_directory(self, tmp_path: Path) -> None:
        with pytest.raises(NotDicomError, match=r"no files found"):
            load_submission(tmp_path)

    def test_structure_set_on_a_plane_outside_the_ct(self, dicom_factory: DicomFactory) -> None:
        # contours on z = 100 reference no slice; only the series-level references are checked
        ct = dicom_factory.ct_series(Z_MM, Y_MM, X_MM)
        dicom_factory.rtstruct(ct, {"GTV": [rectangle(-1.5, 1.5, -1.5, 1.5, 100.0)]})
        loaded = load_submission(dicom_factory.root)
        assert loaded.structure_set is not None
