"""DVH: analytic cases after Nelms et al. 2015 (spheres and cylinders in uniform and linear-gradient dose),
small-volume metrics with supersampling, metric parsing, and bad input."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.dvh import DVH, compute_dvh, dvh_measurements, is_dvh_metric
from qa_checks.geometry import DoseGrid
from qa_checks.protocol import Criterion, OutcomeLevel, evaluate
from qa_checks.rasterise import rasterise
from qa_checks.structures import Contour, Structure
from tests.qa_checks.conftest import cylinder_contours, sphere_contours

SPHERE_RADIUS_MM = 12.0  # 7.24 cc
SPHERE_CENTRE = (0.3, -0.4, 0.2)  # (x, y, z) mm, off every grid lattice used here
CONTOUR_PLANES_MM = np.arange(-40.0, 40.01, 0.5)  # contours every 0.5 mm: a finely drawn sphere
CENTRE_DOSE_GY = 20.0
GRADIENT_GY_PER_MM = 0.2

Array = npt.NDArray[np.float64]
DoseFunction = Callable[[Array, Array, Array], Array]


def structure_of(polygons: list[npt.NDArray[np.float64]], name: str = "S") -> Structure:
    return Structure(number=1, name=name, contours=tuple(Contour(p, "CLOSED_PLANAR") for p in polygons))


def sphere_structure(
    radius_mm: float = SPHERE_RADIUS_MM, centre: tuple[float, float, float] = SPHERE_CENTRE
) -> Structure:
    return structure_of(sphere_contours(centre, radius_mm, CONTOUR_PLANES_MM), "Sphere")


def axis(spacing_mm: float, half_width_mm: float = 40.0) -> npt.NDArray[np.float64]:
    n = round(half_width_mm / spacing_mm)
    return spacing_mm * np.arange(-n, n + 1, dtype=np.float64)


def dose_grid(spacing_mm: float, dose_of_zyx: DoseFunction, half_width_mm: float = 40.0) -> DoseGrid:
    a = axis(spacing_mm, half_width_mm)
    z, y, x = np.meshgrid(a, a, a, indexing="ij")
    return DoseGrid(dose_of_zyx(z, y, x), a, a, a)


def sphere_volume_cc(radius_mm: float) -> float:
    return 4.0 / 3.0 * math.pi * radius_mm**3 / 1000.0


def cap_fraction(height_mm: float, radius_mm: float) -> float:
    """Fraction of a sphere's volume in a cap of height h: h²(3R − h) / (4R³)."""
    h = min(max(height_mm, 0.0), 2 * radius_mm)
    return h**2 * (3 * radius_mm - h) / (4 * radius_mm**3)


def analytic_d_percent_gradient(percent: float, radius_mm: float) -> float:
    """Dose of the x % hottest sphere volume in dose D0 + g·(x − cx): the cap of that volume has height h,
    and D = D0 + g (R − h). h found by bisection on cap_fraction (monotonic)."""
    lo, hi = 0.0, 2 * radius_mm
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cap_fraction(mid, radius_mm) < percent / 100 else (lo, mid)
    return CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * (radius_mm - 0.5 * (lo + hi))


def gradient_x(z: Array, y: Array, x: Array) -> Array:
    return CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * (x - SPHERE_CENTRE[0])


def gradient_z(z: Array, y: Array, x: Array) -> Array:
    return CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * (z - SPHERE_CENTRE[2])


class TestSphereUniformDose:
    # A 7.2 cc sphere is only 4 voxels in radius on a 3 mm grid: voxel centres alone give a volume 3 % off
    # there (measured 7.02 cc), hence 3 mm is tested with supersampling only.
    @pytest.mark.parametrize(("spacing", "supersample"), [(1.0, 1), (2.5, 1), (1.0, 3), (2.5, 3), (3.0, 3), (3.0, 5)])
    def test_every_metric_is_the_dose(self, spacing: float, supersample: int) -> None:
        dose = dose_grid(spacing, lambda z, y, x: np.full(z.shape, 18.5))
        dvh = compute_dvh(dose, sphere_structure(), supersample=supersample)
        # Volume: ≥ 5 cc structures within 1 % of analytic.
        assert dvh.volume_cc == pytest.approx(sphere_volume_cc(SPHERE_RADIUS_MM), rel=0.01)
        # Every sample has the same dose, up to the rounding of a·(1 − t) + a·t in trilinear interpolation and
        # of the volume-weighted sum for the mean (1e-9 Gy).
        for value in (dvh.mean_gy, dvh.max_gy, dvh.min_gy, dvh.d_percent(2), dvh.d_percent(50), dvh.d_cc(0.03)):
            assert value == pytest.approx(18.5, abs=1e-9)
        assert dvh.v_gy(18.5 - 1e-9) == pytest.approx(dvh.volume_cc, rel=1e-12)
        assert dvh.v_gy(18.51) == 0.0
        assert dvh.v_gy_percent(18.5 - 1e-9) == pytest.approx(100.0, rel=1e-12)


class TestSphereLinearGradient:
    @pytest.mark.parametrize("gradient", [gradient_x, gradient_z], ids=["in-plane", "through-plane"])
    @pytest.mark.parametrize(("spacing", "supersample"), [(1.0, 1), (2.5, 3), (3.0, 5)])
    def test_analytic_dvh(self, gradient: DoseFunction, spacing: float, supersample: int) -> None:
        dvh = compute_dvh(dose_grid(spacing, gradient), sphere_structure(), supersample=supersample)
        # Mean dose = centre dose by symmetry; trilinear interpolation of a linear dose is exact, so the only
        # error is the asymmetry of the voxelised sphere about its centre: < 0.5 % of the dose (measured
        # ≤ 0.02 %).
        assert dvh.mean_gy == pytest.approx(CENTRE_DOSE_GY, rel=0.005)
        # D_x: the samples' doses lie on a lattice g × (spacing / supersample) apart, and D_x is a sample dose,
        # so it is within one lattice step of the analytic value when the voxelised volume is right
        # (measured ≤ 0.51 step).
        step = GRADIENT_GY_PER_MM * spacing / supersample
        for percent in (2, 10, 50, 90, 98):
            assert dvh.d_percent(percent) == pytest.approx(
                analytic_d_percent_gradient(percent, SPHERE_RADIUS_MM), abs=step
            ), percent
        assert dvh.d_percent(50) == pytest.approx(CENTRE_DOSE_GY, abs=step)
        # V_x Gy: the cap above the isodose plane. The samples put the plane on a lattice of sub-voxel
        # positions (spacing / supersample apart), and a slab of a sphere that thick holds at most
        # 3 t / (4 R) of its volume; plus 1 % for the voxelised sphere's volume.
        slab_percent = 100 * 3 * (spacing / supersample) / (4 * SPHERE_RADIUS_MM)
        for dose_gy in (18.0, 20.0, 21.5):
            height = SPHERE_RADIUS_MM - (dose_gy - CENTRE_DOSE_GY) / GRADIENT_GY_PER_MM
            expected = cap_fraction(height, SPHERE_RADIUS_MM) * 100
            assert dvh.v_gy_percent(dose_gy) == pytest.approx(expected, abs=1.0 + slab_percent), dose_gy


class TestCylinderLinearGradient:
    def test_linear_dvh_along_the_axis(self) -> None:
        # Cylinder r = 10 mm contoured on 1 mm planes z = -9.5 ... 9.5: a cylinder from z = -10 to 10 mm
        # (each plane stands for a 1 mm slab). Dose D0 + g z along its axis: the cumulative DVH is linear,
        # V(≥ D) / V = (10 − (D − D0)/g) / 20, so D_x% = D0 + g (10 − 20 x/100), mean = D0.
        planes = np.arange(-9.5, 9.51, 1.0)
        cylinder = structure_of(cylinder_contours((0.2, -0.3), 10.0, planes), "Cylinder")
        dose = dose_grid(1.0, lambda z, y, x: CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * z)
        dvh = compute_dvh(dose, cylinder, supersample=4)
        # Volume: π r² h = 6.28 cc; the rasterised circle (sub-voxel centres) is within 1 %.
        assert dvh.volume_cc == pytest.approx(math.pi * 100 * 20 / 1000, rel=0.01)
        assert dvh.mean_gy == pytest.approx(CENTRE_DOSE_GY, abs=1e-9)  # symmetric slabs about z = 0: exact
        step = GRADIENT_GY_PER_MM * 1.0 / 4  # dose step between sub-slices
        for percent in (5, 25, 50, 75, 95):
            expected = CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * (10 - 20 * percent / 100)
            assert dvh.d_percent(percent) == pytest.approx(expected, abs=step), percent
        assert dvh.max_gy == pytest.approx(CENTRE_DOSE_GY + GRADIENT_GY_PER_MM * (10 - step / GRADIENT_GY_PER_MM / 2))


class TestSmallVolume:
    RADIUS_MM = 6.0  # 0.90 cc
    GRADIENT = 1.0  # Gy/mm: steep, like an SRS fall-off
    CENTRE_GY = 40.0

    def analytic_d003(self) -> float:
        # The hottest 0.03 cc is a cap of volume π h² (3R − h) / 3 = 30 mm³; D = D0 + g (R − h).
        roots = np.roots([-math.pi / 3, math.pi * self.RADIUS_MM, 0.0, -30.0])
        h = next(float(r.real) for r in roots if abs(r.imag) < 1e-9 and 0 < r.real < self.RADIUS_MM)
        return self.CENTRE_GY + self.GRADIENT * (self.RADIUS_MM - h)

    def d003(self, supersample: int, shift_mm: float) -> float:
        centre = (0.7 * shift_mm, -0.3 * shift_mm, shift_mm)
        structure = structure_of(sphere_contours(centre, self.RADIUS_MM, CONTOUR_PLANES_MM + 0.25), "Chiasm")
        dose = dose_grid(3.0, lambda z, y, x: self.CENTRE_GY + self.GRADIENT * (x - centre[0]), half_width_mm=30.0)
        return compute_dvh(dose, structure, supersample=supersample).d_cc(0.03)

    def test_supersampling_makes_d003cc_stable_on_a_3mm_grid(self, caplog: pytest.LogCaptureFixture) -> None:
        exact = self.analytic_d003()
        shifts = np.linspace(0.0, 3.0, 7)  # the sphere moved across one voxel
        with caplog.at_level(logging.WARNING, logger="qa_checks.dvh"):
            fine = np.array([self.d003(5, s) for s in shifts])
            coarse = np.array([self.d003(1, s) for s in shifts])
        # Supersample 5: sample doses are g · 3 mm / 5 = 0.6 Gy apart, so every result is within one step of
        # the analytic value (measured ≤ 0.26 Gy).
        assert np.all(np.abs(fine - exact) <= 0.6)
        # Without supersampling the result jumps by whole 3 Gy voxel steps as the sphere moves (measured
        # spread 2.6 Gy): the instability the warning is about.
        assert np.ptp(coarse) > 2 * np.ptp(fine)
        # 0.03 cc is 1.1 voxels of 0.027 cc: every call warns, in words that say whether it was supersampled.
        warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("D0.03cc of Chiasm")]
        assert len(warnings) == 2 * len(shifts)
        assert sum("not supersampled" in w for w in warnings) == len(shifts)
        assert warnings[-1] == (
            "D0.03cc of Chiasm on a 3 mm dose grid: the volume is 1.1 dose voxels (0.027 cc each); not supersampled: "
            "the value jumps with the structure's position on the grid"
        )


class TestMasksAndCurve:
    def test_mask_gives_the_same_dvh_as_the_structure(self) -> None:
        dose = dose_grid(2.0, gradient_x)
        structure = sphere_structure()
        from_structure = compute_dvh(dose, structure, supersample=1)
        from_mask = compute_dvh(dose, rasterise(structure, dose))
        np.testing.assert_array_equal(from_structure.sample_dose_gy, from_mask.sample_dose_gy)
        assert from_structure.volume_cc == from_mask.volume_cc
        assert from_structure.structure_name == "Sphere" and from_mask.structure_name is None

    def test_fractional_mask_weights_volume(self) -> None:
        # Two voxels of 8 mm³, half and fully occupied: 12 mm³ = 0.012 cc; mean dose weighted 1:2.
        a = np.array([0.0, 2.0])
        values = np.zeros((2, 2, 2))
        values[:, :, 0], values[:, :, 1] = 10.0, 40.0  # a gradient of 15 Gy/mm along x only
        mask = np.zeros((2, 2, 2))
        mask[0, 0, 0], mask[0, 0, 1] = 0.5, 1.0
        dvh = compute_dvh(DoseGrid(values, a, a, a), mask)
        assert dvh.volume_cc == pytest.approx(0.012, rel=1e-12)
        assert dvh.mean_gy == pytest.approx((0.5 * 10 + 1.0 * 40) / 1.5, rel=1e-12)
        # Each voxel spreads its volume over 15 Gy/mm × 2 mm = 30 Gy about its dose (dvh_curve): 8 mm³ over
        # 25-55 Gy, 4 mm³ over -5-25 Gy. D_x interpolates that curve and stays within [10, 40] Gy.
        assert dvh.d_cc(0.004) == 40.0  # 55 − 30 · 4/8 = 40
        assert dvh.d_cc(0.002) == 40.0  # 47.5, kept at the maximum sample dose
        assert dvh.d_cc(0.008) == pytest.approx(25.0, rel=1e-12)
        assert dvh.d_cc(0.010) == pytest.approx(10.0, rel=1e-12)  # 25 − 30 · 2/4
        # V_x Gy counts samples whole: the 40 Gy voxel's 8 mm³ from 40 Gy down to 10 Gy.
        assert dvh.v_gy(40.0) == pytest.approx(0.008, rel=1e-12) and dvh.v_gy(40.01) == 0.0
        assert dvh.v_gy(17.5) == pytest.approx(0.008, rel=1e-12)

    def test_cumulative_curve(self) -> None:
        dvh = compute_dvh(dose_grid(2.0, gradient_x), sphere_structure(), bin_width_gy=0.5)
        assert dvh.bin_width_gy == 0.5 and dvh.dose_bins_gy[1] == 0.5
        assert dvh.cumulative_volume_cc[0] == pytest.approx(dvh.volume_cc, rel=1e-12)
        assert np.all(np.diff(dvh.cumulative_volume_cc) <= 0)
        for i in (0, 20, 40, 45):
            assert dvh.cumulative_volume_cc[i] == pytest.approx(dvh.v_gy(dvh.dose_bins_gy[i]), rel=1e-12)
        assert dvh.dose_bins_gy[-1] >= dvh.max_gy
        assert dvh.cumulative_volume_percent[0] == pytest.approx(100.0)

    def test_parameters_recorded(self) -> None:
        dvh = compute_dvh(dose_grid(2.5, gradient_x), sphere_structure(), supersample=3, bin_width_gy=0.05)
        assert dvh.grid_spacing_mm == (2.5, 2.5, 2.5)
        assert dvh.supersample == 3 and dvh.interpolation == "trilinear" and dvh.bin_width_gy == 0.05
        assert dvh.supersample_reason == "given by the caller"
        assert compute_dvh(dose_grid(2.5, gradient_x), sphere_structure(), supersample=1).interpolation == "none"


@pytest.fixture(scope="module")
def dvh() -> DVH:
    return compute_dvh(dose_grid(2.0, gradient_x), sphere_structure())


class TestMetricNames:
    @pytest.mark.parametrize(
        ("name", "method", "arg"),
        [
            ("D95%", "d_percent", 95.0),
            ("D0.03cc", "d_cc", 0.03),
            ("D2cc", "d_cc", 2.0),
            ("V20Gy", "v_gy", 20.0),
            ("V20Gycc", "v_gy", 20.0),
            ("V19.5Gy%", "v_gy_percent", 19.5),
        ],
    )
    def test_named_metrics(self, dvh: DVH, name: str, method: str, arg: float) -> None:
        assert dvh.metric(name) == getattr(dvh, method)(arg)

    def test_dmean_dmax_dmin(self, dvh: DVH) -> None:
        assert (dvh.metric("Dmean"), dvh.metric("Dmax"), dvh.metric("Dmin")) == (dvh.mean_gy, dvh.max_gy, dvh.min_gy)
        assert dvh.d_percent(0) == dvh.max_gy and dvh.d_percent(100) == dvh.min_gy and dvh.d_cc(0) == dvh.max_gy

    def test_unknown_metric(self, dvh: DVH) -> None:
        with pytest.raises(ValueError, match=r"unknown DVH metric 'D95'"):
            dvh.metric("D95")


class TestBadInput:
    def test_nan_dose_names_the_voxel(self) -> None:
        dose = dose_grid(2.0, gradient_x)
        dose.values_gy[3, 4, 5] = np.nan
        with pytest.raises(
            ValueError, match=r"voxel \(z, y, x\) = \(3, 4, 5\), position \(x, y, z\) = \(-30, -32, -34\) mm, is nan Gy"
        ):
            compute_dvh(dose, sphere_structure())

    def test_negative_dose(self) -> None:
        dose = dose_grid(2.0, gradient_x)
        dose.values_gy[0, 0, 1] = -0.5
        with pytest.raises(ValueError, match=r"\(0, 0, 1\).* is -0.5 Gy; doses must be finite and >= 0 \(1 such"):
            compute_dvh(dose, sphere_structure())

    def test_empty_structure(self) -> None:
        far = structure_of(sphere_contours((200.0, 0.0, 0.0), 5.0, CONTOUR_PLANES_MM), "Far")
        with pytest.raises(ValueError, match=r"structure Far has no volume on the dose grid"):
            compute_dvh(dose_grid(2.0, gradient_x), far)
        with pytest.raises(ValueError, match=r"structure \(mask\) has no volume"):
            compute_dvh(dose_grid(2.0, gradient_x), np.zeros((41, 41, 41), dtype=bool))

    def test_mask_shape_and_values(self) -> None:
        dose = dose_grid(2.0, gradient_x)
        with pytest.raises(ValueError, match=r"mask has shape \(2, 2, 2\) but the dose grid has shape \(41, 41, 41\)"):
            compute_dvh(dose, np.ones((2, 2, 2), dtype=bool))
        with pytest.raises(ValueError, match=r"occupancy fractions in \[0, 1\]; got values from 0.0 to 1.5"):
            compute_dvh(dose, np.full(dose.shape, 1.5) * (np.arange(41) > 0)[:, None, None])
        with pytest.raises(TypeError, match=r"boolean or float occupancy.*int64"):
            compute_dvh(dose, np.ones(dose.shape, dtype=np.int64))  # type: ignore[arg-type]

    @pytest.mark.parametrize("supersample", [0, 11, 2.0, True])
    def test_supersample_range(self, supersample: object) -> None:
        with pytest.raises(ValueError, match=r"supersample must be an integer from 1 to 10"):
            compute_dvh(dose_grid(2.0, gradient_x), sphere_structure(), supersample=supersample)  # type: ignore[arg-type]

    @pytest.mark.parametrize("width", [0.0, -1.0, math.nan])
    def test_bin_width(self, width: float) -> None:
        with pytest.raises(ValueError, match=r"bin_width_gy must be a positive number of Gy"):
            compute_dvh(dose_grid(2.0, gradient_x), sphere_structure(), bin_width_gy=width)

    def test_relative_dose_units(self) -> None:
        base = dose_grid(2.0, gradient_x)
        dose = DoseGrid(base.values_gy, base.z_mm, base.y_mm, base.x_mm, dose_units="RELATIVE", path="rd.dcm")
        with pytest.raises(ValueError, match=r"rd.dcm: \(3004,0002\) DoseUnits is 'RELATIVE'"):
            compute_dvh(dose, sphere_structure())

    def test_volume_beyond_the_structure(self) -> None:
        dvh = compute_dvh(dose_grid(2.0, gradient_x), sphere_structure())
        with pytest.raises(ValueError, match=r"D10cc is undefined: structure Sphere is only 7.2\d* cc"):
            dvh.d_cc(10.0)
        with pytest.raises(ValueError, match=r"D_x% needs 0 <= x <= 100; got 101"):
            dvh.d_percent(101)
        with pytest.raises(ValueError, match=r"D_x cc needs a volume x >= 0 cc; got -1"):
            dvh.d_cc(-1)


class TestProtocolDoseCriteria:
    def test_dvh_metrics_feed_protocol_evaluation(self, dvh: DVH) -> None:
        # Gradient plan: D50% ≈ 20 Gy, Dmax ≈ 22.4 Gy, volume 7.2 cc.
        criteria = [
            Criterion("cov", "Sphere", "D50%", ">=", 19.0, 18.0, "Gy"),
            Criterion("max", "Sphere", "D0.03cc", "<=", 22.0, 23.0, "Gy"),
            Criterion("big", "Sphere", "D10cc", "<=", 30.0, 35.0, "Gy"),  # larger than the structure
            Criterion("cord", "SpinalCord", "D0.03cc", "<=", 18.0, 21.9, "Gy"),  # no DVH for it
            Criterion("dice", "Sphere", "dice", ">=", 0.8, 0.7),  # not a DVH metric
        ]
        measured = dvh_measurements({"Sphere": dvh}, [c.key for c in criteria])
        assert set(measured) == {("Sphere", "D50%"), ("Sphere", "D0.03cc"), ("Sphere", "D10cc")}
        assert measured[("Sphere", "D50%")] == dvh.d_percent(50)
        assert math.isnan(measured[("Sphere", "D10cc")])
        result = evaluate(criteria, measured)
        assert result.result("cov").outcome is OutcomeLevel.PER_PROTOCOL
        assert result.result("max").outcome is OutcomeLevel.ACCEPTABLE_VARIATION  # 22.2 Gy: over 22, under 23
        assert result.result("big").outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert "could not be computed" in result.result("big").reason
        assert result.result("cord").value is None

    @pytest.mark.parametrize("name", ["D95%", "D0.03cc", "V20Gy", "V20Gy%", "V5.5Gycc", "Dmean", " Dmax "])
    def test_is_dvh_metric(self, name: str) -> None:
        assert is_dvh_metric(name)

    @pytest.mark.parametrize("name", ["dice", "D95", "V20", "hd95_mm", "Dmedian", "D-1%"])
    def test_is_not_dvh_metric(self, name: str) -> None:
        assert not is_dvh_metric(name)
