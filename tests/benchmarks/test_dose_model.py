"""Tests of benchmarks.dose_model: plan quality of the analytic reference doses (RTOG 0813/0915, TG-101)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.anatomy import head_phantom, pelvis_phantom, thorax_phantom
from benchmarks.dose_model import (
    DoseModelError,
    DoseModelOptions,
    ModelDose,
    TargetPrescription,
    add_organ_overdose,
    compute_reference_dose,
    signed_distance_mm,
)
from benchmarks.phantoms import Phantom
from qa_checks.geometry import DoseGrid
from qa_checks.plan_indices import PlanIndices, compute_plan_indices, rtog_conformity_limits


def _indices(model: ModelDose, target: TargetPrescription, half_width_mm: float = 40.0) -> PlanIndices:
    """Plan indices of one target on a sub-grid of +/- half_width_mm around it (so that another target's dose
    cloud does not count in its R50% and D2cm; the SRS targets are 85 mm apart)."""
    ptv = model.masks[target.structure]
    iz, iy, ix = np.nonzero(ptv)
    axes = (model.dose.z_mm, model.dose.y_mm, model.dose.x_mm)
    box = []
    for axis, idx in zip(axes, (iz, iy, ix), strict=True):
        centre = axis[idx].mean()
        box.append(
            slice(
                int(np.searchsorted(axis, centre - half_width_mm)), int(np.searchsorted(axis, centre + half_width_mm))
            )
        )
    sub = DoseGrid(model.dose.values_gy[tuple(box)], axes[0][box[0]], axes[1][box[1]], axes[2][box[2]])
    return compute_plan_indices(sub, ptv[tuple(box)], target.dose_gy)


@pytest.fixture(scope="module")
def thorax() -> Phantom:
    return thorax_phantom(spacing_mm=(3.0, 2.0, 2.0))


@pytest.fixture(scope="module")
def lung(thorax: Phantom) -> ModelDose:
    return compute_reference_dose(thorax, [TargetPrescription("PTV", 54.0)], subsampling=(1, 1, 1))


@pytest.fixture(scope="module")
def prostate() -> ModelDose:
    return compute_reference_dose(
        pelvis_phantom(spacing_mm=(3.0, 2.0, 2.0)), [TargetPrescription("PTV", 36.25)], subsampling=(1, 1, 1)
    )


@pytest.fixture(scope="module")
def srs() -> ModelDose:
    return compute_reference_dose(
        head_phantom(spacing_mm=(2.0, 2.0, 2.0)),
        [TargetPrescription("PTV", 24.0), TargetPrescription("PTV_2", 18.0)],
        subsampling=(1, 1, 1),
    )


class TestPlanQuality:
    @pytest.mark.parametrize("which", ["lung", "prostate", "srs"])
    def test_rtog_conformity_no_deviation(self, which: str, request: pytest.FixtureRequest) -> None:
        model: ModelDose = request.getfixturevalue(which)
        for target in model.prescriptions:
            indices = _indices(model, target)
            limits = rtog_conformity_limits(indices.ptv_volume_cc)
            # R50% and D2cm inside the RTOG 0813/0915 "no deviation" range for the PTV volume.
            assert 1.5 < indices.r50 < limits.r50_no_deviation, target
            assert indices.d2cm_percent < limits.d2cm_no_deviation_percent, target
            # A realistic fall-off: the 50% isodose is not hugging the PTV either (R50 above 60% of the limit).
            assert indices.r50 > 0.6 * limits.r50_no_deviation
            # R100% (PIV / TV) below the RTOG no-deviation 1.2.
            assert indices.r100 < 1.2

    @pytest.mark.parametrize("which", ["lung", "prostate", "srs"])
    def test_coverage_and_hot_spot(self, which: str, request: pytest.FixtureRequest) -> None:
        model: ModelDose = request.getfixturevalue(which)
        for target in model.prescriptions:
            indices = _indices(model, target)
            # Coverage is tuned by bisection on the dose grid; 1 point absorbs the voxel granularity of a ~400
            # voxel SRS PTV (one voxel = 0.25%).
            assert indices.ptv_coverage_percent == pytest.approx(DoseModelOptions().coverage_percent, abs=1.0)
            # SABR maximum 110-140% of prescription (prescribed to the 70-90% isodose).
            assert 1.10 < indices.hi_rtog < 1.40

    def test_lung_organ_doses(self, lung: ModelDose) -> None:
        dose = lung.dose.values_gy
        # AAPM TG-101, 3 fractions: spinal cord Dmax 21.9 Gy, heart Dmax 30 Gy, oesophagus Dmax 25.2 Gy.
        assert dose[lung.masks["SpinalCord"]].max() < 21.9
        assert dose[lung.masks["Heart"]].max() < 30.0
        assert dose[lung.masks["Esophagus"]].max() < 25.2
        # RTOG 0915: total lung V20Gy < 10% (lungs minus GTV).
        lungs = (lung.masks["Lung_L"] | lung.masks["Lung_R"]) & ~lung.masks["GTV"]
        assert np.count_nonzero(dose[lungs] >= 20.0) / np.count_nonzero(lungs) < 0.10

    def test_srs_organ_doses(self, srs: ModelDose) -> None:
        dose = srs.dose.values_gy
        # AAPM TG-101 single fraction: brainstem Dmax 15 Gy, optic pathway Dmax 10 Gy.
        assert dose[srs.masks["Brainstem"]].max() < 15.0
        assert dose[srs.masks["OpticChiasm"]].max() < 10.0

    def test_size_dependent_prescriptions(self, srs: ModelDose) -> None:
        for target in srs.prescriptions:
            doses = srs.dose.values_gy[srs.masks[target.structure]]
            # Each PTV is covered at its own prescription: its D95 is within 3% of it (tilt and 2 mm grid).
            assert np.quantile(doses, 0.05) == pytest.approx(target.dose_gy, rel=0.03)

    def test_body_outside_is_zero(self, lung: ModelDose) -> None:
        assert lung.dose.values_gy[~lung.masks["Body"]].max() == 0.0


class TestModel:
    def test_profile_is_monotonic_and_anchored(self, lung: ModelDose) -> None:
        profile = lung.profiles["PTV"]
        d = np.linspace(-20.0, 60.0, 801)
        relative = profile.relative_dose(d)
        assert np.all(np.diff(relative) < 0)
        # By construction the (untilted) profile is 1 at the coverage distance and 0.5 at the R50 distance.
        assert float(profile.relative_dose(profile.coverage_distance_mm)) == pytest.approx(1.0, abs=1e-9)
        assert float(profile.relative_dose(profile.r50_distance_mm)) == pytest.approx(0.5, abs=1e-9)

    def test_signed_distance(self) -> None:
        mask = np.zeros((1, 1, 21), dtype=bool)
        mask[0, 0, 5:16] = True
        sd = signed_distance_mm(mask, (1.0, 1.0, 1.0))
        # Surface half a voxel beyond the outer voxel centres: -0.5 on the edge voxels, +0.5 just outside.
        assert sd[0, 0, 5] == pytest.approx(-0.5)
        assert sd[0, 0, 4] == pytest.approx(0.5)
        assert sd[0, 0, 10] == pytest.approx(-5.5)

    def test_deterministic_and_subsampling(self, thorax: Phantom) -> None:
        a = compute_reference_dose(thorax, [TargetPrescription("PTV", 54.0)], subsampling=(1, 2, 2))
        b = compute_reference_dose(thorax, [TargetPrescription("PTV", 54.0)], subsampling=(1, 2, 2))
        assert np.array_equal(a.dose.values_gy, b.dose.values_gy)
        assert a.dose.spacing_mm == (3.0, 4.0, 4.0)

    def test_options_change_r50(self, thorax: Phantom, lung: ModelDose) -> None:
        loose = compute_reference_dose(
            thorax, [TargetPrescription("PTV", 54.0)], options=DoseModelOptions(r50=6.0), subsampling=(1, 1, 1)
        )
        # An explicit R50 target: the measured R50 follows within 5% (bath and tilt move the 50% isodose a
        # fraction of a voxel).
        assert _indices(loose, loose.prescriptions[0], 60.0).r50 == pytest.approx(6.0, rel=0.05)
        assert loose.profiles["PTV"].sigma_mm > lung.profiles["PTV"].sigma_mm

    def test_organ_overdose(self, lung: ModelDose) -> None:
        raised = add_organ_overdose(lung, "SpinalCord", 25.0)
        cord = lung.masks["SpinalCord"]
        assert raised.dose.values_gy[cord].max() == pytest.approx(25.0)
        assert lung.dose.values_gy[cord].max() < 5.0
        # Only the cord segment near the target is raised: the far cord keeps its dose.
        assert np.median(raised.dose.values_gy[cord]) < 25.0
        assert np.array_equal(raised.dose.values_gy[lung.masks["PTV"]], lung.dose.values_gy[lung.masks["PTV"]])

    def test_errors(self, thorax: Phantom) -> None:
        with pytest.raises(DoseModelError, match="target 'PTV_9' is not a structure"):
            compute_reference_dose(thorax, [TargetPrescription("PTV_9", 54.0)])
        with pytest.raises(DoseModelError, match="dose_gy must be positive"):
            compute_reference_dose(thorax, [TargetPrescription("PTV", -1.0)])
        with pytest.raises(DoseModelError, match="coverage_percent must be in"):
            DoseModelOptions(coverage_percent=100.0)
        with pytest.raises(DoseModelError, match="subsampling must be three positive integers"):
            compute_reference_dose(thorax, [TargetPrescription("PTV", 54.0)], subsampling=(0, 1, 1))
