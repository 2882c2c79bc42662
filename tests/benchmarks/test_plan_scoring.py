"""qa_checks.planning.score_plan on the shipped planning cases' reference plans, checked against the analytic
dose model (benchmarks.cases.model_dose) by voxel counting on the model grid."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from benchmarks.cases import BuiltCase, build_case, get_case, model_dose
from benchmarks.dose_model import ModelDose
from benchmarks.protocols import Protocol, load_protocol
from benchmarks.simulator import plan_oracle
from qa_checks.dicom_io import load_submission
from qa_checks.errors import PlanScoringError
from qa_checks.planning import PlanScore, TargetPrescription, score_plan, target_prescriptions
from qa_checks.protocol import Criterion, OutcomeLevel

pytestmark = pytest.mark.slow  # each case is built at full size (7-15 s) and its model dose recomputed

PLANNING_CASES = ("lung-sabr-planning", "prostate-sabr-planning", "srs-brain-planning")


CriteriaFor = Callable[[TargetPrescription, float, bool], Sequence[Criterion]]


def criteria_for(protocol: Protocol, fractions: int) -> CriteriaFor:
    def make(rx: TargetPrescription, ptv_cc: float, primary: bool) -> Sequence[Criterion]:
        return protocol.planning_criteria(
            fractions=fractions,
            ptv_volume_cc=ptv_cc,
            prescription_gy=rx.dose_gy,
            target=rx.structure,
            include_oars=primary,
        )

    return make


def dose_by_size(protocol: Protocol) -> Callable[[float], float | None]:
    def rule(diameter_mm: float) -> float | None:
        doses = {f.dose_gy for f in protocol.fractionations_for_diameter(diameter_mm)}
        return doses.pop() if len(doses) == 1 else None

    return rule


def score(directory: Path, protocol: Protocol, fractions: int) -> PlanScore:
    assert protocol.planning is not None
    return score_plan(
        load_submission(directory),
        targets=[protocol.planning.prescription.target],
        criteria_for=criteria_for(protocol, fractions),
        composites=protocol.composite_structures(),
        dose_by_size=dose_by_size(protocol),
    )


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[BuiltCase, ModelDose]]:
    out = {}
    root = tmp_path_factory.mktemp("cases")
    for case_id in PLANNING_CASES:
        spec = get_case(case_id)
        assert spec.plan is not None
        out[case_id] = (build_case(case_id, root), model_dose(spec.plan, spec.builder()))
    return out


def own_parts(model: ModelDose) -> dict[str, np.ndarray]:
    """Each target's nearest-target part of the model grid, from one distance transform per target."""
    names = [t.structure for t in model.prescriptions]
    if len(names) == 1:
        return {names[0]: np.ones(model.dose.shape, dtype=bool)}
    spacing = model.dose.spacing_mm
    distance = np.stack([ndimage.distance_transform_edt(~model.masks[n], sampling=spacing) for n in names])
    nearest = np.argmin(distance, axis=0)
    return {n: nearest == i for i, n in enumerate(names)}


@pytest.mark.parametrize("case_id", PLANNING_CASES)
def test_reference_plan_matches_the_dose_model(cases: dict[str, tuple[BuiltCase, ModelDose]], case_id: str) -> None:
    built, model = cases[case_id]
    spec = get_case(case_id)
    assert spec.plan is not None
    protocol = load_protocol(spec.protocol_id)
    result = score(built.dicom_dir, protocol, spec.plan.fractions)
    assert result.fractions == spec.plan.fractions
    assert result.warnings == ()
    # The test oracle (benchmarks.simulator.plan_oracle, measuring on the model grid with the phantom masks)
    # reaches the same outcome on every criterion of the primary target and the organs.
    oracle = plan_oracle(protocol, spec.plan, model, model, check="planning")
    for expected in oracle.evaluation.results:
        got = result.evaluation.result(expected.criterion.id)
        assert got.outcome is expected.outcome, (got.reason, expected.reason)
    assert result.evaluation.outcome is not OutcomeLevel.UNACCEPTABLE_VARIATION, result.evaluation.reasons
    ids = [c.id for c in result.criteria]
    assert len(ids) == len(set(ids))
    for res in result.evaluation.results:
        assert res.value is not None, res.reason

    values = model.dose.values_gy
    parts = own_parts(model)
    for target in spec.plan.targets:
        rx, mask = target.dose_gy, model.masks[target.structure]
        n = int(mask.sum())
        # The scorer rasterises the RTSTRUCT contours on the RTDOSE grid (the model grid) and reads 16-bit
        # doses; the model masks are the phantom's voxels. Coverage agrees within 0.5 percentage point, the
        # isodose volume ratios within 1 %.
        coverage = 100.0 * np.count_nonzero(mask & (values >= rx)) / n
        assert result.measurement(target.structure, "V100%").value == pytest.approx(coverage, abs=0.5)
        for metric, level in (("R100%", 1.0), ("R50%", 0.5)):
            ratio = np.count_nonzero(parts[target.structure] & (values >= level * rx)) / n
            assert result.measurement(target.structure, metric).value == pytest.approx(ratio, rel=0.01)
        # D2cm: the model's dose at 20 mm from the PTV surface where its tilt is highest. The model measures
        # distance from voxel masks (about ±1 mm), so the values agree within 1.5 percentage points.
        profile = model.profiles[target.structure]
        d2cm = 100.0 * float(profile.relative_dose(20.0, profile.modulation))
        assert result.measurement(target.structure, "D2cm%").value == pytest.approx(d2cm, abs=1.5)
        m = result.measurement(target.structure, "D2cm%")
        assert m.parameters["dose_grid_spacing_mm"] == pytest.approx(model.dose.spacing_mm)
        assert "TargetPrescriptionDose" in m.parameters["prescription_source"]


def test_lung_composite_by_voxel_counting(cases: dict[str, tuple[BuiltCase, ModelDose]]) -> None:
    built, model = cases["lung-sabr-planning"]
    result = score(built.dicom_dir, load_protocol("uk-lung-sabr"), 3)
    lungs = model.masks["Lung_L"] | model.masks["Lung_R"]
    v20 = 100.0 * np.count_nonzero(lungs & (model.dose.values_gy >= 20.0)) / np.count_nonzero(lungs)
    m = result.measurement("Lungs", "V20Gy%")
    assert m.value == pytest.approx(v20, abs=0.2)
    assert m.parameters["composite_of"] == ["Lung_L", "Lung_R"]


def test_srs_targets_take_their_own_prescriptions(cases: dict[str, tuple[BuiltCase, ModelDose]]) -> None:
    built, _ = cases["srs-brain-planning"]
    result = score(built.dicom_dir, load_protocol("srs-brain"), 1)
    assert [(t.structure, t.dose_gy) for t in result.prescriptions] == [("PTV", 24.0), ("PTV_2", 18.0)]
    for t in result.prescriptions:
        assert "(300A,0026) TargetPrescriptionDose" in t.source and "ReferencedROINumber" in t.source
    ids = {c.id for c in result.criteria}
    assert {"coverage@PTV_2", "max_dose@PTV_2", "r100@PTV_2"} <= ids
    assert result.evaluation.result("coverage@PTV_2").value == result.measurement("PTV_2", "V100%").value
    assert result.measurement("PTV_2", "R100%").parameters["neighbourhood"] == "nearest_target"


def test_srs_organ_at_risk_reference_for_the_ptv(cases: dict[str, tuple[BuiltCase, ModelDose]], tmp_path: Path) -> None:
    built, _ = cases["srs-brain-planning"]
    copy = tmp_path / "dicom"
    shutil.copytree(built.dicom_dir, copy)
    loaded = load_submission(copy)
    assert loaded.structure_set is not None
    ptv_roi = loaded.structure_set["PTV"].number
    path = copy / "RTPLAN.dcm"
    ds = pydicom.dcmread(path)
    for item in ds.DoseReferenceSequence:
        if int(item.ReferencedROINumber) == ptv_roi:
            item.DoseReferenceType = "ORGAN_AT_RISK"
    ds.save_as(path)
    loaded = load_submission(copy)
    assert loaded.plan is not None and loaded.structure_set is not None
    protocol = load_protocol("srs-brain")
    rule = dose_by_size(protocol)
    found = target_prescriptions(loaded.plan, loaded.structure_set, targets=["PTV"], dose_by_size=rule)
    # The PTV (maximum diameter about 19 mm) gets the protocol's 24 Gy band; PTV_2 keeps its RTPLAN 18 Gy.
    assert [(t.structure, t.dose_gy) for t in found] == [("PTV", 24.0), ("PTV_2", 18.0)]
    assert "ORGAN_AT_RISK, not a prescription" in found[0].source and "protocol rule" in found[0].source
    with pytest.raises(PlanScoringError, match=r"no prescription for the target 'PTV' .*ORGAN_AT_RISK"):
        target_prescriptions(loaded.plan, loaded.structure_set, targets=["PTV"])
