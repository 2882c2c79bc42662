"""Tests of benchmarks.phantoms: grid conventions, anatomy and analytic volumes."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from benchmarks.phantoms import GTV_RADIUS_MM, PTV_MARGIN_MM, Phantom, simple_thorax_phantom

EXPECTED = {"Body", "Lung_L", "Lung_R", "Heart", "SpinalCord", "GTV", "PTV"}


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return simple_thorax_phantom()


class TestSimpleThoraxPhantom:
    def test_grid(self, phantom: Phantom) -> None:
        assert phantom.shape == (40, 100, 140)
        assert phantom.spacing_mm == (3.0, 2.0, 2.0)
        assert phantom.hu.dtype == np.float32
        assert phantom.hu.shape == phantom.shape
        # 0 mm is a voxel centre on every axis (integer-index geometry, no half-voxel offsets).
        for axis in (phantom.z_mm, phantom.y_mm, phantom.x_mm):
            assert 0.0 in axis

    def test_fast_and_small(self) -> None:
        start = time.perf_counter()
        p = simple_thorax_phantom()
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0
        total_bytes = p.hu.nbytes + sum(m.nbytes for m in p.masks.values())
        assert total_bytes < 8_000_000

    def test_structures_and_types(self, phantom: Phantom) -> None:
        assert set(phantom.masks) == EXPECTED
        assert phantom.interpreted_types["Body"] == "EXTERNAL"
        assert phantom.interpreted_types["PTV"] == "PTV"
        assert phantom.interpreted_types["GTV"] == "GTV"
        assert phantom.interpreted_types["SpinalCord"] == "ORGAN"
        for name, mask in phantom.masks.items():
            assert mask.dtype == np.bool_, name
            assert mask.any(), name

    def test_everything_inside_body(self, phantom: Phantom) -> None:
        body = phantom.masks["Body"]
        for name, mask in phantom.masks.items():
            assert not (mask & ~body).any(), name

    def test_gtv_inside_ptv_and_right_lung(self, phantom: Phantom) -> None:
        gtv, ptv = phantom.masks["GTV"], phantom.masks["PTV"]
        assert not (gtv & ~ptv).any()
        assert not (gtv & ~phantom.masks["Lung_R"]).any()

    def test_laterality_is_lps(self, phantom: Phantom) -> None:
        # LPS: +x is the patient's left, so the left lung lies at positive x; +y is posterior (the cord).
        def centroid_mm(name: str) -> np.ndarray:
            idx = np.argwhere(phantom.masks[name]).mean(axis=0)
            return np.array(
                [
                    np.interp(idx[i], np.arange(n), ax)
                    for i, (n, ax) in enumerate(
                        zip(phantom.shape, (phantom.z_mm, phantom.y_mm, phantom.x_mm), strict=True)
                    )
                ]
            )

        assert centroid_mm("Lung_L")[2] > 40
        assert centroid_mm("Lung_R")[2] < -40
        assert centroid_mm("SpinalCord")[1] > 50
        assert centroid_mm("Heart")[1] < 0

    def test_hu(self, phantom: Phantom) -> None:
        hu = phantom.hu
        assert hu[0, 0, 0] == -1000.0  # corner is air
        assert np.all(hu[phantom.masks["GTV"]] == 40.0)
        lung_only = phantom.masks["Lung_R"] & ~phantom.masks["GTV"]
        assert np.all(hu[lung_only] == -800.0)
        assert np.all(hu[phantom.masks["SpinalCord"]] == 30.0)

    @pytest.mark.parametrize("spacing_mm", [(3.0, 2.0, 2.0), (2.0, 1.0, 1.0), (1.5, 1.5, 1.5)])
    def test_sphere_volumes_close_to_analytic(self, spacing_mm: tuple[float, float, float]) -> None:
        p = simple_thorax_phantom(spacing_mm=spacing_mm)
        for name, radius in (("GTV", GTV_RADIUS_MM), ("PTV", GTV_RADIUS_MM + PTV_MARGIN_MM)):
            analytic_cc = 4.0 / 3.0 * math.pi * radius**3 / 1000.0
            # Voxel-centre sampling of a sphere whose radius spans only 3-15 voxels: the counting error is a
            # surface effect of order (voxel size / radius); 6% covers the 3 mm slices on the 10 mm GTV.
            assert p.volume_cc(name) == pytest.approx(analytic_cc, rel=0.06), name
        assert p.spheres["PTV"].radius_mm == GTV_RADIUS_MM + PTV_MARGIN_MM

    def test_explicit_shape_crops(self) -> None:
        p = simple_thorax_phantom(shape=(10, 100, 140))
        assert p.shape == (10, 100, 140)
        assert p.z_mm[0] == -15.0

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"spacing_mm": (0.0, 2.0, 2.0)}, r"spacing_mm must be positive, got \(0.0, 2.0, 2.0\)"),
            ({"shape": (0, 10, 10)}, r"shape must be three positive integers \(z, y, x\), got \(0, 10, 10\)"),
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            simple_thorax_phantom(**kwargs)  # type: ignore[arg-type]


class TestPhantomValidation:
    def test_mask_shape_mismatch(self, phantom: Phantom) -> None:
        with pytest.raises(ValueError, match="mask 'X' has shape"):
            Phantom(
                hu=phantom.hu,
                z_mm=phantom.z_mm,
                y_mm=phantom.y_mm,
                x_mm=phantom.x_mm,
                masks={"X": np.zeros((2, 2, 2), dtype=bool)},
                interpreted_types={"X": "ORGAN"},
            )

    def test_decreasing_axis(self, phantom: Phantom) -> None:
        with pytest.raises(ValueError, match="x_mm must be strictly increasing"):
            Phantom(
                hu=phantom.hu,
                z_mm=phantom.z_mm,
                y_mm=phantom.y_mm,
                x_mm=phantom.x_mm[::-1].copy(),
                masks={},
                interpreted_types={},
            )
