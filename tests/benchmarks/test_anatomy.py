"""Tests of benchmarks.anatomy: the realistic thorax, pelvis and head phantoms."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from benchmarks.anatomy import (
    DEFAULT_METASTASES,
    SRS_PTV_MARGIN_MM,
    THORAX_GTV_RADIUS_MM,
    THORAX_PTV_MARGIN_MM,
    Metastasis,
    head_phantom,
    pelvis_phantom,
    thorax_phantom,
)
from benchmarks.phantoms import Phantom
from benchmarks.protocols import load_protocol

COARSE = (3.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def thorax() -> Phantom:
    return thorax_phantom(spacing_mm=COARSE)


@pytest.fixture(scope="module")
def pelvis() -> Phantom:
    return pelvis_phantom(spacing_mm=COARSE)


@pytest.fixture(scope="module")
def head() -> Phantom:
    return head_phantom(spacing_mm=(2.0, 2.0, 2.0), metastases=DEFAULT_METASTASES)


def _centroid_zyx(phantom: Phantom, name: str) -> np.ndarray:
    iz, iy, ix = np.nonzero(phantom.masks[name])
    return np.array([phantom.z_mm[iz].mean(), phantom.y_mm[iy].mean(), phantom.x_mm[ix].mean()])


def _median_hu(phantom: Phantom, name: str) -> float:
    return float(np.median(phantom.hu[phantom.masks[name]]))


class TestStructures:
    def test_thorax_names(self, thorax: Phantom) -> None:
        expected = {"Body", "Lung_L", "Lung_R", "Heart", "Esophagus", "SpinalCord", "SpinalCanal", "VB_T8"}
        assert expected | {"GTV", "PTV"} == set(thorax.masks)

    def test_pelvis_names(self, pelvis: Phantom) -> None:
        expected = {"Body", "Prostate", "SeminalVes", "CTV", "PTV", "Rectum", "Bladder"}
        assert expected | {"Femur_Head_L", "Femur_Head_R"} == set(pelvis.masks)

    def test_head_names(self, head: Phantom) -> None:
        organs = {"Body", "Bone_Skull", "Brain", "Brainstem", "OpticChiasm", "OpticNrv_L", "OpticNrv_R"}
        targets = {"GTV", "PTV", "GTV_2", "PTV_2", "GTV_3", "PTV_3"}
        assert organs | {"Eye_L", "Eye_R"} | targets == set(head.masks)

    @pytest.mark.parametrize(
        ("protocol_id", "which"), [("uk-lung-sabr", "thorax"), ("prostate-sabr", "pelvis"), ("srs-brain", "head")]
    )
    def test_protocol_required_structures_present(
        self, protocol_id: str, which: str, request: pytest.FixtureRequest
    ) -> None:
        phantom: Phantom = request.getfixturevalue(which)
        required = set(load_protocol(protocol_id).required_structures)
        assert required <= set(phantom.masks)
        for name in required:
            assert phantom.masks[name].any(), name

    @pytest.mark.parametrize("which", ["thorax", "pelvis", "head"])
    def test_every_structure_non_empty_and_inside_body(self, which: str, request: pytest.FixtureRequest) -> None:
        phantom: Phantom = request.getfixturevalue(which)
        body = phantom.masks["Body"]
        for name, mask in phantom.masks.items():
            assert mask.any(), name
            assert not (mask & ~body).any(), name
        # The body does not touch the grid edge in-plane: the whole outline is on the image.
        assert not body[:, 0, :].any() and not body[:, -1, :].any()
        assert not body[:, :, 0].any() and not body[:, :, -1].any()

    @pytest.mark.parametrize(
        ("which", "gtv", "ptv"),
        [("thorax", "GTV", "PTV"), ("head", "GTV", "PTV"), ("head", "GTV_2", "PTV_2"), ("pelvis", "CTV", "PTV")],
    )
    def test_target_inside_ptv(self, which: str, gtv: str, ptv: str, request: pytest.FixtureRequest) -> None:
        phantom: Phantom = request.getfixturevalue(which)
        assert not (phantom.masks[gtv] & ~phantom.masks[ptv]).any()
        assert phantom.volume_cc(ptv) > phantom.volume_cc(gtv)


class TestGeometry:
    def test_laterality(self, thorax: Phantom, pelvis: Phantom, head: Phantom) -> None:
        # LPS: +x is the patient's left.
        for phantom, left, right in (
            (thorax, "Lung_L", "Lung_R"),
            (pelvis, "Femur_Head_L", "Femur_Head_R"),
            (head, "Eye_L", "Eye_R"),
            (head, "OpticNrv_L", "OpticNrv_R"),
        ):
            assert _centroid_zyx(phantom, left)[2] > 0 > _centroid_zyx(phantom, right)[2]

    def test_thorax_anterior_posterior_order(self, thorax: Phantom) -> None:
        # +y is posterior: heart anterior of the oesophagus, anterior of the vertebra, anterior of the cord.
        y = {name: _centroid_zyx(thorax, name)[1] for name in ("Heart", "Esophagus", "VB_T8", "SpinalCord")}
        assert y["Heart"] < y["Esophagus"] < y["VB_T8"] < y["SpinalCord"]
        assert not (thorax.masks["SpinalCord"] & ~thorax.masks["SpinalCanal"]).any()
        # The tumour sits in the right lung.
        assert _centroid_zyx(thorax, "GTV")[2] < 0
        gtv = thorax.masks["GTV"]
        assert not (gtv & ~thorax.masks["Lung_R"]).any()  # peripheral tumour surrounded by lung
        assert not (gtv & (thorax.masks["Heart"] | thorax.masks["Lung_L"])).any()

    def test_pelvis_order(self, pelvis: Phantom) -> None:
        prostate, rectum, bladder = (_centroid_zyx(pelvis, n) for n in ("Prostate", "Rectum", "Bladder"))
        assert rectum[1] > prostate[1]  # rectum posterior
        assert bladder[0] > prostate[0] and bladder[1] < rectum[1]  # bladder superior, anterior of the rectum
        assert not (pelvis.masks["Prostate"] & pelvis.masks["Rectum"]).any()

    def test_head_order(self, head: Phantom) -> None:
        eye, chiasm, stem = (_centroid_zyx(head, n) for n in ("Eye_L", "OpticChiasm", "Brainstem"))
        assert eye[1] < chiasm[1] < stem[1]  # front to back
        assert not (head.masks["Brain"] & head.masks["Bone_Skull"]).any()

    def test_volumes_plausible(self, thorax: Phantom, pelvis: Phantom, head: Phantom) -> None:
        # Adult ranges (cm³), wide on purpose: these catch unit or axis mix-ups, not anatomy details.
        assert 1000 < thorax.volume_cc("Lung_R") < 3000
        assert 1000 < thorax.volume_cc("Lung_L") < 3000
        assert 400 < thorax.volume_cc("Heart") < 1000
        assert 20 < pelvis.volume_cc("Prostate") < 60
        assert 80 < pelvis.volume_cc("Bladder") < 500
        assert 1100 < head.volume_cc("Brain") < 1800
        assert 0.2 < head.volume_cc("OpticChiasm") < 1.5

    def test_spheres_match_analytic_volumes(self, thorax: Phantom, head: Phantom) -> None:
        # Voxel-centre sampling of a sphere: relative volume error ~ 3 * (voxel size / 2) / r / sqrt(N) is well
        # below 10% for a 17 mm radius at 2-3 mm voxels; 10% also holds for the 9 mm SRS PTV at 2 mm.
        r_ptv = THORAX_GTV_RADIUS_MM + THORAX_PTV_MARGIN_MM
        assert thorax.volume_cc("PTV") == pytest.approx(4 / 3 * math.pi * r_ptv**3 / 1000, rel=0.1)
        r = DEFAULT_METASTASES[0].gtv_radius_mm + SRS_PTV_MARGIN_MM
        assert head.volume_cc("PTV") == pytest.approx(4 / 3 * math.pi * r**3 / 1000, rel=0.1)
        assert head.spheres["PTV_2"].radius_mm == DEFAULT_METASTASES[1].gtv_radius_mm + SRS_PTV_MARGIN_MM

    def test_pelvis_ptv_margin(self, pelvis: Phantom) -> None:
        # PTV = CTV grown by 5 mm between voxel centres: on the 2 mm x grid that adds floor(5 / 2) = 2 columns,
        # 4 mm, at the lateral edge. Column offsets are multiples of 2 mm, so +/- 1.01 mm accepts only 4 mm.
        ctv, ptv = pelvis.masks["CTV"], pelvis.masks["PTV"]
        ctv_x = pelvis.x_mm[np.nonzero(ctv.any(axis=(0, 1)))[0]]
        ptv_x = pelvis.x_mm[np.nonzero(ptv.any(axis=(0, 1)))[0]]
        assert ptv_x.max() - ctv_x.max() == pytest.approx(4.0, abs=1.01)


class TestHounsfield:
    def test_thorax(self, thorax: Phantom) -> None:
        assert _median_hu(thorax, "Lung_L") == -800
        assert _median_hu(thorax, "VB_T8") == pytest.approx(700)
        assert -50 < _median_hu(thorax, "Heart") < 80
        assert thorax.hu[~thorax.masks["Body"]].max() == -1000

    def test_single_vertebra_structure_on_a_segmented_spine(self, thorax: Phantom) -> None:
        vb = thorax.masks["VB_T8"]
        z = thorax.z_mm[vb.any(axis=(1, 2))]
        # One vertebra 24 mm high around z = 0: on 3 mm slices 7 or 8 planes, span 18-24 mm.
        assert z.min() >= -12.0 and z.max() <= 12.0 and z.max() - z.min() >= 18.0
        # The spine continues above and below as bone with discs, outside the VB_T8 structure.
        column = thorax.hu[:, thorax.y_mm.searchsorted(45.0), thorax.x_mm.searchsorted(0.0)]
        assert set(np.unique(column).tolist()) == {80.0, 700.0}
        assert np.count_nonzero(column == 700.0) > 3 * np.count_nonzero(vb.any(axis=(1, 2)))

    def test_pelvis_and_head_bone(self, pelvis: Phantom, head: Phantom) -> None:
        assert _median_hu(pelvis, "Femur_Head_L") == pytest.approx(700)
        assert _median_hu(head, "Bone_Skull") >= 700
        assert -20 < _median_hu(head, "Brain") < 60


class TestGrid:
    def test_default_resolution(self) -> None:
        phantom = head_phantom()
        assert phantom.spacing_mm == (2.0, 1.0, 1.0)
        assert max(phantom.shape[1:]) <= 512

    def test_deterministic(self) -> None:
        a, b = pelvis_phantom(spacing_mm=COARSE), pelvis_phantom(spacing_mm=COARSE)
        assert np.array_equal(a.hu, b.hu)
        assert all(np.array_equal(a.masks[n], b.masks[n]) for n in a.masks)

    def test_too_many_in_plane_voxels(self) -> None:
        with pytest.raises(ValueError, match=r"thorax phantom: 600 x 600 in-plane voxels exceed 512"):
            thorax_phantom(shape=(10, 600, 600))

    def test_bad_inputs(self) -> None:
        with pytest.raises(ValueError, match="spacing_mm must be positive"):
            pelvis_phantom(spacing_mm=(2.0, 0.0, 1.0))
        with pytest.raises(ValueError, match="metastases must hold 1 to 3 items"):
            head_phantom(metastases=[])
        single = head_phantom(spacing_mm=(3.0, 3.0, 3.0), metastases=[Metastasis((20.0, 0.0, 30.0), 6.0)])
        assert {"GTV", "PTV"} <= set(single.masks) and "GTV_2" not in single.masks

    @pytest.mark.slow
    def test_full_resolution_512_is_fast(self) -> None:
        start = time.perf_counter()
        phantom = thorax_phantom(shape=(100, 512, 512))
        elapsed = time.perf_counter() - start
        assert phantom.shape == (100, 512, 512)
        # "Seconds, not minutes": about 1.5 s on a laptop core; 20 s leaves room for slow CI machines.
        assert elapsed < 20.0
