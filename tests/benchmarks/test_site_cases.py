"""Tests of the outlining cases of every protocol, the spine and oligometastasis planning cases and the TPS-check
(dosimetry) cases: builds, determinism, structures read back through qa_checks, dicom3tools conformance, and the
reference plans' outcome under their protocols (benchmarks.case_catalogue, benchmarks.anatomy_sites)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.anatomy_sites import (
    ADRENAL_GTV_RADIUS_MM,
    ADRENAL_PTV_MARGIN_MM,
    abdomen_phantom,
    spine_phantom,
)
from benchmarks.cases import (
    STAGE_DOSIMETRY,
    STAGE_OUTLINING,
    BuiltCase,
    CaseSpec,
    build_case,
    build_case_from_spec,
    get_case,
    list_cases,
    model_dose,
)
from benchmarks.dicom_writer import DOSE_STORED_MAX
from benchmarks.phantoms import Phantom
from benchmarks.protocols import load_protocol
from benchmarks.simulator import plan_oracle, storage_tolerance
from qa_checks.dicom_io import load_submission, read_rtdose
from qa_checks.protocol import OutcomeLevel
from qa_checks.rasterise import rasterise

OUTLINING_CASES = ("prostate-sabr-outlining", "srs-brain-outlining", "spine-sabr-outlining", "oligomets-sabr-outlining")
SITE_PLANNING_CASES = ("spine-sabr-planning", "oligomets-sabr-planning")
DOSIMETRY_CASES = ("lung-sabr-tps-check", "srs-brain-tps-check", "spine-sabr-tps-check")
HAS_DCIODVFY = shutil.which("dciodvfy") is not None and shutil.which("dcentvfy") is not None


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.count_nonzero(a & b)) / float(np.count_nonzero(a) + np.count_nonzero(b))


def _dicom3tools_errors(command: list[str]) -> list[str]:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def _assert_structures_match(built: BuiltCase) -> None:
    loaded = load_submission(built.dicom_dir)
    assert loaded.structure_set is not None and loaded.ct is not None
    phantom = built.phantom()
    assert list(loaded.structure_set.names) == list(phantom.masks)
    for name, mask in phantom.masks.items():
        got = rasterise(loaded.structure_set[name], loaded.ct)
        # Contours are traced half-way between voxel centres: the rasteriser gives the mask back (0.98 leaves room
        # for the odd voxel on one-voxel-wide boundaries).
        assert _dice(got, mask) >= 0.98, (built.spec.case_id, name)


def _assert_dciodvfy_clean(built: BuiltCase) -> None:
    paths = [*built.ct.paths[:2], built.rtstruct_path]
    paths += [p for p in (built.rtplan_path, built.rtdose_path) if p is not None]
    for path in paths:
        assert _dicom3tools_errors(["dciodvfy", str(path)]) == [], path
    files = [str(p) for p in built.ct.paths] + [str(p) for p in paths[2:]]
    assert _dicom3tools_errors(["dcentvfy", *files]) == [], built.spec.case_id


@pytest.fixture(scope="module")
def outlining_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outlining")


class TestOutliningCases:
    @pytest.mark.parametrize("case_id", OUTLINING_CASES)
    def test_build(self, case_id: str, outlining_dir: Path) -> None:
        built = build_case(case_id, outlining_dir)
        spec = built.spec
        assert spec.stage == STAGE_OUTLINING and spec.plan is None
        assert built.rtplan_path is None and built.rtdose_path is None
        assert sorted(p.name for p in built.dicom_dir.iterdir()) == ["CT", "RTSTRUCT.dcm"]
        manifest = json.loads(built.manifest_path.read_text())
        assert manifest["stage"] == "outlining_benchmark"
        assert manifest["distributed_files"] == ["CT"]
        # Small grids: at most 100 slices of at most 210 x 220 pixels.
        nz, ny, nx = manifest["grid"]["shape_zyx"]
        assert nz <= 100 and max(ny, nx) <= 220

    @pytest.mark.parametrize("case_id", OUTLINING_CASES)
    def test_protocol_structures_present(self, case_id: str) -> None:
        spec = get_case(case_id)
        protocol = load_protocol(spec.protocol_id)
        phantom = spec.builder()
        outlined = {c.structure for c in protocol.outlining_criteria()}
        for name in outlined | set(protocol.required_structures):
            assert name in phantom.masks and phantom.masks[name].any(), (case_id, name)

    @pytest.mark.parametrize("case_id", OUTLINING_CASES)
    def test_deterministic(self, case_id: str, outlining_dir: Path, tmp_path: Path) -> None:
        first = build_case(case_id, outlining_dir)
        again = build_case(case_id, tmp_path)
        assert again.content_sha256 == first.content_sha256
        assert again.rtstruct_path.read_bytes() == first.rtstruct_path.read_bytes()

    @pytest.mark.parametrize("case_id", OUTLINING_CASES)
    def test_structures_read_back_match_phantom(self, case_id: str, outlining_dir: Path) -> None:
        _assert_structures_match(build_case(case_id, outlining_dir))

    @pytest.mark.skipif(not HAS_DCIODVFY, reason="dicom3tools (dciodvfy, dcentvfy) not installed")
    @pytest.mark.parametrize("case_id", OUTLINING_CASES)
    def test_dciodvfy(self, case_id: str, outlining_dir: Path) -> None:
        _assert_dciodvfy_clean(build_case(case_id, outlining_dir))


def test_every_protocols_outlining_structures_in_every_case() -> None:
    for spec in list_cases():
        protocol = load_protocol(spec.protocol_id)
        phantom = spec.builder()
        for name in {c.structure for c in protocol.outlining_criteria()} | set(protocol.required_structures):
            assert phantom.masks[name].any(), (spec.case_id, name)


@pytest.fixture(scope="module")
def spine() -> Phantom:
    return spine_phantom()


class TestSpinePhantom:
    def test_targets_nested_and_in_the_vertebral_body(self, spine: Phantom) -> None:
        m = spine.masks
        assert not (m["GTV"] & ~m["CTV"]).any()
        assert not (m["CTV"] & ~m["PTV"]).any()
        assert not (m["CTV"] & ~m["VB_T8"]).any()  # the CTV is bone of the involved vertebra
        assert not (m["PTV"] & m["SpinalCanal"]).any()
        assert not (m["PTV"] & m["SpinalCord"]).any()

    def test_ptv_abuts_the_canal_and_lies_close_to_the_cord(self, spine: Phantom) -> None:
        # Analytic geometry: canal radius 8 mm and cord radius 5 mm about (y, x) = (70, 0) mm.
        _, iy, ix = np.nonzero(spine.masks["PTV"])
        radial = np.hypot(spine.y_mm[iy] - 70.0, spine.x_mm[ix])
        assert radial.min() > 8.0  # outside the canal
        assert radial.min() <= 9.0  # within a voxel of the canal wall
        # The closest PTV and cord voxel centres are 3-4 mm apart (3 mm between the canal and cord surfaces).
        assert 3.0 < radial.min() - 5.0 <= 4.0
        # The metastasis is on the patient's left (+x), in front of the canal.
        assert spine.x_mm[ix].mean() > 0 and spine.y_mm[iy].mean() < 70.0

    def test_esophagus_close_to_the_target(self, spine: Phantom) -> None:
        from scipy import ndimage

        distance = ndimage.distance_transform_edt(~spine.masks["PTV"], sampling=spine.spacing_mm)
        assert 2.0 < distance[spine.masks["Esophagus"]].min() < 15.0


class TestAbdomenPhantom:
    def test_adrenal_target_and_organs(self) -> None:
        abdomen = abdomen_phantom(spacing_mm=(2.0, 2.0, 2.0))
        volume = abdomen.volume_cc("PTV")
        analytic = 4.0 / 3.0 * math.pi * (ADRENAL_GTV_RADIUS_MM + ADRENAL_PTV_MARGIN_MM) ** 3 / 1000.0
        assert volume == pytest.approx(analytic, rel=0.03)
        for organ in ("Kidney_L", "Kidney_R", "Liver", "Stomach", "Bowel_Small", "SpinalCord"):
            assert abdomen.masks[organ].any(), organ
            assert not (abdomen.masks[organ] & abdomen.masks["GTV"]).any(), organ
        # Organs at risk near the left adrenal: left kidney, stomach; the right kidney is far.
        centre = np.array(abdomen.spheres["PTV"].centre_zyx_mm)

        def nearest_mm(name: str) -> float:
            iz, iy, ix = np.nonzero(abdomen.masks[name])
            points = np.stack([abdomen.z_mm[iz], abdomen.y_mm[iy], abdomen.x_mm[ix]], axis=1)
            return float(np.linalg.norm(points - centre, axis=1).min()) - abdomen.spheres["PTV"].radius_mm

        assert nearest_mm("Kidney_L") < 10.0
        assert nearest_mm("Stomach") < 25.0
        assert nearest_mm("Kidney_R") > 50.0


def _cord_dose_at_volume_gy(values_gy: np.ndarray, cord: np.ndarray, volume_cc: float, voxel_cc: float) -> float:
    """Independent estimate: the dose of the hottest cord voxel at which the hotter voxels reach ``volume_cc``
    (no supersampling; an upper bound of the DVH-based value for a voxel count of at least one)."""
    doses = np.sort(values_gy[cord])[::-1]
    k = max(math.ceil(volume_cc / voxel_cc), 1)
    return float(doses[min(k, doses.size) - 1])


class TestSitePlanningReferences:
    @pytest.mark.parametrize("case_id", SITE_PLANNING_CASES)
    def test_per_protocol_with_storage_margin(self, case_id: str) -> None:
        spec = get_case(case_id)
        assert spec.plan is not None
        protocol = load_protocol(spec.protocol_id)
        rx = spec.plan.targets[0]
        allowed = [
            f
            for f in protocol.fractionations
            if f.fractions <= spec.plan.fractions <= (f.fractions_max or f.fractions)
            and f.dose_gy <= rx.dose_gy <= (f.dose_max_gy or f.dose_gy)
        ]
        assert allowed, (rx, spec.plan.fractions)
        reference = model_dose(spec.plan, spec.builder())
        oracle = plan_oracle(protocol, spec.plan, reference, reference, check="planning")
        assert oracle.outcome is OutcomeLevel.PER_PROTOCOL, oracle.reason
        assert len(oracle.evaluation.results) >= 3
        for result in oracle.evaluation.results:
            c = result.criterion
            assert result.value is not None and math.isfinite(result.value), c.id
            tolerance = storage_tolerance(c, reference, prescription_gy=rx.dose_gy)
            # 16-bit RTDOSE storage cannot move the value across a level.
            assert abs(result.value - c.per_protocol) > tolerance, c.id
            assert abs(result.value - c.acceptable) > tolerance, c.id

    def test_spine_cord_within_tg101_independently(self) -> None:
        spec = get_case("spine-sabr-planning")
        assert spec.plan is not None and spec.plan.fractions == 3
        reference = model_dose(spec.plan, spec.builder())
        values, cord = reference.dose.values_gy, reference.masks["SpinalCord"]
        voxel_cc = float(np.prod(reference.dose.spacing_mm)) / 1000.0
        # TG-101, 3 fractions: max point dose 21.9 Gy, D0.35cc 18 Gy, D1.2cc 12.3 Gy.
        assert float(values[cord].max()) < 21.9
        assert _cord_dose_at_volume_gy(values, cord, 0.35, voxel_cc) < 18.0
        assert _cord_dose_at_volume_gy(values, cord, 1.2, voxel_cc) < 12.3
        # ... while 30 Gy covers at least 95% of the PTV, 3.5 mm away: a steep gradient.
        ptv = reference.masks["PTV"]
        assert np.count_nonzero(values[ptv] >= 30.0) / np.count_nonzero(ptv) >= 0.95


def _coarse(case_id: str, builder: Callable[[], Phantom]) -> CaseSpec:
    spec = get_case(case_id)
    assert spec.plan is not None
    return replace(spec, case_id=f"{case_id}-coarse", builder=builder, plan=replace(spec.plan, subsampling=(1, 1, 1)))


def _coarse_spine() -> Phantom:
    return spine_phantom(spacing_mm=(3.0, 2.0, 2.0), shape=(30, 140, 200))


def _coarse_abdomen() -> Phantom:
    return abdomen_phantom(spacing_mm=(3.0, 2.0, 2.0))


@pytest.fixture(scope="module")
def coarse_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltCase]:
    out = tmp_path_factory.mktemp("coarse")
    return {
        case_id: build_case_from_spec(_coarse(case_id, builder), out)
        for case_id, builder in (
            ("spine-sabr-planning", _coarse_spine),
            ("spine-sabr-tps-check", _coarse_spine),
            ("oligomets-sabr-planning", _coarse_abdomen),
        )
    }


class TestCoarseBuilds:
    """The new planning and dosimetry cases on coarse grids: written files, determinism, read-back."""

    @pytest.mark.parametrize("case_id", ["spine-sabr-planning", "spine-sabr-tps-check", "oligomets-sabr-planning"])
    def test_files_and_read_back(self, case_id: str, coarse_cases: dict[str, BuiltCase]) -> None:
        built = coarse_cases[case_id]
        assert built.rtplan_path is not None and built.rtdose_path is not None
        _assert_structures_match(built)
        loaded = load_submission(built.dicom_dir)
        assert loaded.plan is not None and loaded.dose is not None
        spec = built.spec
        assert spec.plan is not None
        assert loaded.plan.number_of_fractions == spec.plan.fractions
        assert loaded.plan.prescription_dose_gy == spec.plan.targets[0].dose_gy
        model = model_dose(spec.plan, built.phantom())
        dose = read_rtdose(built.rtdose_path)
        # 16-bit storage: half a quantisation step (maximum / 65535 / 2) plus the rounding of the 10-digit
        # (3004,000E) DoseGridScaling applied to stored values up to 65535 (5e-10 relative, i.e. 3.3e-5 steps).
        step = float(model.dose.values_gy.max()) / DOSE_STORED_MAX
        assert np.abs(dose.values_gy - model.dose.values_gy).max() <= step * (0.5 + DOSE_STORED_MAX * 5e-10)

    def test_deterministic(self, coarse_cases: dict[str, BuiltCase], tmp_path: Path) -> None:
        built = coarse_cases["spine-sabr-tps-check"]
        again = build_case_from_spec(built.spec, tmp_path)
        assert again.content_sha256 == built.content_sha256
        assert again.rtdose_path is not None and built.rtdose_path is not None
        assert again.rtdose_path.read_bytes() == built.rtdose_path.read_bytes()

    def test_dosimetry_and_planning_cases_differ_only_in_identity(self, coarse_cases: dict[str, BuiltCase]) -> None:
        planning, dosimetry = coarse_cases["spine-sabr-planning"], coarse_cases["spine-sabr-tps-check"]
        assert dosimetry.spec.stage == STAGE_DOSIMETRY
        assert planning.ct.frame_of_reference_uid != dosimetry.ct.frame_of_reference_uid
        assert planning.rtdose_path is not None and dosimetry.rtdose_path is not None
        a, b = read_rtdose(planning.rtdose_path), read_rtdose(dosimetry.rtdose_path)
        assert np.array_equal(a.values_gy, b.values_gy)

    @pytest.mark.skipif(not HAS_DCIODVFY, reason="dicom3tools (dciodvfy, dcentvfy) not installed")
    @pytest.mark.parametrize("case_id", ["spine-sabr-planning", "spine-sabr-tps-check", "oligomets-sabr-planning"])
    def test_dciodvfy(self, case_id: str, coarse_cases: dict[str, BuiltCase]) -> None:
        _assert_dciodvfy_clean(coarse_cases[case_id])


@pytest.mark.slow
@pytest.mark.parametrize("case_id", [*SITE_PLANNING_CASES, *DOSIMETRY_CASES])
def test_full_resolution_build(case_id: str, tmp_path: Path) -> None:
    built = build_case(case_id, tmp_path)
    spec = built.spec
    assert spec.plan is not None and built.rtdose_path is not None
    _assert_structures_match(built)
    protocol = load_protocol(spec.protocol_id)
    reference = model_dose(spec.plan, built.phantom())
    # The reference as a pipeline reads it: the stored 16-bit RTDOSE on the model's grid and masks.
    read_back = reference.with_values(read_rtdose(built.rtdose_path).values_gy)
    if spec.stage == STAGE_DOSIMETRY:
        oracle = plan_oracle(protocol, spec.plan, reference, read_back, check="tps_check")
        assert oracle.gamma_bounds is not None
        assert (oracle.gamma_bounds.lower_percent, oracle.gamma_bounds.upper_percent) == (100.0, 100.0)
    else:
        oracle = plan_oracle(protocol, spec.plan, reference, read_back, check="planning")
    assert oracle.outcome is OutcomeLevel.PER_PROTOCOL, oracle.reason
    if HAS_DCIODVFY:
        _assert_dciodvfy_clean(built)
