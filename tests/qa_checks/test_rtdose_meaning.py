"""What an RTDOSE means: (3004,0004) DoseType and (3004,000A) DoseSummationType, and summing beam doses."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.sequence import Sequence as DicomSequence

from qa_checks.dicom_io import load_submission, read_rtdose
from qa_checks.errors import (
    AmbiguousInputError,
    MissingAttributeError,
    UnsupportedDoseSummationError,
    UnsupportedDoseTypeError,
)
from qa_checks.geometry import DoseGrid
from qa_checks.rtdose_meaning import sum_beam_doses
from tests.qa_checks.conftest import DicomFactory

Z_MM = np.arange(-6.0, 7.0, 3.0)  # 5 planes, 3 mm
Y_MM = np.arange(-4.0, 5.0, 2.0)  # 5 rows, 2 mm
X_MM = np.arange(-6.0, 7.0, 2.0)  # 7 columns, 2 mm


def _field(scale: float = 1.0) -> npt.NDArray[np.float64]:
    zz, yy, xx = np.meshgrid(Z_MM, Y_MM, X_MM, indexing="ij")
    return scale * (10.0 + 0.1 * xx + 0.2 * yy + 0.3 * zz)


# Stored as integers of 1e-4 Gy: rounding error at most half a quantum per file.
ATOL_GY = 0.5e-4 + 1e-12


class TestDoseSummationType:
    def test_plan_read_as_is(self, dicom_factory: DicomFactory) -> None:
        dose = read_rtdose(dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM))
        assert (dose.summation, dose.notes) == ("PLAN", ())
        np.testing.assert_allclose(dose.values_gy, _field(), rtol=0, atol=ATOL_GY)

    def test_fraction_refused_without_number_of_fractions(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, summation_type="FRACTION")
        with pytest.raises(
            UnsupportedDoseSummationError,
            match=r"rtdose\.dcm: \(3004,000A\) DoseSummationType is 'FRACTION' .*export the plan dose "
            r"\(DoseSummationType PLAN\).*number_of_fractions",
        ):
            read_rtdose(path)

    def test_fraction_multiplied_and_recorded(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, summation_type="FRACTION")
        dose = read_rtdose(path, number_of_fractions=5)
        np.testing.assert_allclose(dose.values_gy, 5 * _field(), rtol=0, atol=5 * ATOL_GY)
        assert dose.summation == "PLAN"
        assert dose.dose_summation_type == "FRACTION"
        assert dose.notes == ("multiplied by 5 fractions: (3004,000A) DoseSummationType is FRACTION",)

    def test_number_of_fractions_ignored_for_plan(self, dicom_factory: DicomFactory) -> None:
        dose = read_rtdose(dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM), number_of_fractions=5)
        np.testing.assert_allclose(dose.values_gy, _field(), rtol=0, atol=ATOL_GY)

    @pytest.mark.parametrize("bad", [0, -3, 2.5, True])
    def test_number_of_fractions_must_be_positive_integer(self, dicom_factory: DicomFactory, bad: object) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, summation_type="FRACTION")
        with pytest.raises(ValueError, match=r"number_of_fractions must be a positive integer"):
            read_rtdose(path, number_of_fractions=bad)  # type: ignore[arg-type]

    def test_beam_refused_by_default(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, summation_type="BEAM", beam_numbers=[2])
        with pytest.raises(
            UnsupportedDoseSummationError,
            match=r"rtdose\.dcm: \(3004,000A\) DoseSummationType is 'BEAM' \(the dose of one beam, not of the "
            r"plan\); export the plan dose .*sum_beams=True",
        ):
            read_rtdose(path)

    def test_beam_read_when_allowed(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(
            _field(), Z_MM, Y_MM, X_MM, summation_type="BEAM", beam_numbers=[2], plan_uid="1.2.3"
        )
        dose = read_rtdose(path, allow_beam=True)
        assert (dose.summation, dose.referenced_beam_numbers) == ("BEAM", (2,))

    @pytest.mark.parametrize("value", ["MULTI_PLAN", "PLAN_SUM", "RECORD", "CONTROL_POINT"])
    def test_other_values_refused(self, dicom_factory: DicomFactory, value: str) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, summation_type=value)
        with pytest.raises(
            UnsupportedDoseSummationError,
            match=rf"rtdose\.dcm: \(3004,000A\) DoseSummationType is '{value}'; .*export the plan dose",
        ):
            read_rtdose(path, number_of_fractions=3, allow_beam=True)

    def test_missing(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, summation_type=None)
        with pytest.raises(MissingAttributeError, match=r"rtdose\.dcm: \(3004,000A\) DoseSummationType is missing"):
            read_rtdose(path)


class TestDoseType:
    @pytest.mark.parametrize("value", ["EFFECTIVE", "ERROR"])
    def test_refused_by_default(self, dicom_factory: DicomFactory, value: str) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, dose_type=value)
        with pytest.raises(
            UnsupportedDoseTypeError,
            match=rf"rtdose\.dcm: \(3004,0004\) DoseType is '{value}' .*only PHYSICAL dose is read\. Export the "
            r"physical plan dose",
        ):
            read_rtdose(path)

    def test_allowed_when_asked(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, dose_type="EFFECTIVE")
        assert read_rtdose(path, allowed_dose_types=("PHYSICAL", "effective")).dose_type == "EFFECTIVE"

    def test_missing(self, dicom_factory: DicomFactory) -> None:
        path = dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, dose_type=None)
        with pytest.raises(MissingAttributeError, match=r"rtdose\.dcm: \(3004,0004\) DoseType is missing"):
            read_rtdose(path)


def _beam_doses(factory: DicomFactory, plan_uid: str, beams: dict[int, float]) -> list[Path]:
    return [
        factory.rtdose(
            _field(scale),
            Z_MM,
            Y_MM,
            X_MM,
            summation_type="BEAM",
            beam_numbers=[number],
            plan_uid=plan_uid,
            path=f"dose/beam{number}.dcm",
        )
        for number, scale in beams.items()
    ]


def _add_beam(plan_path: Path, number: int) -> None:
    """Copy beam 1 of a written plan as beam ``number`` (with its meterset)."""
    ds = pydicom.dcmread(plan_path)
    beam = copy.deepcopy(ds.BeamSequence[0])
    beam.BeamNumber = number
    ds.BeamSequence = DicomSequence([*ds.BeamSequence, beam])
    ref = copy.deepcopy(ds.FractionGroupSequence[0].ReferencedBeamSequence[0])
    ref.ReferencedBeamNumber = number
    group = ds.FractionGroupSequence[0]
    group.ReferencedBeamSequence = DicomSequence([*group.ReferencedBeamSequence, ref])
    group.NumberOfBeams = len(group.ReferencedBeamSequence)
    ds.save_as(plan_path)


class TestSumBeamDoses:
    def test_sum_recorded(self, dicom_factory: DicomFactory) -> None:
        paths = _beam_doses(dicom_factory, "1.2.3", {3: 0.5, 1: 0.2, 2: 0.3})
        dose = sum_beam_doses([read_rtdose(p, allow_beam=True) for p in paths])
        np.testing.assert_allclose(dose.values_gy, _field(), rtol=0, atol=3 * ATOL_GY)
        assert dose.summation == "PLAN"
        assert dose.referenced_beam_numbers == (1, 2, 3)
        assert dose.notes == ("summed 3 BEAM doses (beams 1, 2, 3)",)

    def test_single_beam_refused(self, dicom_factory: DicomFactory) -> None:
        (path,) = _beam_doses(dicom_factory, "1.2.3", {1: 1.0})
        with pytest.raises(
            UnsupportedDoseSummationError,
            match=r"beam1\.dcm: \(3004,000A\) DoseSummationType is .BEAM. and it is the only RTDOSE \(beam 1\)",
        ):
            sum_beam_doses([read_rtdose(path, allow_beam=True)])

    def test_different_grids_refused(self, dicom_factory: DicomFactory) -> None:
        a, b = _beam_doses(dicom_factory, "1.2.3", {1: 0.5, 2: 0.5})
        shifted = dicom_factory.rtdose(
            _field(0.5), Z_MM, Y_MM, X_MM + 1.0, summation_type="BEAM", beam_numbers=[2], plan_uid="1.2.3"
        )
        with pytest.raises(
            UnsupportedDoseSummationError, match=r"voxel centres along x differ .* by up to 1 mm; beam doses on"
        ):
            sum_beam_doses([read_rtdose(p, allow_beam=True) for p in (a, shifted)])
        coarser = dicom_factory.rtdose(
            _field(0.5)[::2], Z_MM[::2], Y_MM, X_MM, summation_type="BEAM", beam_numbers=[2], plan_uid="1.2.3"
        )
        with pytest.raises(UnsupportedDoseSummationError, match=r"grid shape \(z, y, x\) \(3, 5, 7\) differs"):
            sum_beam_doses([read_rtdose(p, allow_beam=True) for p in (a, coarser)])
        assert sum_beam_doses([read_rtdose(p, allow_beam=True) for p in (a, b)]).summation == "PLAN"

    def test_different_plans_refused(self, dicom_factory: DicomFactory) -> None:
        (a,) = _beam_doses(dicom_factory, "1.2.3", {1: 0.5})
        (b,) = _beam_doses(dicom_factory, "1.2.4", {2: 0.5})
        with pytest.raises(UnsupportedDoseSummationError, match=r"names plan '1\.2\.4' but .* names '1\.2\.3'"):
            sum_beam_doses([read_rtdose(p, allow_beam=True) for p in (a, b)])

    def test_repeated_beam_refused(self, dicom_factory: DicomFactory) -> None:
        (a,) = _beam_doses(dicom_factory, "1.2.3", {1: 0.5})
        b = dicom_factory.rtdose(
            _field(), Z_MM, Y_MM, X_MM, summation_type="BEAM", beam_numbers=[1], plan_uid="1.2.3", path="again.dcm"
        )
        with pytest.raises(UnsupportedDoseSummationError, match=r"are both the dose of beam 1"):
            sum_beam_doses([read_rtdose(p, allow_beam=True) for p in (a, b)])

    def test_plan_dose_not_summed(self, dicom_factory: DicomFactory) -> None:
        (a,) = _beam_doses(dicom_factory, "1.2.3", {1: 0.5})
        plan_dose = DoseGrid(np.ones((5, 5, 7)), Z_MM, Y_MM, X_MM, summation="PLAN")
        with pytest.raises(UnsupportedDoseSummationError, match=r"not 'BEAM'; only single-beam doses are summed"):
            sum_beam_doses([read_rtdose(a, allow_beam=True), plan_dose])


class TestLoadSubmissionDose:
    def test_beam_dose_refused_by_default_with_relative_name(self, dicom_factory: DicomFactory) -> None:
        _, plan_uid = dicom_factory.rtplan()
        _beam_doses(dicom_factory, plan_uid, {1: 1.0})
        with pytest.raises(
            UnsupportedDoseSummationError, match=r"^dose/beam1\.dcm: \(3004,000A\) DoseSummationType is 'BEAM'"
        ):
            load_submission(dicom_factory.root)

    def test_several_beam_doses_need_sum_beams(self, dicom_factory: DicomFactory) -> None:
        _, plan_uid = dicom_factory.rtplan()
        _beam_doses(dicom_factory, plan_uid, {1: 0.5, 2: 0.5})
        with pytest.raises(
            AmbiguousInputError,
            match=r"2 RTDOSE files \(dose/beam1\.dcm, dose/beam2\.dcm\) with \(3004,000A\) DoseSummationType "
            r"BEAM; .*sum_beams=True",
        ):
            load_submission(dicom_factory.root)

    def test_sum_beams(self, dicom_factory: DicomFactory) -> None:
        plan_path, plan_uid = dicom_factory.rtplan()
        _add_beam(plan_path, 2)
        _beam_doses(dicom_factory, plan_uid, {1: 0.25, 2: 0.75})
        dose = load_submission(dicom_factory.root, sum_beams=True).dose
        assert dose is not None
        np.testing.assert_allclose(dose.values_gy, _field(), rtol=0, atol=2 * ATOL_GY)
        assert dose.notes == ("summed 2 BEAM doses (beams 1, 2)",)
        assert dose.path == "dose/beam1.dcm, dose/beam2.dcm"

    def test_sum_beams_must_cover_the_plan(self, dicom_factory: DicomFactory) -> None:
        plan_path, plan_uid = dicom_factory.rtplan()
        _add_beam(plan_path, 2)
        _add_beam(plan_path, 3)
        _beam_doses(dicom_factory, plan_uid, {1: 0.25, 2: 0.75})
        with pytest.raises(
            UnsupportedDoseSummationError, match=r"cover beams \[1, 2\] but the RTPLAN rtplan\.dcm .*missing \[3\]"
        ):
            load_submission(dicom_factory.root, sum_beams=True)

    def test_sum_beams_single_beam_refused(self, dicom_factory: DicomFactory) -> None:
        _, plan_uid = dicom_factory.rtplan()
        _beam_doses(dicom_factory, plan_uid, {1: 1.0})
        with pytest.raises(
            UnsupportedDoseSummationError,
            match=r"^dose/beam1\.dcm: \(3004,000A\) DoseSummationType is .BEAM. and it is the only RTDOSE \(beam 1\)",
        ):
            load_submission(dicom_factory.root, sum_beams=True)

    def test_sum_beams_keeps_a_plan_dose(self, dicom_factory: DicomFactory) -> None:
        _, plan_uid = dicom_factory.rtplan()
        dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, plan_uid=plan_uid)
        dose = load_submission(dicom_factory.root, sum_beams=True).dose
        assert dose is not None and dose.summation == "PLAN" and dose.notes == ()

    def test_fraction_dose_with_plan(self, dicom_factory: DicomFactory) -> None:
        _, plan_uid = dicom_factory.rtplan(fractions=3)
        dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, plan_uid=plan_uid, summation_type="FRACTION")
        with pytest.raises(UnsupportedDoseSummationError, match=r"^rtdose\.dcm: .*'FRACTION'"):
            load_submission(dicom_factory.root)
        dose = load_submission(dicom_factory.root, number_of_fractions=3).dose
        assert dose is not None
        np.testing.assert_allclose(dose.values_gy, 3 * _field(), rtol=0, atol=3 * ATOL_GY)
        with pytest.raises(
            UnsupportedDoseSummationError,
            match=r"rtdose\.dcm: per-fraction dose read as 5 fractions but the RTPLAN rtplan\.dcm has "
            r"\(300A,0078\) NumberOfFractionsPlanned 3",
        ):
            load_submission(dicom_factory.root, number_of_fractions=5)

    def test_effective_dose_refused(self, dicom_factory: DicomFactory) -> None:
        _, plan_uid = dicom_factory.rtplan()
        dicom_factory.rtdose(_field(), Z_MM, Y_MM, X_MM, plan_uid=plan_uid, dose_type="EFFECTIVE")
        with pytest.raises(UnsupportedDoseTypeError, match=r"^rtdose\.dcm: \(3004,0004\) DoseType is 'EFFECTIVE'"):
            load_submission(dicom_factory.root)
        loaded = load_submission(dicom_factory.root, allowed_dose_types=("EFFECTIVE",))
        assert loaded.dose is not None and loaded.dose.dose_type == "EFFECTIVE"
