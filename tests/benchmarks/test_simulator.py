"""Tests of benchmarks.simulator: deviations in mm, submission files and the oracle's expected outcome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from scipy import ndimage

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import (
    Deviation,
    DeviationKind,
    SimulatedSubmission,
    SimulationError,
    grow_mm,
    parse_deviation,
    shift_mm,
    simulate_submission,
    smooth_mm,
)
from qa_checks.protocol import OutcomeLevel

CASE = "lung-sabr-outlining-mini"
Mask = NDArray[np.bool_]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(CASE, tmp_path_factory.mktemp("cases"))


def _sphere(radius_mm: float, spacing_mm: tuple[float, float, float], shape: tuple[int, int, int]) -> Mask:
    axes = [(np.arange(n) - n // 2) * s for n, s in zip(shape, spacing_mm, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.asarray(z**2 + y**2 + x**2 <= radius_mm**2)


def _dice(a: Mask, b: Mask) -> float:
    return 2.0 * float(np.count_nonzero(a & b)) / float(np.count_nonzero(a) + np.count_nonzero(b))


def _centroid_mm(mask: Mask, spacing_mm: tuple[float, float, float]) -> NDArray[np.float64]:
    return np.asarray(np.argwhere(mask).mean(axis=0) * np.asarray(spacing_mm), dtype=np.float64)


def _hausdorff_mm(a: Mask, b: Mask, spacing_mm: tuple[float, float, float]) -> float:
    """Symmetric Hausdorff distance between voxel-centre sets, by Euclidean distance transforms."""
    to_b = ndimage.distance_transform_edt(~b, sampling=spacing_mm)
    to_a = ndimage.distance_transform_edt(~a, sampling=spacing_mm)
    return float(max(to_b[a].max(), to_a[b].max()))


def _simulate(case: BuiltCase, out: Path, deviations: list[str], *, seed: int = 0) -> SimulatedSubmission:
    return simulate_submission(
        case, provider="test-centre", deviations=[parse_deviation(d) for d in deviations], seed=seed, out_dir=out
    )


class TestDeviationParsing:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("margin_mm:PTV:3", Deviation(DeviationKind.MARGIN_MM, "PTV", 3.0)),
            ("margin_mm:PTV:-2.5", Deviation(DeviationKind.MARGIN_MM, "PTV", -2.5)),
            ("shift_mm:GTV:0,0,5", Deviation(DeviationKind.SHIFT_MM, "GTV", (0.0, 0.0, 5.0))),
            ("rename:SpinalCord:Cord", Deviation(DeviationKind.RENAME, "SpinalCord", "Cord")),
            ("rename:Lung_L:Lt Lung", Deviation(DeviationKind.RENAME, "Lung_L", "Lt Lung")),
            ("drop_slices:PTV:-2", Deviation(DeviationKind.DROP_SLICES, "PTV", -2)),
            ("smooth:*:2", Deviation(DeviationKind.SMOOTH, None, 2.0)),
            ("swap_laterality:*", Deviation(DeviationKind.SWAP_LATERALITY, None, None)),
            ("omit:Heart", Deviation(DeviationKind.OMIT, "Heart", None)),
            ("jitter_mm::1.5", Deviation(DeviationKind.JITTER_MM, None, 1.5)),
        ],
    )
    def test_parse_and_round_trip(self, text: str, expected: Deviation) -> None:
        parsed = parse_deviation(text)
        assert parsed == expected
        assert parse_deviation(str(parsed)) == parsed

    def test_kind_string_is_normalised(self) -> None:
        assert Deviation("margin_mm", "PTV", 1).kind is DeviationKind.MARGIN_MM  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("margin_mm", r"deviation 'margin_mm': expected 'kind:structure\[:value\]'"),
            ("grow:PTV:3", r"unknown kind 'grow'; known kinds: margin_mm, shift_mm"),
            ("margin_mm:PTV:big", r"deviation 'margin_mm:PTV:big': bad value 'big' for margin_mm"),
            ("margin_mm:PTV", r"margin_mm: value must be a finite number of mm, got None"),
            ("shift_mm:GTV:1,2", r"shift needs three numbers dz,dy,dx in mm"),
            ("rename:*:Cord", r"rename: a structure must be named"),
            ("drop_slices:PTV:0", r"drop_slices: value must be a non-zero integer, got 0"),
            ("smooth:PTV:-1", r"smooth: value must be >= 0 mm, got -1.0"),
            ("omit:Heart:3", r"omit: takes no value, got 3.0"),
        ],
    )
    def test_errors(self, text: str, message: str) -> None:
        with pytest.raises(SimulationError, match=message):
            parse_deviation(text)


class TestGrowMm:
    @pytest.mark.parametrize("spacing_mm", [(3.0, 2.0, 2.0), (1.0, 1.0, 1.0), (2.5, 0.9, 0.9)])
    @pytest.mark.parametrize("margin_mm", [2.0, -2.0])
    def test_sphere_margin(self, spacing_mm: tuple[float, float, float], margin_mm: float) -> None:
        radius = 15.0
        nz, ny, nx = (int(70 / s) for s in spacing_mm)
        shape = (nz, ny, nx)
        sphere = _sphere(radius, spacing_mm, shape)
        grown = grow_mm(sphere, margin_mm, spacing_mm=spacing_mm)
        analytic_ratio = ((radius + margin_mm) / radius) ** 3
        ratio = np.count_nonzero(grown) / np.count_nonzero(sphere)
        # The margin is realised to within one voxel-face step: allow the radius to be off by 1 mm (half the
        # largest in-plane voxel; measured errors are 0.2-0.5 mm, growing slightly too much on curved shapes).
        low = ((radius + margin_mm - 1.0) / radius) ** 3
        high = ((radius + margin_mm + 1.0) / radius) ** 3
        assert low <= ratio <= high, (ratio, analytic_ratio)
        target = _sphere(radius + margin_mm, spacing_mm, shape)
        # Against the directly voxelised (r + margin) sphere: measured Dice 0.95-0.97 on these grids; 0.94 is
        # the floor a one-voxel-layer disagreement on part of the surface would still pass.
        assert _dice(grown, target) >= 0.94
        if margin_mm > 0:
            hausdorff = _hausdorff_mm(grown, sphere, spacing_mm)
            # Voxel-centre Hausdorff is quantised by the grid: within half the largest spacing of the margin.
            # (Not checked when shrinking: the voxel-centre set Hausdorff is then set by the one-voxel caps at
            # the sphere's poles, which vanish whole, e.g. 5 mm on 2.5 mm slices.)
            assert abs(hausdorff - margin_mm) <= max(spacing_mm) / 2 + 1e-9, hausdorff

    def test_grow_contains_and_shrink_is_contained(self) -> None:
        sphere = _sphere(10.0, (3.0, 2.0, 2.0), (20, 30, 30))
        assert not (sphere & ~grow_mm(sphere, 3.0, spacing_mm=(3.0, 2.0, 2.0))).any()
        assert not (grow_mm(sphere, -3.0, spacing_mm=(3.0, 2.0, 2.0)) & ~sphere).any()

    def test_axis_aligned_box_is_exact(self) -> None:
        # A box's faces are planes: growing by a whole number of voxels moves each face by exactly that.
        box = np.zeros((20, 20, 20), dtype=bool)
        box[5:15, 6:14, 7:13] = True
        grown = grow_mm(box, 4.0, spacing_mm=(2.0, 2.0, 2.0))
        np.testing.assert_array_equal(np.argwhere(grown).min(axis=0), [3, 4, 5])
        np.testing.assert_array_equal(np.argwhere(grown).max(axis=0), [16, 15, 14])

    def test_zero_and_empty(self) -> None:
        empty = np.zeros((4, 4, 4), dtype=bool)
        assert not grow_mm(empty, 3.0, spacing_mm=(1.0, 1.0, 1.0)).any()
        sphere = _sphere(5.0, (1.0, 1.0, 1.0), (16, 16, 16))
        np.testing.assert_array_equal(grow_mm(sphere, 0.0, spacing_mm=(1.0, 1.0, 1.0)), sphere)
        assert not grow_mm(sphere, -20.0, spacing_mm=(1.0, 1.0, 1.0)).any()


class TestShiftMm:
    def test_fractional_shift_moves_centroid(self) -> None:
        spacing = (3.0, 2.0, 2.0)
        sphere = _sphere(15.0, spacing, (30, 40, 40))
        moved = shift_mm(sphere, (0.0, 0.0, 5.0), spacing_mm=spacing)
        delta = _centroid_mm(moved, spacing) - _centroid_mm(sphere, spacing)
        # 5 mm is 2.5 voxels: linear interpolation thresholded at 0.5 moves every row's run by exactly 2.5
        # voxels (each run gains one voxel), so the centroid moves 5 mm to float round-off.
        np.testing.assert_allclose(delta, [0.0, 0.0, 5.0], atol=1e-9)

    def test_whole_voxel_shift_is_exact(self) -> None:
        spacing = (3.0, 2.0, 2.0)
        sphere = _sphere(10.0, spacing, (20, 30, 30))
        moved = shift_mm(sphere, (6.0, -4.0, 0.0), spacing_mm=spacing)
        assert np.count_nonzero(moved) == np.count_nonzero(sphere)
        np.testing.assert_array_equal(moved[2:, :-2, :], sphere[:-2, 2:, :])
        np.testing.assert_allclose(_centroid_mm(moved, spacing) - _centroid_mm(sphere, spacing), [6, -4, 0])


class TestSmoothMm:
    def test_smoothing_removes_a_thin_spike(self) -> None:
        mask = _sphere(8.0, (1.0, 1.0, 1.0), (24, 24, 24))
        mask[12, 12, :] = True  # one-voxel-thin spike through the sphere
        smoothed = smooth_mm(mask, 1.5, spacing_mm=(1.0, 1.0, 1.0))
        assert not smoothed[12, 12, 0]
        assert smoothed[12, 12, 12]


class TestSimulateSubmission:
    def test_files(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["margin_mm:PTV:1"])
        ct_files = sorted(sim.ct_dir.glob("*.dcm"))
        assert [p.name for p in ct_files] == [p.name for p in sorted(case.ct_dir.glob("*.dcm"))]
        assert all(p.read_bytes() == (case.ct_dir / p.name).read_bytes() for p in ct_files)
        assert sorted(p.name for p in sim.directory.iterdir()) == ["CT", "RTSTRUCT_test-centre.dcm"]
        ds = pydicom.dcmread(sim.rtstruct_path)
        ref = pydicom.dcmread(case.rtstruct_path)
        assert ds.SOPInstanceUID != ref.SOPInstanceUID
        assert ds.SeriesInstanceUID != ref.SeriesInstanceUID
        assert ds.StudyInstanceUID == ref.StudyInstanceUID
        frame = ds.ReferencedFrameOfReferenceSequence[0]
        assert frame.FrameOfReferenceUID == case.ct.frame_of_reference_uid
        assert ds.StructureSetLabel == "test-centre"

    def test_loads_as_a_submission(self, case: BuiltCase, tmp_path: Path) -> None:
        dicom_io = pytest.importorskip("qa_checks.dicom_io")
        sim = _simulate(case, tmp_path / "sub", ["rename:SpinalCord:Cord"])
        loaded = dicom_io.load_submission(sim.directory)
        assert loaded.frame_of_reference_uid == case.ct.frame_of_reference_uid
        assert "Cord" in loaded.structure_set.names

    def test_deterministic_per_seed(self, case: BuiltCase, tmp_path: Path) -> None:
        a = _simulate(case, tmp_path / "a", ["jitter_mm:PTV:1"], seed=3)
        b = _simulate(case, tmp_path / "b", ["jitter_mm:PTV:1"], seed=3)
        c = _simulate(case, tmp_path / "c", ["jitter_mm:PTV:1"], seed=4)
        assert a.rtstruct_path.read_bytes() == b.rtstruct_path.read_bytes()
        assert a.measurements == b.measurements
        assert pydicom.dcmread(a.rtstruct_path).SOPInstanceUID != pydicom.dcmread(c.rtstruct_path).SOPInstanceUID
        assert a.measurements[("PTV", "dice")] != c.measurements[("PTV", "dice")]

    def test_rename_changes_only_the_name(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["rename:SpinalCord:Cord"])
        ds = pydicom.dcmread(sim.rtstruct_path)
        ref = pydicom.dcmread(case.rtstruct_path)
        names = [r.ROIName for r in ds.StructureSetROISequence]
        ref_names = [r.ROIName for r in ref.StructureSetROISequence]
        assert names == ["Cord" if n == "SpinalCord" else n for n in ref_names]
        for got, want in zip(ds.ROIContourSequence, ref.ROIContourSequence, strict=True):
            assert [list(c.ContourData) for c in got.ContourSequence] == [
                list(c.ContourData) for c in want.ContourSequence
            ]
        assert sim.structure_names["Cord"] == "SpinalCord"
        assert sim.measurements[("SpinalCord", "dice")] == 1.0
        assert sim.expected_outcome is OutcomeLevel.PER_PROTOCOL

    def test_drop_slices(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["drop_slices:PTV:2"])
        ds = pydicom.dcmread(sim.rtstruct_path)
        ref = pydicom.dcmread(case.rtstruct_path)

        def ptv_z(d: pydicom.Dataset) -> list[float]:
            idx = [r.ROIName for r in d.StructureSetROISequence].index("PTV")
            return sorted({float(c.ContourData[2]) for c in d.ROIContourSequence[idx].ContourSequence})

        assert ptv_z(ds) == ptv_z(ref)[:-2]  # the two most superior (largest z) slices are gone

    def test_swap_laterality(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["swap_laterality:Lung_L"])
        assert sim.measurements[("Lung_L", "dice")] == 0.0
        assert sim.measurements[("Lung_R", "dice")] == 0.0
        assert sim.measurements[("Heart", "dice")] == 1.0
        assert sim.expected_outcome is OutcomeLevel.UNACCEPTABLE_VARIATION

    def test_omit_gives_missing_structure(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["omit:Heart"])
        names = [r.ROIName for r in pydicom.dcmread(sim.rtstruct_path).StructureSetROISequence]
        assert "Heart" not in names
        assert sim.expected_outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert "required structure Heart is missing" in sim.expected_reason

    def test_close_centre_passes(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["margin_mm:PTV:1", "rename:SpinalCord:Cord", "rename:Lung_L:Lt Lung"])
        assert sim.expected_outcome in (OutcomeLevel.PER_PROTOCOL, OutcomeLevel.ACCEPTABLE_VARIATION)
        assert 0.85 <= sim.measurements[("PTV", "dice")] < 1.0

    def test_two_mm_margin_is_acceptable_variation(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["margin_mm:PTV:2"])
        assert sim.expected_outcome is OutcomeLevel.ACCEPTABLE_VARIATION
        assert sim.expected_reason.startswith("Dice of PTV")

    def test_far_centre_fails(self, case: BuiltCase, tmp_path: Path) -> None:
        sim = _simulate(case, tmp_path / "sub", ["margin_mm:PTV:8", "shift_mm:GTV:0,0,10"])
        assert sim.expected_outcome is OutcomeLevel.UNACCEPTABLE_VARIATION
        assert sim.measurements[("GTV", "dice")] < 0.4  # two 10 mm spheres 10 mm apart: analytic Dice 0.31
        assert "Dice of GTV" in sim.expected_reason and "Dice of PTV" in sim.expected_reason

    def test_oracle_matches_the_files(self, case: BuiltCase, tmp_path: Path) -> None:
        """The oracle's Dice (on the masks) equals Dice measured from the written RTSTRUCT via qa_checks."""
        dicom_io = pytest.importorskip("qa_checks.dicom_io")
        rasterise = pytest.importorskip("qa_checks.rasterise")
        sim = _simulate(case, tmp_path / "sub", ["margin_mm:PTV:2", "shift_mm:GTV:3,0,2", "rename:Heart:HEART"])
        loaded = dicom_io.load_submission(sim.directory)
        phantom = case.phantom()
        for submitted_name, canonical in sim.structure_names.items():
            got = rasterise.rasterise(loaded.structure_set[submitted_name], loaded.ct)
            assert _dice(got, phantom.masks[canonical]) == pytest.approx(
                sim.measurements[(canonical, "dice")], abs=1e-12
            )

    def test_unknown_structure(self, case: BuiltCase, tmp_path: Path) -> None:
        with pytest.raises(SimulationError, match=r"no structure 'Liver'; structures: Body, Lung_L"):
            _simulate(case, tmp_path / "sub", ["margin_mm:Liver:2"])

    def test_duplicate_names(self, case: BuiltCase, tmp_path: Path) -> None:
        with pytest.raises(SimulationError, match=r"duplicate ROI names \['GTV'\]"):
            _simulate(case, tmp_path / "sub", ["rename:PTV:GTV"])

    def test_rerun_replaces_previous_submission(self, case: BuiltCase, tmp_path: Path) -> None:
        first = _simulate(case, tmp_path / "sub", ["margin_mm:PTV:1"])
        second = _simulate(case, tmp_path / "sub", ["margin_mm:PTV:8"])
        assert first.directory == second.directory
        assert second.expected_outcome is OutcomeLevel.UNACCEPTABLE_VARIATION

    def test_refuses_foreign_files(self, case: BuiltCase, tmp_path: Path) -> None:
        out = tmp_path / "sub"
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
        with pytest.raises(SimulationError, match=r"holds files other than a simulated submission \(notes.txt\)"):
            _simulate(case, out, [])
        assert (out / "notes.txt").read_text() == "keep me"
