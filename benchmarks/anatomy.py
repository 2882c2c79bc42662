"""Realistic digital phantoms (thorax, pelvis, head) built from analytic shapes, with CT numbers in HU.

Conventions (as in :mod:`benchmarks.phantoms`):
    * Arrays are indexed (z, y, x) = (plane, row, column); spacings are given (z, y, x) in mm.
    * Coordinates are DICOM patient coordinates (LPS, mm) of voxel centres for a head-first-supine (HFS) patient:
      +x towards the patient's left, +y posterior, +z superior. 0 mm is a voxel centre on every axis and the grid
      is centred on the origin.
    * A voxel belongs to a structure when its centre lies inside the analytic shape (ellipsoids, elliptic
      cylinders, capsules and boolean combinations of them), so the phantoms are fully deterministic.

Every shape is evaluated only inside its own bounding box, so a 512 x 512 x 100 grid builds in a few seconds.
Sizes and positions follow adult anatomy loosely (e.g. lungs about 1.5 l each, prostate about 30 cm³, eyes of
12 mm radius); they are meant to look plausible on a planning system, not to match any patient.

Structure names are AAPM TG-263 names. The thoracic vertebra is called ``VB_T8`` (TG-263: vertebral body of
T8; here the whole vertebra with its posterior ring), the skull ``Bone_Skull``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from benchmarks.phantoms import AIR_HU, Phantom, SphereSpec

__all__ = [
    "DEFAULT_METASTASES",
    "DEFAULT_SPACING_MM",
    "DISC_HEIGHT_MM",
    "HEAD_FIELD_OF_VIEW_MM",
    "MAX_IN_PLANE_VOXELS",
    "PELVIS_FIELD_OF_VIEW_MM",
    "PELVIS_PTV_MARGIN_MM",
    "SRS_PTV_MARGIN_MM",
    "THORAX_FIELD_OF_VIEW_MM",
    "THORAX_GTV_CENTRE_MM",
    "THORAX_GTV_RADIUS_MM",
    "THORAX_PTV_MARGIN_MM",
    "VERTEBRA_HEIGHT_MM",
    "Metastasis",
    "head_phantom",
    "metastasis_names",
    "pelvis_phantom",
    "thorax_phantom",
]

logger = logging.getLogger(__name__)

DEFAULT_SPACING_MM: Final = (2.0, 1.0, 1.0)
"""Default voxel spacing (z, y, x) in mm: 2 mm slices, 1 mm pixels."""

THORAX_FIELD_OF_VIEW_MM: Final = (200.0, 280.0, 400.0)
"""Extent (z, y, x) in mm of the default thorax grid."""

PELVIS_FIELD_OF_VIEW_MM: Final = (200.0, 300.0, 440.0)
"""Extent (z, y, x) in mm of the default pelvis grid."""

HEAD_FIELD_OF_VIEW_MM: Final = (240.0, 240.0, 200.0)
"""Extent (z, y, x) in mm of the default head grid."""

MAX_IN_PLANE_VOXELS: Final = 512
"""Largest number of rows or columns accepted (what CT scanners and planning systems use)."""

Mask = NDArray[np.bool_]
Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Metastasis:
    """A spherical brain metastasis: centre (z, y, x) in LPS mm and GTV radius in mm."""

    centre_zyx_mm: Vec3
    gtv_radius_mm: float


DEFAULT_METASTASES: Final = (
    Metastasis((30.0, 20.0, 35.0), 8.0),
    Metastasis((25.0, -35.0, -30.0), 12.0),
    Metastasis((60.0, 30.0, -20.0), 5.0),
)
"""Metastases of the head phantom: 16 mm, 24 mm and 10 mm GTV diameters (left parietal, right frontal, right
superior parietal)."""

SRS_PTV_MARGIN_MM: Final = 1.0
"""GTV-to-PTV margin of the brain metastases (frameless SRS)."""


class _Grid:
    """Voxel-centre axes of a phantom grid, with shape rasterisers that work inside bounding boxes."""

    def __init__(self, shape: tuple[int, int, int], spacing_mm: Vec3) -> None:
        self.shape = shape
        self.spacing_mm = spacing_mm
        self.axes = tuple(
            -s * (n // 2) + s * np.arange(n, dtype=np.float64) for n, s in zip(shape, spacing_mm, strict=True)
        )

    def empty(self) -> Mask:
        return np.zeros(self.shape, dtype=bool)

    def _box(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, slice, slice] | None:
        slices = []
        for axis, a, b in zip(self.axes, lo, hi, strict=True):
            i0 = int(np.searchsorted(axis, a, side="left"))
            i1 = int(np.searchsorted(axis, b, side="right"))
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
        return (slices[0], slices[1], slices[2])

    def _local(self, box: tuple[slice, slice, slice]) -> tuple[NDArray[np.float64], ...]:
        z = self.axes[0][box[0]][:, None, None]
        y = self.axes[1][box[1]][None, :, None]
        x = self.axes[2][box[2]][None, None, :]
        return z, y, x

    def ellipsoid(self, centre: Vec3, semi: Vec3) -> Mask:
        """Ellipsoid with centre (z, y, x) and semi-axes (z, y, x), in mm."""
        out = self.empty()
        box = self._box(
            [c - a for c, a in zip(centre, semi, strict=True)], [c + a for c, a in zip(centre, semi, strict=True)]
        )
        if box is None:
            return out
        z, y, x = self._local(box)
        (cz, cy, cx), (az, ay, ax) = centre, semi
        out[box] = ((z - cz) / az) ** 2 + ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1.0
        return out

    def sphere(self, centre: Vec3, radius_mm: float) -> Mask:
        return self.ellipsoid(centre, (radius_mm, radius_mm, radius_mm))

    def cylinder(
        self, centre_yx: tuple[float, float], semi_yx: tuple[float, float], z_range: tuple[float, float]
    ) -> Mask:
        """Elliptic cylinder along z: centre (y, x), semi-axes (y, x) and z extent, in mm."""
        (cy, cx), (ay, ax) = centre_yx, semi_yx
        out = self.empty()
        box = self._box([z_range[0], cy - ay, cx - ax], [z_range[1], cy + ay, cx + ax])
        if box is None:
            return out
        _, y, x = self._local(box)
        ring = ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1.0
        out[box] = np.broadcast_to(ring, out[box].shape)
        return out

    def capsule(self, a: Vec3, b: Vec3, radius_mm: float) -> Mask:
        """Points within ``radius_mm`` of the segment from ``a`` to ``b`` (z, y, x mm)."""
        out = self.empty()
        lo = [min(p, q) - radius_mm for p, q in zip(a, b, strict=True)]
        hi = [max(p, q) + radius_mm for p, q in zip(a, b, strict=True)]
        box = self._box(lo, hi)
        if box is None:
            return out
        z, y, x = self._local(box)
        d = np.subtract(b, a)
        length2 = float(d @ d)
        t = ((z - a[0]) * d[0] + (y - a[1]) * d[1] + (x - a[2]) * d[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        dist2 = (z - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (x - a[2] - t * d[2]) ** 2
        out[box] = dist2 <= radius_mm**2
        return out

    def grow(self, mask: Mask, margin_mm: float) -> Mask:
        """Isotropic expansion of ``mask`` by ``margin_mm`` (Euclidean distance between voxel centres), computed
        inside the mask's bounding box padded by the margin."""
        idx = (
            np.nonzero(mask.any(axis=(1, 2)))[0],
            np.nonzero(mask.any(axis=(0, 2)))[0],
            np.nonzero(mask.any(axis=(0, 1)))[0],
        )
        if any(i.size == 0 for i in idx):
            return mask.copy()
        pads = [math.ceil(margin_mm / s) + 1 for s in self.spacing_mm]
        box = tuple(
            slice(max(int(i[0]) - p, 0), min(int(i[-1]) + p + 1, n))
            for i, p, n in zip(idx, pads, self.shape, strict=True)
        )
        local = mask[box]
        distance = ndimage.distance_transform_edt(~local, sampling=self.spacing_mm)
        out = self.empty()
        out[box] = distance <= margin_mm + 1e-9  # 1e-9 mm: absorbs round-off for voxels exactly at the margin
        return out


def _make_grid(spacing_mm: Sequence[float], shape: Sequence[int] | None, field_of_view_mm: Vec3, kind: str) -> _Grid:
    if len(spacing_mm) != 3:
        raise ValueError(f"{kind} phantom: spacing_mm must be (z, y, x) in mm, got {spacing_mm!r}")
    sz, sy, sx = (float(s) for s in spacing_mm)
    if min(sz, sy, sx) <= 0 or not all(math.isfinite(s) for s in (sz, sy, sx)):
        raise ValueError(f"{kind} phantom: spacing_mm must be positive, got {spacing_mm!r}")
    if shape is None:
        shape = tuple(max(1, round(f / s)) for f, s in zip(field_of_view_mm, (sz, sy, sx), strict=True))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{kind} phantom: shape must be three positive integers (z, y, x), got {shape!r}")
    nz, ny, nx = (int(n) for n in shape)
    if max(ny, nx) > MAX_IN_PLANE_VOXELS:
        raise ValueError(
            f"{kind} phantom: {ny} x {nx} in-plane voxels exceed {MAX_IN_PLANE_VOXELS}; use a coarser spacing_mm "
            f"than {spacing_mm!r} or a smaller shape"
        )
    return _Grid((nz, ny, nx), (sz, sy, sx))


def _finish(
    grid: _Grid,
    hu: NDArray[np.float32],
    structures: list[tuple[str, Mask, str, tuple[int, int, int]]],
    spheres: dict[str, SphereSpec],
    kind: str,
) -> Phantom:
    body = structures[0][1]
    masks = {name: np.ascontiguousarray(mask & body) for name, mask, _, _ in structures}
    for name, mask in masks.items():
        if not mask.any():
            logger.warning("%s phantom: structure %s is empty on the %s grid", kind, name, grid.shape)
    z_mm, y_mm, x_mm = grid.axes
    return Phantom(
        hu=hu,
        z_mm=z_mm,
        y_mm=y_mm,
        x_mm=x_mm,
        masks=masks,
        interpreted_types={name: kind_ for name, _, kind_, _ in structures},
        spheres=spheres,
        colors={name: color for name, _, _, color in structures},
    )


# Thorax ---------------------------------------------------------------------------------------------------------

VERTEBRA_HEIGHT_MM: Final = 24.0
"""Height of a thoracic vertebra (body and posterior ring) in the thorax phantom."""

DISC_HEIGHT_MM: Final = 6.0
"""Height of an intervertebral disc (80 HU) in the thorax phantom."""

THORAX_GTV_CENTRE_MM: Final = (25.0, 0.0, -95.0)
"""Centre (z, y, x) of the lung tumour: right upper lobe, peripheral."""

THORAX_GTV_RADIUS_MM: Final = 12.0
"""Lung tumour radius (2.4 cm diameter)."""

THORAX_PTV_MARGIN_MM: Final = 5.0
"""GTV-to-PTV margin of the lung tumour (UK SABR: 5 mm around an ITV)."""


def thorax_phantom(*, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM, shape: Sequence[int] | None = None) -> Phantom:
    """Adult thorax with a peripheral right-lung tumour.

    Structures (TG-263 name, (3006,00A4) RTROIInterpretedType, HU): ``Body`` (elliptic cylinder 34 x 23 cm,
    EXTERNAL, soft tissue 20 HU), ``Lung_L`` / ``Lung_R`` (ellipsoids, ORGAN, -800 HU), ``Heart`` (ORGAN, 40 HU),
    ``Esophagus`` (ORGAN, 30 HU), ``SpinalCord`` (radius 5 mm, ORGAN, 30 HU), ``SpinalCanal`` (radius 8 mm,
    ORGAN), ``VB_T8`` (the thoracic vertebra centred on z = 0: body and posterior ring around the canal,
    :data:`VERTEBRA_HEIGHT_MM` high, ORGAN, +700 HU; the other vertebrae are CT bone without a structure,
    separated by :data:`DISC_HEIGHT_MM` discs of 80 HU), ``GTV``
    (sphere of radius :data:`THORAX_GTV_RADIUS_MM`, GTV, 30 HU) and ``PTV`` (GTV + :data:`THORAX_PTV_MARGIN_MM`,
    PTV). Outside the body is air (-1000 HU).

    Args:
        spacing_mm: voxel spacing (z, y, x) in mm (default 2 x 1 x 1 mm).
        shape: grid shape (z, y, x); by default it covers :data:`THORAX_FIELD_OF_VIEW_MM`.
    """
    g = _make_grid(spacing_mm, shape, THORAX_FIELD_OF_VIEW_MM, "thorax")
    z_span = (-1e4, 1e4)
    body = g.cylinder((0.0, 0.0), (115.0, 170.0), z_span)
    canal = g.cylinder((70.0, 0.0), (8.0, 8.0), z_span)
    cord = g.cylinder((70.0, 0.0), (5.0, 5.0), z_span)
    spine = (g.cylinder((45.0, 0.0), (16.0, 20.0), z_span) | g.cylinder((72.0, 0.0), (15.0, 14.0), z_span)) & ~canal
    # Vertebrae of VERTEBRA_HEIGHT_MM separated by DISC_HEIGHT_MM discs; VB_T8 is the one centred on z = 0.
    period = VERTEBRA_HEIGHT_MM + DISC_HEIGHT_MM
    phase = np.mod(g.axes[0] + 0.5 * VERTEBRA_HEIGHT_MM, period)
    bony_planes = (phase < VERTEBRA_HEIGHT_MM)[:, None, None]
    bone = spine & bony_planes
    disc = spine & ~bony_planes
    vertebra = bone & (np.abs(g.axes[0]) <= 0.5 * VERTEBRA_HEIGHT_MM)[:, None, None]
    esophagus = g.cylinder((20.0, -8.0), (7.0, 8.0), z_span) & ~spine
    heart = g.ellipsoid((-45.0, -35.0, 20.0), (55.0, 50.0, 60.0)) & ~esophagus
    mediastinum = heart | esophagus | spine | canal
    lung_r = g.ellipsoid((5.0, 5.0, -88.0), (90.0, 85.0, 62.0)) & ~mediastinum
    lung_l = g.ellipsoid((5.0, 5.0, 88.0), (85.0, 85.0, 58.0)) & ~mediastinum
    gtv = g.sphere(THORAX_GTV_CENTRE_MM, THORAX_GTV_RADIUS_MM)
    ptv = g.sphere(THORAX_GTV_CENTRE_MM, THORAX_GTV_RADIUS_MM + THORAX_PTV_MARGIN_MM)

    hu = np.full(g.shape, AIR_HU, dtype=np.float32)
    hu[body] = 20.0
    hu[lung_l | lung_r] = -800.0
    hu[heart] = 40.0
    hu[esophagus] = 30.0
    hu[bone] = 700.0
    hu[disc] = 80.0
    hu[canal] = 20.0
    hu[cord] = 30.0
    hu[gtv] = 30.0
    hu[~body] = AIR_HU
    structures = [
        ("Body", body, "EXTERNAL", (0, 255, 0)),
        ("Lung_L", lung_l, "ORGAN", (0, 128, 255)),
        ("Lung_R", lung_r, "ORGAN", (0, 200, 255)),
        ("Heart", heart, "ORGAN", (255, 0, 128)),
        ("Esophagus", esophagus, "ORGAN", (160, 82, 45)),
        ("SpinalCord", cord, "ORGAN", (255, 255, 0)),
        ("SpinalCanal", canal, "ORGAN", (200, 200, 0)),
        ("VB_T8", vertebra, "ORGAN", (230, 230, 230)),
        ("GTV", gtv, "GTV", (255, 0, 0)),
        ("PTV", ptv, "PTV", (255, 128, 0)),
    ]
    spheres = {
        "GTV": SphereSpec(THORAX_GTV_CENTRE_MM, THORAX_GTV_RADIUS_MM),
        "PTV": SphereSpec(THORAX_GTV_CENTRE_MM, THORAX_GTV_RADIUS_MM + THORAX_PTV_MARGIN_MM),
    }
    return _finish(g, hu, structures, spheres, "thorax")


# Pelvis ---------------------------------------------------------------------------------------------------------

PELVIS_PTV_MARGIN_MM: Final = 5.0
"""CTV-to-PTV margin of the prostate (isotropic, as in PACE-B's 4-5 mm)."""

SEMINAL_VESICLE_CTV_MM: Final = 10.0
"""Proximal seminal vesicles within this distance of the prostate are part of the CTV."""


def pelvis_phantom(*, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM, shape: Sequence[int] | None = None) -> Phantom:
    """Adult male pelvis for prostate SABR.

    Structures (TG-263 name, interpreted type, HU): ``Body`` (elliptic cylinder 36 x 24 cm, EXTERNAL, 20 HU),
    ``Prostate`` (ellipsoid of about 31 cm³, ORGAN, 40 HU), ``SeminalVes`` (two ellipsoids superior-posterior of
    the prostate, ORGAN, 35 HU), ``CTV`` (prostate and the proximal :data:`SEMINAL_VESICLE_CTV_MM` of the
    seminal vesicles, CTV), ``PTV`` (CTV + :data:`PELVIS_PTV_MARGIN_MM`, PTV), ``Rectum`` (tube behind the
    prostate, ORGAN, 10 HU with a -600 HU gas core), ``Bladder`` (ellipsoid superior-anterior, ORGAN, 5 HU) and
    ``Femur_Head_L`` / ``Femur_Head_R`` (spheres of 24 mm radius, ORGAN, +700 HU).
    """
    g = _make_grid(spacing_mm, shape, PELVIS_FIELD_OF_VIEW_MM, "pelvis")
    z_span = (-1e4, 1e4)
    body = g.cylinder((0.0, 0.0), (120.0, 180.0), z_span)
    prostate = g.ellipsoid((0.0, 0.0, 0.0), (20.0, 17.0, 22.0))
    bladder = g.ellipsoid((40.0, -22.0, 0.0), (28.0, 32.0, 42.0)) & ~prostate
    rectum = g.capsule((-60.0, 36.0, 0.0), (30.0, 36.0, 0.0), 16.0) & ~prostate
    gas = g.capsule((-40.0, 38.0, 0.0), (20.0, 38.0, 0.0), 5.0)
    seminal = (
        g.ellipsoid((24.0, 14.0, 17.0), (8.0, 6.0, 16.0)) | g.ellipsoid((24.0, 14.0, -17.0), (8.0, 6.0, 16.0))
    ) & ~(prostate | bladder | rectum)
    ctv = prostate | (seminal & g.grow(prostate, SEMINAL_VESICLE_CTV_MM))
    ptv = g.grow(ctv, PELVIS_PTV_MARGIN_MM)
    femur_l = g.sphere((0.0, 5.0, 100.0), 24.0)
    femur_r = g.sphere((0.0, 5.0, -100.0), 24.0)

    hu = np.full(g.shape, AIR_HU, dtype=np.float32)
    hu[body] = 20.0
    hu[bladder] = 5.0
    hu[rectum] = 10.0
    hu[gas & rectum] = -600.0
    hu[prostate] = 40.0
    hu[seminal] = 35.0
    hu[femur_l | femur_r] = 700.0
    hu[~body] = AIR_HU
    structures = [
        ("Body", body, "EXTERNAL", (0, 255, 0)),
        ("Prostate", prostate, "ORGAN", (255, 0, 255)),
        ("SeminalVes", seminal, "ORGAN", (200, 0, 200)),
        ("CTV", ctv, "CTV", (255, 0, 0)),
        ("PTV", ptv, "PTV", (255, 128, 0)),
        ("Rectum", rectum, "ORGAN", (160, 82, 45)),
        ("Bladder", bladder, "ORGAN", (255, 255, 0)),
        ("Femur_Head_L", femur_l, "ORGAN", (0, 128, 255)),
        ("Femur_Head_R", femur_r, "ORGAN", (0, 200, 255)),
    ]
    return _finish(g, hu, structures, {}, "pelvis")


# Head -----------------------------------------------------------------------------------------------------------


def metastasis_names(index: int) -> tuple[str, str]:
    """(GTV, PTV) names of the ``index``-th metastasis (0-based): ``GTV``/``PTV`` for the first (the names the
    srs-brain protocol requires), then ``GTV_2``/``PTV_2``, ``GTV_3``/``PTV_3``."""
    return ("GTV", "PTV") if index == 0 else (f"GTV_{index + 1}", f"PTV_{index + 1}")


def head_phantom(
    *,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    shape: Sequence[int] | None = None,
    metastases: Sequence[Metastasis] = DEFAULT_METASTASES[:2],
) -> Phantom:
    """Adult head with one to three brain metastases for SRS.

    Structures (TG-263 name, interpreted type, HU): ``Body`` (ellipsoid, EXTERNAL, 20 HU), ``Bone_Skull`` (7 mm
    shell around the brain, ORGAN, +800 HU), ``Brain`` (ORGAN, 35 HU), ``Brainstem`` (ORGAN), ``OpticChiasm``
    (ORGAN), ``OpticNrv_L`` / ``OpticNrv_R`` (2.5 mm radius tubes from the globes to the chiasm, ORGAN),
    ``Eye_L`` / ``Eye_R`` (12 mm radius spheres, ORGAN, 10 HU), and per metastasis ``GTV``, ``PTV`` (then
    ``GTV_2``, ``PTV_2``, ...; see :func:`metastasis_names`): GTV spheres (45 HU) and PTV = GTV +
    :data:`SRS_PTV_MARGIN_MM`.

    Args:
        metastases: one to three :class:`Metastasis`; by default the first two of :data:`DEFAULT_METASTASES`
            (16 mm and 24 mm GTV diameter).
    """
    if not 1 <= len(metastases) <= 3:
        raise ValueError(f"head phantom: metastases must hold 1 to 3 items, got {len(metastases)}")
    g = _make_grid(spacing_mm, shape, HEAD_FIELD_OF_VIEW_MM, "head")
    body = g.ellipsoid((0.0, 0.0, 0.0), (115.0, 100.0, 78.0))
    brain_outer = g.ellipsoid((20.0, 10.0, 0.0), (82.0, 92.0, 72.0))
    brain = g.ellipsoid((20.0, 10.0, 0.0), (75.0, 85.0, 65.0))
    eye_centres = {"L": (-10.0, -75.0, 32.0), "R": (-10.0, -75.0, -32.0)}
    eyes = {side: g.sphere(c, 12.0) for side, c in eye_centres.items()}
    orbit = g.grow(eyes["L"] | eyes["R"], 2.0)
    chiasm = g.ellipsoid((-5.0, -18.0, 0.0), (2.5, 6.0, 10.0))
    nerves = {
        side: g.capsule((c[0], c[1] + 12.0, c[2]), (-5.0, -20.0, 8.0 if side == "L" else -8.0), 2.5) & ~eyes[side]
        for side, c in eye_centres.items()
    }
    brainstem = g.ellipsoid((-25.0, 15.0, 0.0), (30.0, 12.0, 13.0))
    skull = brain_outer & ~brain & ~orbit
    brain = brain & ~orbit & ~brainstem & ~chiasm & ~nerves["L"] & ~nerves["R"]

    hu = np.full(g.shape, AIR_HU, dtype=np.float32)
    hu[body] = 20.0
    hu[brain | brainstem | chiasm] = 35.0
    hu[skull] = 800.0
    hu[eyes["L"] | eyes["R"]] = 10.0
    hu[nerves["L"] | nerves["R"]] = 30.0
    structures = [
        ("Body", body, "EXTERNAL", (0, 255, 0)),
        ("Bone_Skull", skull, "ORGAN", (230, 230, 230)),
        ("Brain", brain, "ORGAN", (255, 200, 150)),
        ("Brainstem", brainstem, "ORGAN", (255, 255, 0)),
        ("OpticChiasm", chiasm, "ORGAN", (0, 255, 255)),
        ("OpticNrv_L", nerves["L"], "ORGAN", (0, 128, 255)),
        ("OpticNrv_R", nerves["R"], "ORGAN", (0, 200, 255)),
        ("Eye_L", eyes["L"], "ORGAN", (128, 0, 255)),
        ("Eye_R", eyes["R"], "ORGAN", (200, 0, 255)),
    ]
    spheres: dict[str, SphereSpec] = {}
    for i, met in enumerate(metastases):
        gtv_name, ptv_name = metastasis_names(i)
        gtv = g.sphere(met.centre_zyx_mm, met.gtv_radius_mm)
        ptv = g.sphere(met.centre_zyx_mm, met.gtv_radius_mm + SRS_PTV_MARGIN_MM)
        hu[gtv] = 45.0
        structures.append((gtv_name, gtv, "GTV", (255, 0, 0)))
        structures.append((ptv_name, ptv, "PTV", (255, 128, 0)))
        spheres[gtv_name] = SphereSpec(met.centre_zyx_mm, met.gtv_radius_mm)
        spheres[ptv_name] = SphereSpec(met.centre_zyx_mm, met.gtv_radius_mm + SRS_PTV_MARGIN_MM)
    hu[~body] = AIR_HU
    return _finish(g, hu, structures, spheres, "head")
