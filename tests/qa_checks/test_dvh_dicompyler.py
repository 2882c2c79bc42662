"""DVH against an independent implementation, dicompyler-core 0.5.6, on a written RTDOSE + RTSTRUCT.

dicompyler-core is an optional extra (``peers``): the module is skipped when it is not importable. It still
imports ``read_file`` from ``pydicom.dicomio``, which pydicom 3 removed; the fixture below provides it as an alias
of ``pydicom.dcmread`` (the same function under its old name) before importing dicompyler-core's parser.

Case: a 15 mm sphere (14.1 cc) contoured every 2 mm, in a dose linear in x and z (0.5 and 0.2 Gy/mm) on a
2 mm grid whose frames lie on the contour planes. Both programs then sample the same voxel centres with the same
slab thickness, so the differences come only from how each turns samples into numbers:

- dicompyler-core histograms the voxel doses in 0.01 Gy bins. Its mean is taken at bin centres (a bias of up
  to +0.005 Gy); its D_x steps to the bin nearest the requested volume (no interpolation), i.e. to a voxel's dose.
- ours interpolates D_x on a continuous DVH in which each voxel's volume spreads over the dose range across it
  (``qa_checks.dvh_curve``). V_x Gy is, in both, the volume of the voxels whose dose is at least x.

Tolerances (measured differences in brackets): volume 0.1 % [0]; mean 0.01 Gy, twice the binning bias
[0.005 Gy]; D95% 0.1 Gy, a tenth of the 1 Gy dose step between neighbouring voxels along x, which bounds what
stepping to a voxel's dose can change once thousands of voxels are sorted [0.036 Gy]; V30Gy 0.01 cc, one
0.01 Gy bin's worth, as the definitions are the same [0]. Against the analytic sphere (Nelms et al. 2015), our
D95% is within 0.05 Gy [0.013 Gy; dicompyler-core 0.049 Gy]; V30Gy, counting whole voxels, within 0.3 cc
[0.15 cc for both]: the voxels whose dose range straddles 30 Gy (a layer of about 1.8 cc) are counted whole or
not at all, and their errors largely cancel.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pydicom
import pydicom.dicomio
import pytest

from qa_checks.dicom_io import read_rtdose, read_rtstruct
from qa_checks.dvh import compute_dvh
from tests.qa_checks.conftest import DicomFactory, sphere_contours
from tests.qa_checks.test_dvh import cap_fraction

# dicompyler-core 0.5.6 uses pydicom APIs that pydicom 3 deprecates (pixel_data_handlers): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RADIUS_MM = 15.0
CENTRE = (0.7, -0.4, 0.0)
GRADIENT_X, GRADIENT_Z = 0.5, 0.2  # Gy/mm
BASE_GY = 30.0  # keeps every voxel of the grid positive (9 to 51 Gy)


@pytest.fixture(scope="module")
def dvhcalc() -> ModuleType:
    pytest.importorskip("dicompylercore")
    if not hasattr(pydicom.dicomio, "read_file"):  # pydicom 3 renamed it dcmread
        pydicom.dicomio.read_file = pydicom.dcmread  # type: ignore[attr-defined]
    from dicompylercore import dvhcalc as module

    return module


def _analytic_d_percent(percent: float) -> float:
    g = math.hypot(GRADIENT_X, GRADIENT_Z)
    lo, hi = 0.0, 2 * RADIUS_MM
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cap_fraction(mid, RADIUS_MM) < percent / 100 else (lo, mid)
    return BASE_GY + GRADIENT_X * CENTRE[0] + g * (RADIUS_MM - 0.5 * (lo + hi))


def _analytic_v_cc(dose_gy: float) -> float:
    g = math.hypot(GRADIENT_X, GRADIENT_Z)
    height = RADIUS_MM - (dose_gy - BASE_GY - GRADIENT_X * CENTRE[0]) / g
    return cap_fraction(height, RADIUS_MM) * 4 / 3 * math.pi * RADIUS_MM**3 / 1000


def test_agrees_with_dicompyler_core(dvhcalc: ModuleType, tmp_path: Path) -> None:
    factory = DicomFactory(tmp_path)
    axis = np.arange(-30.0, 30.1, 2.0)
    zz, _, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    dose_path = factory.rtdose(BASE_GY + GRADIENT_X * xx + GRADIENT_Z * zz, axis, axis, axis)
    ss_path = factory.rtstruct(None, {"Sphere": sphere_contours(CENTRE, RADIUS_MM, axis)})

    theirs = dvhcalc.get_dvh(str(ss_path), str(dose_path), 1)
    # Voxel centres, like dicompyler-core (our default would supersample a 14 cc structure).
    ours = compute_dvh(read_rtdose(dose_path), read_rtstruct(ss_path)["Sphere"], supersample=1)

    assert ours.volume_cc == pytest.approx(theirs.volume, rel=1e-3)
    assert ours.mean_gy == pytest.approx(theirs.mean, abs=0.01)
    assert ours.d_percent(95) == pytest.approx(theirs.statistic("D95").value, abs=0.1)
    assert ours.v_gy(30.0) == pytest.approx(theirs.volume_constraint(30, "Gy").value, abs=0.01)

    # Against the analytic sphere: mean = centre dose by symmetry.
    assert ours.mean_gy == pytest.approx(BASE_GY + GRADIENT_X * CENTRE[0], abs=0.01)
    assert ours.d_percent(95) == pytest.approx(_analytic_d_percent(95), abs=0.05)
    assert ours.v_gy(30.0) == pytest.approx(_analytic_v_cc(30.0), abs=0.3)
