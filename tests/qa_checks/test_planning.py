"""Plan scoring (qa_checks.planning) on hand-built plans: prescriptions per target, measurements, evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from qa_checks.dicom_io import LoadedSubmission
from qa_checks.errors import PlanScoringError
from qa_checks.geometry import DoseGrid
from qa_checks.plan import DoseReference, Plan
from qa_checks.planning import (
    PlanMeasurement,
    TargetPrescription,
    max_diameter_mm,
    score_plan,
    target_prescriptions,
)
from qa_checks.prescriptions import resolve_targets
from qa_checks.protocol import Criterion, OutcomeLevel
from qa_checks.structures import CLOSED_PLANAR, Contour, Structure, StructureSet
from tests.qa_checks.test_plan_indices_targets import falloff, grid_axes, radius_field, sphere_structure

RX_GY = 30.0


def box(number: int, name: str, low_xyz: Sequence[float], high_xyz: Sequence[float]) -> Structure:
    """An axis-aligned box contoured on planes 1 mm apart."""
    (x0, y0, z0), (x1, y1, _) = low_xyz, high_xyz
    planes = np.arange(z0 + 0.5, high_xyz[2], 1.0)
    contours = tuple(
        Contour(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float), CLOSED_PLANAR)
        for z in planes
    )
    return Structure(number, name, "ORGAN", contours)


def numbered(structure: Structure, number: int, name: str) -> Structure:
    return Structure(number, name, structure.interpreted_type, structure.contours)


def target_ref(number: int, roi: int | None, dose_gy: float | None, kind: str = "TARGET") -> DoseReference:
    return DoseReference(number, "VOLUME" if roi is not None else "SITE", None, kind, roi, dose_gy)


def structure_set() -> StructureSet:
    """PTV (radius 10 mm) at the origin, a second target (radius 7 mm) 50 mm along x, an organ 25-35 mm along y."""
    ptv = numbered(sphere_structure("x", (0.0, 0.0, 0.0), 10.0), 3, "ptv")
    ptv2 = numbered(sphere_structure("x", (0.0, 0.0, 50.0), 7.0), 4, "PTV_2")
    cord = box(5, "Cord", (-5.0, 25.0, -10.0), (5.0, 35.0, 10.0))
    return StructureSet((ptv, ptv2, cord), path="rs.dcm")


def plan(*refs: DoseReference, fractions: int | None = 3) -> Plan:
    return Plan("1.2.3", dose_references=refs, number_of_fractions=fractions, path="rp.dcm")


class TestTargetPrescriptions:
    def test_each_target_from_its_dose_reference(self) -> None:
        found = target_prescriptions(
            plan(target_ref(1, 3, 30.0), target_ref(2, 4, 24.0)), structure_set(), targets=["PTV"]
        )
        assert [(t.structure, t.dose_gy, t.submitted_name, t.roi_number) for t in found] == [
            ("PTV", 30.0, "ptv", 3),
            ("PTV_2", 24.0, "PTV_2", 4),
        ]
        assert "rp.dcm (300A,0010) DoseReferenceSequence item 1 ((3006,0084) ReferencedROINumber 3)" in found[0].source
        assert "same name ignoring case" in found[0].source
        assert "a TARGET dose reference of the RTPLAN" in found[1].source

    def test_highest_of_several_references_and_unknown_roi(self) -> None:
        refs = (target_ref(1, 3, 30.0), target_ref(2, 3, 36.0), target_ref(3, 9, 20.0))
        found, warnings = resolve_targets(plan(*refs), structure_set(), targets=["PTV"], dose_by_size=None)
        assert [(t.structure, t.dose_gy) for t in found] == [("PTV", 36.0)]
        assert "item 2" in found[0].source and "the highest of 2 TARGET dose references of this ROI" in found[0].source
        assert warnings == [
            "rp.dcm: (300A,0010) DoseReferenceSequence item 3 has (3006,0084) ReferencedROINumber 9, which is not an "
            "ROI of rs.dcm: ignored"
        ]

    def test_site_reference_of_a_single_target_plan(self) -> None:
        found = target_prescriptions(plan(target_ref(1, None, 54.0)), structure_set(), targets=["PTV"])
        assert [(t.structure, t.dose_gy) for t in found] == [("PTV", 54.0)]
        assert "tied to no ROI; the plan has a single target" in found[0].source

    def test_organ_at_risk_reference_falls_back_to_the_rule(self) -> None:
        refs = (target_ref(1, 3, 30.0, kind="ORGAN_AT_RISK"),)
        sizes: list[float] = []

        def rule(diameter_mm: float) -> float:
            sizes.append(diameter_mm)
            return 24.0

        (found,) = target_prescriptions(plan(*refs), structure_set(), targets=["PTV"], dose_by_size=rule)
        assert found.dose_gy == 24.0
        assert "ORGAN_AT_RISK, not a prescription" in found.source and "protocol rule" in found.source
        # The rule gets the maximum diameter: 20 mm for the 10 mm sphere polygons, within the polygons' sagitta.
        assert sizes == [pytest.approx(20.0, abs=0.05)]

    def test_organ_at_risk_reference_without_rule_is_an_error(self) -> None:
        refs = (target_ref(1, 3, 30.0, kind="ORGAN_AT_RISK"),)
        with pytest.raises(
            PlanScoringError,
            match=r"no prescription for the target 'PTV' \(\(3006,0026\) ROIName 'ptv', \(3006,0022\) ROINumber 3\): "
            r"rp\.dcm has no .*DoseReferenceType TARGET with \(3006,0084\) ReferencedROINumber 3 .*ORGAN_AT_RISK",
        ):
            target_prescriptions(plan(*refs), structure_set(), targets=["PTV"])

    def test_rule_without_a_dose_for_the_size(self) -> None:
        with pytest.raises(PlanScoringError, match=r"no prescription for a target of maximum diameter 20\.0 mm"):
            target_prescriptions(plan(), structure_set(), targets=["PTV"], dose_by_size=lambda d: None)

    def test_missing_target_structure(self) -> None:
        with pytest.raises(PlanScoringError, match=r"rs\.dcm has no structure for the target 'GTV'"):
            target_prescriptions(plan(target_ref(1, 3, 30.0)), structure_set(), targets=["GTV"])

    def test_max_diameter_of_a_box(self) -> None:
        cube = box(1, "b", (0.0, 0.0, 0.0), (10.0, 20.0, 30.0))
        # Corners of the first and last planes (z 0.5 and 29.5).
        assert max_diameter_mm(cube) == pytest.approx(math.sqrt(10**2 + 20**2 + 29**2))


def analytic_submission(*refs: DoseReference, fractions: int | None = 3) -> LoadedSubmission:
    """Dose: each sphere's own cloud ``Rx falloff(distance from its surface)`` (voxel-wise maximum), 1.5 mm grid."""
    axes = grid_axes((-45.0, -45.0, -45.0), (45.0, 60.0, 95.0), 1.5)
    clouds = [RX_GY * falloff(radius_field(axes, c) - r) for c, r in (((0.0, 0.0, 0.0), 10.0), ((0.0, 0.0, 50.0), 7.0))]
    dose = DoseGrid(np.maximum(*clouds), *axes, path="rd.dcm")
    return LoadedSubmission(ct=None, structure_set=structure_set(), plan=plan(*refs, fractions=fractions), dose=dose)


def criteria_for(rx: TargetPrescription, ptv_cc: float, primary: bool) -> list[Criterion]:
    suffix = "" if primary else f"@{rx.structure}"
    out = [
        Criterion("coverage" + suffix, rx.structure, "V100%", ">=", 95.0, 90.0, "%"),
        Criterion("r50" + suffix, rx.structure, "R50%", "<=", 7.0, 8.0, "1"),
        Criterion("d2cm" + suffix, rx.structure, "D2cm%", "<=", 30.0, 40.0, "%"),
    ]
    if primary:
        out.append(Criterion("cord", "SpinalCord", "D0.5cc", "<=", 8.0, 10.0, "Gy"))
    return out


class TestScorePlan:
    def test_two_targets_measured_and_evaluated(self) -> None:
        loaded = analytic_submission(target_ref(1, 3, RX_GY), target_ref(2, 4, RX_GY))
        score = score_plan(loaded, targets=["PTV"], criteria_for=criteria_for)
        assert score.fractions == 3
        assert [t.structure for t in score.prescriptions] == ["PTV", "PTV_2"]
        assert score.name_mapping == {"PTV": "ptv", "PTV_2": "PTV_2", "SpinalCord": "Cord"}
        assert [c.id for c in score.criteria] == ["coverage", "r50", "d2cm", "cord", "coverage@PTV_2", "r50@PTV_2",
                                                  "d2cm@PTV_2"]  # fmt: skip
        # Independent: falloff is 1 up to 1 mm outside each sphere, so coverage is 100 %; the 50 % isodose lies
        # 6 mm outside (R50% = ((r + 6) / r)³ within voxelisation); D2cm = 100 falloff(20).
        for name, r in (("PTV", 10.0), ("PTV_2", 7.0)):
            assert score.measurement(name, "V100%").value == pytest.approx(100.0)
            assert score.measurement(name, "R50%").value == pytest.approx(((r + 6.0) / r) ** 3, rel=0.05)
            assert score.measurement(name, "D2cm%").value == pytest.approx(100 * float(falloff(np.array(20.0))), abs=1)
            assert score.measurement(name, "Volume").value == pytest.approx(4 / 3 * math.pi * r**3 / 1000, rel=0.05)
            assert score.measurement(name, "Dmax").value == pytest.approx(RX_GY)
        cord = score.measurement("SpinalCord", "D0.5cc")
        # Cord from y = 25 to 35 mm: 15 mm from the 10 mm sphere, so D0.5cc is at most falloff(15) of Rx.
        assert cord.value is not None and cord.value <= RX_GY * float(falloff(np.array(15.0))) + 1e-9
        assert cord.parameters["submitted_name"] == "Cord" and cord.parameters["dose_grid_spacing_mm"] == (1.5,) * 3
        d2cm = score.measurement("PTV_2", "D2cm%").parameters
        assert d2cm["neighbourhood"] == "nearest_target" and d2cm["distance_method"] == "supersampled_surface"
        assert d2cm["prescription_gy"] == RX_GY and "ReferencedROINumber 4" in d2cm["prescription_source"]
        assert {"PaddickCI", "GI", "D99%", "D95%", "Dmean"} <= {m.metric for m in score.measurements}
        assert score.evaluation.outcome is OutcomeLevel.PER_PROTOCOL, score.evaluation.reasons
        assert score.evaluation.result("r50@PTV_2").value == score.measurement("PTV_2", "R50%").value

    def test_unknown_value_reason_reaches_the_evaluation(self) -> None:
        loaded = analytic_submission(target_ref(1, 3, RX_GY), target_ref(2, 4, RX_GY))
        assert loaded.dose is not None
        d = loaded.dose
        cut = DoseGrid(d.values_gy[:, :39, :], d.z_mm, d.y_mm[:39], d.x_mm)  # stops at y = 12 mm
        loaded = LoadedSubmission(None, loaded.structure_set, loaded.plan, cut)
        score = score_plan(loaded, targets=["PTV"], criteria_for=criteria_for)
        m = score.measurement("PTV", "R50%")
        assert m.value is None and isinstance(m, PlanMeasurement)
        assert "reaches the dose-grid edge" in m.parameters["reason"]
        result = score.evaluation.result("r50")
        assert result.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION and "reaches the dose-grid edge" in result.reason
        # The cord (y 25-35 mm) is off the grid: its DVH metrics are unknown, with the reason.
        cord = score.evaluation.result("cord")
        assert cord.value is None and "no volume on the dose grid" in cord.reason

    def test_target_off_the_dose_grid(self) -> None:
        loaded = analytic_submission(target_ref(1, 3, RX_GY), target_ref(2, 4, RX_GY))
        assert loaded.dose is not None
        d = loaded.dose
        cut = DoseGrid(d.values_gy[:, :, :45], d.z_mm, d.y_mm, d.x_mm[:45], path="rd.dcm")  # stops at x = 21 mm
        loaded = LoadedSubmission(None, loaded.structure_set, loaded.plan, cut)
        with pytest.raises(PlanScoringError, match=r"rd\.dcm: target 'PTV_2' .*has no voxel on the dose grid"):
            score_plan(loaded, targets=["PTV"], criteria_for=criteria_for)

    def test_fractions_from_the_plan_or_given(self) -> None:
        loaded = analytic_submission(target_ref(1, 3, RX_GY), fractions=None)
        with pytest.raises(PlanScoringError, match=r"rp\.dcm: .*\(300A,0078\) NumberOfFractionsPlanned"):
            score_plan(loaded, targets=["PTV"], criteria_for=criteria_for)
        loaded = analytic_submission(target_ref(1, 3, RX_GY), target_ref(2, 4, RX_GY), fractions=3)
        score = score_plan(loaded, targets=["PTV"], criteria_for=criteria_for, fractions=5)
        assert score.fractions == 5
        assert any("scored for 5 fractions but rp.dcm has" in w for w in score.warnings)

    def test_missing_objects(self) -> None:
        loaded = analytic_submission(target_ref(1, 3, RX_GY))
        bare = LoadedSubmission(None, loaded.structure_set, loaded.plan, None)
        with pytest.raises(PlanScoringError, match=r"the submission has no RTDOSE"):
            score_plan(bare, targets=["PTV"], criteria_for=criteria_for)

    def test_missing_organ(self) -> None:
        loaded = analytic_submission(target_ref(1, 3, RX_GY), target_ref(2, 4, RX_GY))
        assert loaded.structure_set is not None
        without_cord = StructureSet(loaded.structure_set.structures[:2], path="rs.dcm")
        loaded = LoadedSubmission(None, without_cord, loaded.plan, loaded.dose)
        score = score_plan(loaded, targets=["PTV"], criteria_for=criteria_for)
        assert "no structure of rs.dcm maps to SpinalCord: its criteria fail" in score.warnings
        result = score.evaluation.result("cord")
        assert result.outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert "required structure SpinalCord is missing from the submission" in result.reason
