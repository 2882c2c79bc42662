"""Structures cut by the dose grid, and isodoses reaching its edge: exact volumes on voxel-aligned boxes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.geometry import DoseGrid, ImageVolume
from qa_checks.grid_coverage import (
    NOT_EVALUABLE_FRACTION_OUTSIDE,
    WARNING_FRACTION_OUTSIDE,
    grid_coverage,
    isodose_edge_faces,
    isodose_edge_message,
    isodose_touches_edge,
    structure_grid_coverage,
)
from qa_checks.structures import Contour, Structure
from tests.qa_checks.conftest import box_contours

# CT: 1 mm voxels centred on half-integers, so a box with integer edges holds whole voxels.
CT_X = np.arange(-59.5, 60.0, 1.0)
CT_Y = np.arange(-14.5, 15.0, 1.0)
CT_Z = np.arange(-9.5, 10.0, 1.0)
CT = ImageVolume(np.zeros((CT_Z.size, CT_Y.size, CT_X.size), dtype=np.float32), CT_Z, CT_Y, CT_X)
# A box x ∈ [-50, 50], y ∈ [-10, 10], z ∈ [-5, 5] mm: 100 × 20 × 10 voxels = 20 cc.
RECTUM = Structure(
    1, "Rectum", "ORGAN", tuple(Contour(p, "CLOSED_PLANAR") for p in box_contours((-50, 50), (-10, 10), CT_Z[5:-5]))
)


def dose_to(x_upper_mm: float, step_mm: float = 2.0) -> DoseGrid:
    """A dose grid from x = -60 mm to ``x_upper_mm`` (outer voxel boundaries), covering y and z fully."""
    x = np.arange(-60.0 + step_mm / 2, x_upper_mm, step_mm)
    y = np.arange(-14.0, 15.0, 2.0)
    z = np.arange(-9.0, 10.0, 2.0)
    return DoseGrid(np.ones((z.size, y.size, x.size)), z, y, x)


class TestStructureGridCoverage:
    def test_fully_covered(self) -> None:
        cov = structure_grid_coverage(RECTUM, CT, dose_to(60.0))
        assert cov.volume_cc == pytest.approx(20.0, rel=1e-12) and cov.inside_cc == pytest.approx(20.0, rel=1e-12)
        assert (cov.fraction_outside, cov.evaluable, cov.warning, cov.reason) == (0.0, True, None, None)

    def test_one_percent_is_not_flagged(self) -> None:
        cov = structure_grid_coverage(RECTUM, CT, dose_to(49.0, step_mm=1.0))  # column x = 49.5 cut: 1 %
        assert cov.fraction_outside == pytest.approx(WARNING_FRACTION_OUTSIDE, rel=1e-9)
        assert cov.evaluable and cov.warning is None

    def test_warning_above_one_percent(self) -> None:
        cov = structure_grid_coverage(RECTUM, CT, dose_to(48.0))  # 2 of 100 columns outside
        assert cov.fraction_outside == pytest.approx(0.02, rel=1e-9)
        assert cov.inside_cc == pytest.approx(19.6, rel=1e-12)
        assert cov.evaluable and cov.reason is None
        assert cov.warning == "Rectum: 2.0% of its 20.0 cc lies outside the dose grid; its DVH misses that part"

    def test_not_evaluable_above_five_percent(self) -> None:
        cov = structure_grid_coverage(RECTUM, CT, dose_to(44.0), name="Rectum")  # 6 of 100 columns
        assert cov.fraction_outside == pytest.approx(0.06, rel=1e-9)
        assert cov.fraction_outside > NOT_EVALUABLE_FRACTION_OUTSIDE
        assert not cov.evaluable
        assert cov.reason == (
            "Rectum: 6.0% of its 20.0 cc lies outside the dose grid; criteria on it are not evaluated"
        )

    def test_cut_at_the_low_end_too(self) -> None:
        x = np.arange(-47.0, 60.0, 2.0)  # extent from -48 mm: 2 columns cut
        dose = DoseGrid(np.ones((10, 15, x.size)), np.arange(-9.0, 10.0, 2.0), np.arange(-14.0, 15.0, 2.0), x)
        assert structure_grid_coverage(RECTUM, CT, dose).fraction_outside == pytest.approx(0.02, rel=1e-9)

    def test_empty_structure_not_evaluable(self) -> None:
        empty = Structure(2, "Bowel", "ORGAN", ())
        cov = grid_coverage([RECTUM, empty], CT, dose_to(60.0))
        assert cov["Rectum"].evaluable
        assert not cov["Bowel"].evaluable
        assert cov["Bowel"].reason == "Bowel has no volume on the CT grid; criteria on it are not evaluated"


def hot_spot_dose(centre_x_mm: float) -> DoseGrid:
    """A Gaussian-free dose: 40 Gy at ``centre_x_mm`` falling by 1 Gy/mm in every direction (L∞ distance)."""
    a = np.arange(-20.0, 20.1, 2.0)
    z, y, x = np.meshgrid(a, a, a, indexing="ij")
    distance: npt.NDArray[np.float64] = np.maximum(np.maximum(np.abs(x - centre_x_mm), np.abs(y)), np.abs(z))
    return DoseGrid(np.clip(40.0 - distance, 0.0, None), a, a, a)


class TestIsodoseEdge:
    def test_inside(self) -> None:
        # Centred: at the faces (20 mm away) the dose is 20 Gy; the 27 Gy (50 % of 54) isodose is inside.
        dose = hot_spot_dose(0.0)
        assert not isodose_touches_edge(dose, 27.0)
        assert isodose_edge_faces(dose, 27.0) == ()
        assert isodose_edge_message(dose, 54.0) is None

    def test_touches_one_face(self) -> None:
        # Moved 8 mm towards +x: the x = 20 mm face is 12 mm away, 28 Gy ≥ 27 Gy; the others are 20 mm away.
        dose = hot_spot_dose(8.0)
        assert isodose_touches_edge(dose, 27.0)
        assert isodose_edge_faces(dose, 27.0) == ("x = 20 mm",)
        assert isodose_edge_message(dose, 54.0) == (
            "the 50% isodose (27 Gy) reaches the dose grid's edge at x = 20 mm: its volume, hence R50% and D2cm, "
            "is unknown; export a dose grid that covers it"
        )
        assert not isodose_touches_edge(dose, 28.5)

    def test_level_checked(self) -> None:
        with pytest.raises(ValueError, match=r"level_gy must be a positive number of Gy; got -1"):
            isodose_touches_edge(hot_spot_dose(0.0), -1.0)
