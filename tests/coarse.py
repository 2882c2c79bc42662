"""Small versions of the library's planning cases, fast enough for flow tests: the same anatomy, prescription,
arcs and protocol on coarser voxels (the dose grid equals the CT grid)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from benchmarks.anatomy import thorax_phantom
from benchmarks.cases import BuiltCase, CaseSpec, build_case_from_spec, get_case
from benchmarks.phantoms import Phantom

COARSE_LUNG = "lung-sabr-planning-coarse"
"""Case id of the coarse lung SABR planning case."""


def _coarse_thorax() -> Phantom:
    return thorax_phantom(spacing_mm=(4.0, 2.5, 2.5))


def coarse_lung_spec(*, case_id: str = COARSE_LUNG, stage: str | None = None) -> CaseSpec:
    """The lung SABR planning case on 4 x 2.5 x 2.5 mm voxels (optionally as another stage, e.g. a TPS check)."""
    spec = get_case("lung-sabr-planning")
    assert spec.plan is not None
    coarse = replace(spec, case_id=case_id, builder=_coarse_thorax, plan=replace(spec.plan, subsampling=(1, 1, 1)))
    return coarse if stage is None else replace(coarse, stage=stage)


def build_coarse_lung(out_dir: Path, *, case_id: str = COARSE_LUNG, stage: str | None = None) -> BuiltCase:
    """Build (or find) the coarse lung SABR planning case under ``out_dir``."""
    return build_case_from_spec(coarse_lung_spec(case_id=case_id, stage=stage), out_dir)
