"""A clinical-size lung SABR case and three centre submissions, written as DICOM for ``perf/bench_submission.py``.

Grid: CT 150 × 512 × 512 (z, y, x) at 2.0 × 0.977 × 0.977 mm (a 500 mm field of view), the thorax of
:func:`benchmarks.anatomy.thorax_phantom` (10 structures) plus 10 further structures of realistic sizes drawn here
(ITV, trachea, right main bronchus, great vessels, cord PRV, chest wall, brachial plexus, liver, stomach, sternum):
20 in all. The reference plan treats the PTV with 54 Gy in 3 fractions (one (300A,0010) *DoseReferenceSequence*
item, (300A,0078) *NumberOfFractionsPlanned* 3); its dose is the analytic model of :mod:`benchmarks.dose_model` on
every second CT voxel in-plane (2.0 × 1.953 × 1.953 mm), cropped to the body plus 10 mm.

Layout under the data folder::

    reference/dicom/CT/*.dcm, RTSTRUCT.dcm, RTPLAN.dcm, RTDOSE.dcm   the case (read with reference_files)
    outlining/CT/*.dcm, RTSTRUCT.dcm        the CT and 20 structures, five of them drawn differently
    planning/CT/*.dcm, RTSTRUCT.dcm, RTPLAN.dcm, RTDOSE.dcm   a plan on the reference structures (the model dose)
    tps/RTDOSE.dcm                          the TPS-check dose: the reference dose × 1.01 on a 2.5 mm grid offset
                                            by (0.7, 0.4, 1.1) mm (z, y, x), trilinearly interpolated
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

from benchmarks.anatomy import THORAX_GTV_CENTRE_MM, thorax_phantom
from benchmarks.case_spec import PlanSpec
from benchmarks.cases import model_dose, write_plan_and_dose
from benchmarks.dicom_writer import ArcSpec, write_ct_series, write_rtdose, write_rtstruct
from benchmarks.dose_model import TargetPrescription
from benchmarks.phantoms import Phantom
from qa_checks.geometry import DoseGrid

SHAPE_ZYX = (150, 512, 512)
SPACING_ZYX_MM = (2.0, 0.977, 0.977)
PLAN = PlanSpec(
    targets=(TargetPrescription("PTV", 54.0),),
    fractions=3,
    arcs=(ArcSpec("Arc1 CW", 181.0, 10.0, "CW", collimator_deg=10.0), ArcSpec("Arc2 CC", 10.0, 181.0, "CC")),
)
TPS_SPACING_MM = 2.5
TPS_OFFSET_ZYX_MM = (0.7, 0.4, 1.1)
TPS_SCALE = 1.01
DONE = "complete.txt"
"""Written last; a data folder without it is rebuilt."""

Mask = npt.NDArray[np.bool_]
Axes = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _box(axes: Axes, lo: tuple[float, ...], hi: tuple[float, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(int(np.searchsorted(a, low)), int(np.searchsorted(a, high, side="right")))
        for a, low, high in zip(axes, lo, hi, strict=True)
    )


def _ellipsoid(axes: Axes, centre: tuple[float, float, float], semi: tuple[float, float, float]) -> Mask:
    out = np.zeros(tuple(a.size for a in axes), dtype=bool)
    box = _box(
        axes,
        tuple(c - s for c, s in zip(centre, semi, strict=True)),
        tuple(c + s for c, s in zip(centre, semi, strict=True)),
    )
    z, y, x = np.meshgrid(*(a[b] for a, b in zip(axes, box, strict=True)), indexing="ij", sparse=True)
    out[box] = sum(((v - c) / s) ** 2 for v, c, s in zip((z, y, x), centre, semi, strict=True)) <= 1.0
    return out


def _cylinder(
    axes: Axes, centre_yx: tuple[float, float], semi_yx: tuple[float, float], z_mm: tuple[float, float]
) -> Mask:
    (cy, cx), (ay, ax) = centre_yx, semi_yx
    out = np.zeros(tuple(a.size for a in axes), dtype=bool)
    box = _box(axes, (z_mm[0], cy - ay, cx - ax), (z_mm[1], cy + ay, cx + ax))
    disc = ((axes[1][box[1], None] - cy) / ay) ** 2 + ((axes[2][None, box[2]] - cx) / ax) ** 2 <= 1.0
    out[box] = disc[None]
    return out


def _capsule(axes: Axes, a: tuple[float, float, float], b: tuple[float, float, float], radius_mm: float) -> Mask:
    out = np.zeros(tuple(n.size for n in axes), dtype=bool)
    box = _box(
        axes,
        tuple(min(p, q) - radius_mm for p, q in zip(a, b, strict=True)),
        tuple(max(p, q) + radius_mm for p, q in zip(a, b, strict=True)),
    )
    z, y, x = np.meshgrid(*(ax[bx] for ax, bx in zip(axes, box, strict=True)), indexing="ij", sparse=True)
    d = np.subtract(b, a)
    t = np.clip(((z - a[0]) * d[0] + (y - a[1]) * d[1] + (x - a[2]) * d[2]) / float(d @ d), 0.0, 1.0)
    out[box] = (z - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (x - a[2] - t * d[2]) ** 2 <= radius_mm**2
    return out


def clinical_thorax() -> Phantom:
    """The thorax phantom on the clinical grid with 10 further structures (20 in all)."""
    base = thorax_phantom(spacing_mm=SPACING_ZYX_MM, shape=SHAPE_ZYX)
    axes: Axes = (base.z_mm, base.y_mm, base.x_mm)
    body = base.masks["Body"]
    cz, cy, cx = THORAX_GTV_CENTRE_MM
    extra: dict[str, tuple[Mask, str]] = {
        "ITV": (_ellipsoid(axes, (cz, cy, cx), (14.0, 14.0, 14.0)), "ITV"),
        "Trachea": (_cylinder(axes, (0.0, 0.0), (9.0, 10.0), (40.0, 200.0)), "ORGAN"),
        "Bronchus_R": (_capsule(axes, (40.0, 0.0, -5.0), (20.0, 5.0, -40.0), 6.0), "ORGAN"),
        "GreatVes": (_cylinder(axes, (30.0, 35.0), (12.0, 12.0), (-100.0, 60.0)), "ORGAN"),
        "SpinalCord_PRV05": (_cylinder(axes, (70.0, 0.0), (10.0, 10.0), (-200.0, 200.0)), "AVOIDANCE"),
        "ChestWall": (
            _cylinder(axes, (0.0, -85.0), (115.0, 85.0), (-60.0, 110.0))
            & ~_cylinder(axes, (0.0, 0.0), (95.0, 150.0), (-200.0, 200.0)),
            "ORGAN",
        ),
        "BrachialPlex_R": (_capsule(axes, (130.0, -10.0, -40.0), (100.0, 10.0, -110.0), 5.0), "ORGAN"),
        "Liver": (_ellipsoid(axes, (-120.0, -10.0, -60.0), (50.0, 80.0, 100.0)), "ORGAN"),
        "Stomach": (_ellipsoid(axes, (-120.0, -30.0, 70.0), (35.0, 40.0, 50.0)), "ORGAN"),
        "Sternum": (_cylinder(axes, (-105.0, 0.0), (6.0, 15.0), (-60.0, 100.0)), "ORGAN"),
    }
    masks = dict(base.masks)
    types = dict(base.interpreted_types)
    for name, (mask, kind) in extra.items():
        masks[name] = np.ascontiguousarray(mask & body)
        types[name] = kind
    return Phantom(
        hu=base.hu,
        z_mm=base.z_mm,
        y_mm=base.y_mm,
        x_mm=base.x_mm,
        masks=masks,
        interpreted_types=types,
        spheres=base.spheres,
        colors=base.colors,
    )


def centre_outlines(masks: dict[str, Mask]) -> dict[str, Mask]:
    """The submitted outlines: GTV and PTV one voxel larger in-plane (about 1 mm), the heart 3 voxels (2.9 mm)
    to the patient's left, the right lung one voxel smaller in-plane, the cord one voxel posterior."""
    in_plane = np.zeros((1, 3, 3), dtype=bool)
    in_plane[0, 1, :] = in_plane[0, :, 1] = True
    out = dict(masks)
    for name in ("GTV", "PTV"):
        out[name] = ndimage.binary_dilation(masks[name], in_plane)
    out["Heart"] = np.roll(masks["Heart"], 3, axis=2)
    out["Lung_R"] = ndimage.binary_erosion(masks["Lung_R"], in_plane)
    out["SpinalCord"] = np.roll(masks["SpinalCord"], 1, axis=1)
    return out


def _crop_to(dose: DoseGrid, mask: Mask, margin_mm: float) -> DoseGrid:
    idx = (
        np.nonzero(mask.any(axis=(1, 2)))[0],
        np.nonzero(mask.any(axis=(0, 2)))[0],
        np.nonzero(mask.any(axis=(0, 1)))[0],
    )
    axes = (dose.z_mm, dose.y_mm, dose.x_mm)
    box = tuple(
        slice(max(0, int(i[0]) - int(np.ceil(margin_mm / s))), int(i[-1]) + 1 + int(np.ceil(margin_mm / s)))
        for i, s in zip(idx, dose.spacing_mm, strict=True)
    )
    return DoseGrid(np.ascontiguousarray(dose.values_gy[box]), *(a[b] for a, b in zip(axes, box, strict=True)))


def tps_dose(reference: DoseGrid) -> DoseGrid:
    """The reference dose × :data:`TPS_SCALE` on a :data:`TPS_SPACING_MM` grid offset by :data:`TPS_OFFSET_ZYX_MM`
    inside the reference grid (trilinear interpolation)."""
    axes = (reference.z_mm, reference.y_mm, reference.x_mm)
    new = tuple(np.arange(a[0] + o, a[-1], TPS_SPACING_MM) for a, o in zip(axes, TPS_OFFSET_ZYX_MM, strict=True))
    points = np.stack(np.meshgrid(*new, indexing="ij"), axis=-1)
    values = RegularGridInterpolator(axes, reference.values_gy)(points) * TPS_SCALE
    return DoseGrid(np.clip(values, 0.0, None), *new)


def _copy_ct(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.dcm")):
        shutil.copyfile(path, target / path.name)


def build(root: Path) -> dict[str, str]:
    """Write the case and the submissions under ``root`` (see the module docstring); returns a description."""
    root.mkdir(parents=True, exist_ok=True)
    phantom = clinical_thorax()
    ref = root / "reference" / "dicom"
    ct = write_ct_series(
        phantom,
        ref / "CT",
        patient_id="PERF-LUNG",
        patient_name="Perf^Lung",
        uid_seed="perf-lung",
        body_part_examined="CHEST",
    )
    common = {"interpreted_types": phantom.interpreted_types, "colors": phantom.colors}
    rtstruct = write_rtstruct(
        phantom.masks, ct, ref / "RTSTRUCT.dcm", label="REFERENCE", uid_seed="perf-lung", **common
    )
    model = model_dose(PLAN, phantom)
    model = replace(model, dose=_crop_to(model.dose, model.masks["Body"], 10.0))
    write_plan_and_dose(PLAN, phantom, model, ct, rtstruct, ref, uid_seed="perf-lung", plan_name="perf lung")

    outlining = root / "outlining"
    _copy_ct(ref / "CT", outlining / "CT")
    write_rtstruct(
        centre_outlines(phantom.masks),
        ct,
        outlining / "RTSTRUCT.dcm",
        label="CENTRE",
        uid_seed="perf-outlining",
        **common,
    )

    planning = root / "planning"
    _copy_ct(ref / "CT", planning / "CT")
    shutil.copyfile(rtstruct, planning / "RTSTRUCT.dcm")
    write_plan_and_dose(
        PLAN, phantom, model, ct, planning / "RTSTRUCT.dcm", planning, uid_seed="perf-planning", label="CENTRE"
    )

    evaluated = tps_dose(model.dose)
    (root / "tps").mkdir(exist_ok=True)
    grid = (evaluated.z_mm, evaluated.y_mm, evaluated.x_mm)
    write_rtdose(
        evaluated.values_gy,
        *grid,
        ct,
        ref / "RTPLAN.dcm",
        root / "tps" / "RTDOSE.dcm",
        label="TPS",
        uid_seed="perf-tps",
    )
    description = {
        "ct": f"{phantom.shape} (z, y, x) at {SPACING_ZYX_MM} mm",
        "structures": str(len(phantom.masks)),
        "plan_dose": f"{model.dose.shape} at {tuple(round(s, 3) for s in model.dose.spacing_mm)} mm",
        "tps_dose": f"{evaluated.shape} at {TPS_SPACING_MM} mm, offset {TPS_OFFSET_ZYX_MM} mm, x {TPS_SCALE}",
    }
    (root / DONE).write_text("\n".join(f"{k}: {v}" for k, v in description.items()) + "\n", encoding="utf-8")
    return description
