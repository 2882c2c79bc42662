"""structure_grid_coverage, summed over the structure's bounding box, equals the sums over the whole CT grid."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from qa_checks.geometry import DoseGrid, ImageVolume
from qa_checks.grid_coverage import structure_grid_coverage
from qa_checks.rasterise import rasterise
from qa_checks.structures import Contour, Structure
from tests.qa_checks.conftest import sphere_contours

CT_Z = np.arange(-30.0, 30.1, 2.5)
CT_Y = np.arange(-40.0, 40.1, 0.977)
CT_X = np.arange(-50.0, 50.1, 1.2)
CT = ImageVolume(np.zeros((CT_Z.size, CT_Y.size, CT_X.size), dtype=np.float32), CT_Z, CT_Y, CT_X)


def cell_widths(axis: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Voxel widths: boundaries halfway between centres, the end voxels as wide as their neighbour's half gap."""
    gaps = np.diff(axis)
    return np.concatenate([[gaps[0]], (gaps[:-1] + gaps[1:]) / 2, [gaps[-1]]])


def full_grid(structure: Structure, dose: DoseGrid) -> tuple[float, float]:
    """(volume, inside) in cc, summed over the whole CT grid: the definitions, written out."""
    mask = rasterise(structure, CT)
    wz, wy, wx = (cell_widths(a) for a in (CT_Z, CT_Y, CT_X))
    voxel_cc = np.einsum("i,j,k->ijk", wz, wy, wx) / 1000.0
    inside_axis = []
    for centres, d in ((CT_Z, dose.z_mm), (CT_Y, dose.y_mm), (CT_X, dose.x_mm)):
        lo = d.min() - (d[1] - d[0]) / 2
        hi = d.max() + (d[-1] - d[-2]) / 2
        inside_axis.append((centres >= lo) & (centres < hi))
    inside = np.einsum("i,j,k->ijk", *inside_axis)
    return float(voxel_cc[mask].sum()), float(voxel_cc[mask & inside].sum())


def dose(x_upper_mm: float, z_lower_mm: float) -> DoseGrid:
    x = np.arange(-49.0, x_upper_mm, 2.0)
    y = np.arange(-39.0, 39.5, 2.0)
    z = np.arange(z_lower_mm, 29.0, 2.0)
    return DoseGrid(np.ones((z.size, y.size, x.size)), z, y, x)


@pytest.mark.parametrize(
    ("centre", "radius"),
    [((0.0, 0.0, 0.0), 12.0), ((30.0, -20.0, 15.0), 9.0), ((-44.0, 35.0, -25.0), 7.0), ((45.0, 0.0, 0.0), 20.0)],
)
@pytest.mark.parametrize(("x_upper", "z_lower"), [(50.0, -29.0), (35.0, -29.0), (20.0, 5.0)])
def test_bounding_box_sums_equal_full_grid_sums(
    centre: tuple[float, float, float], radius: float, x_upper: float, z_lower: float
) -> None:
    structure = Structure(
        1, "Ball", "ORGAN", tuple(Contour(p, "CLOSED_PLANAR") for p in sphere_contours(centre, radius, CT_Z))
    )
    grid = dose(x_upper, z_lower)
    cov = structure_grid_coverage(structure, CT, grid)
    volume, inside = full_grid(structure, grid)
    assert volume > 0
    assert cov.volume_cc == pytest.approx(volume, rel=1e-12, abs=0)
    assert cov.inside_cc == pytest.approx(inside, rel=1e-12, abs=1e-15)
    assert cov.fraction_outside == pytest.approx(max(0.0, 1.0 - inside / volume), rel=1e-9, abs=1e-12)
