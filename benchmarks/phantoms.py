"""Synthetic CT phantoms with analytic structures, for benchmark cases and tests.

Conventions:
    * Arrays are indexed (z, y, x) = (plane, row, column).
    * Coordinates are DICOM patient coordinates (LPS, mm) of voxel centres for a head-first-supine (HFS)
      patient: +x towards the patient's left, +y posterior, +z superior. Image rows run along +y and columns
      along +x, i.e. (0020,0037) ImageOrientationPatient is ``[1, 0, 0, 0, 1, 0]``.
    * Structure masks are defined analytically on voxel centres (a voxel belongs to a structure when its centre
      is inside the shape), so mask volumes converge to the analytic volumes as spacing shrinks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AIR_HU",
    "THORAX_FIELD_OF_VIEW_MM",
    "Phantom",
    "SphereSpec",
    "simple_thorax_phantom",
]

logger = logging.getLogger(__name__)

AIR_HU: Final = -1000.0
"""Hounsfield units of air, used outside the body."""

THORAX_FIELD_OF_VIEW_MM: Final = (120.0, 200.0, 280.0)
"""Extent of the default thorax phantom grid in mm, in (z, y, x) order (voxel-centre span plus one voxel)."""

GTV_CENTRE_MM: Final = (10.0, 0.0, -60.0)
"""Centre of the GTV sphere in the thorax phantom, (z, y, x) LPS mm: in the right lung."""

GTV_RADIUS_MM: Final = 10.0
"""GTV sphere radius in mm (a 2 cm peripheral lung tumour)."""

PTV_MARGIN_MM: Final = 5.0
"""Isotropic GTV-to-PTV margin in mm; the PTV is the sphere of radius GTV + margin."""


@dataclass(frozen=True)
class SphereSpec:
    """An analytic sphere: centre (z, y, x) in LPS mm and radius in mm."""

    centre_zyx_mm: tuple[float, float, float]
    radius_mm: float


@dataclass(frozen=True, eq=False)
class Phantom:
    """A CT volume with structure masks on the same grid.

    Attributes:
        hu: CT numbers in HU, float32, shape (z, y, x).
        z_mm, y_mm, x_mm: voxel-centre coordinates along each axis (LPS mm, strictly increasing, uniform).
        masks: TG-263 structure name -> boolean mask of shape (z, y, x).
        interpreted_types: structure name -> (3006,00A4) RTROIInterpretedType, e.g. ``"EXTERNAL"``, ``"ORGAN"``,
            ``"PTV"``, ``"GTV"``.
        spheres: analytic spheres behind some structures (name -> :class:`SphereSpec`), for tests that compare
            with exact volumes.
        colors: structure name -> (3006,002A) ROIDisplayColor as (r, g, b) in 0..255.
    """

    hu: NDArray[np.float32]
    z_mm: NDArray[np.float64]
    y_mm: NDArray[np.float64]
    x_mm: NDArray[np.float64]
    masks: dict[str, NDArray[np.bool_]]
    interpreted_types: dict[str, str]
    spheres: dict[str, SphereSpec] = field(default_factory=dict)
    colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (self.z_mm.size, self.y_mm.size, self.x_mm.size)
        if self.hu.shape != shape:
            raise ValueError(f"hu has shape {self.hu.shape}, expected {shape} from the coordinate vectors")
        for name, mask in self.masks.items():
            if mask.shape != shape or mask.dtype != np.bool_:
                raise ValueError(f"mask {name!r} has shape {mask.shape} and dtype {mask.dtype}, expected bool {shape}")
            if name not in self.interpreted_types:
                raise ValueError(f"mask {name!r} has no interpreted type")
        for axis, coords in (("z", self.z_mm), ("y", self.y_mm), ("x", self.x_mm)):
            if coords.size > 1 and not np.all(np.diff(coords) > 0):
                raise ValueError(f"{axis}_mm must be strictly increasing")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (z, y, x)."""
        return (self.z_mm.size, self.y_mm.size, self.x_mm.size)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing (z, y, x) in mm (1.0 along an axis with a single sample)."""

        def step(coords: NDArray[np.float64]) -> float:
            return float(coords[1] - coords[0]) if coords.size > 1 else 1.0

        return (step(self.z_mm), step(self.y_mm), step(self.x_mm))

    @property
    def voxel_volume_cc(self) -> float:
        """Volume of one voxel in cm³."""
        sz, sy, sx = self.spacing_mm
        return sz * sy * sx / 1000.0

    def volume_cc(self, name: str) -> float:
        """Volume of structure ``name`` in cm³ (voxel count × voxel volume)."""
        return float(np.count_nonzero(self.masks[name])) * self.voxel_volume_cc


def _axis_mm(n: int, spacing_mm: float) -> NDArray[np.float64]:
    """Voxel centres of ``n`` samples, placed so that 0 mm is a voxel centre and the span is centred."""
    start = -spacing_mm * (n // 2)
    return start + spacing_mm * np.arange(n, dtype=np.float64)


def simple_thorax_phantom(
    *,
    spacing_mm: tuple[float, float, float] = (3.0, 2.0, 2.0),
    shape: tuple[int, int, int] | None = None,
) -> Phantom:
    """Build a small thorax phantom of simple shapes (tens of milliseconds, a few MB).

    Structures (TG-263 names, interpreted type): ``Body`` (elliptic cylinder of water, 0 HU; EXTERNAL),
    ``Lung_L`` / ``Lung_R`` (ellipsoids, -800 HU; ORGAN), ``Heart`` (ellipsoid, 40 HU; ORGAN; removed from the
    left lung where they overlap), ``SpinalCord`` (cylinder of radius 5 mm, 30 HU; ORGAN, inside a 700 HU
    vertebral ring that is not a structure), ``GTV`` (sphere of radius :data:`GTV_RADIUS_MM` in the right lung,
    40 HU; GTV) and ``PTV`` (the GTV sphere grown by :data:`PTV_MARGIN_MM`; PTV). All shapes lie inside the body.

    Args:
        spacing_mm: voxel spacing (z, y, x) in mm.
        shape: grid shape (z, y, x). By default it covers :data:`THORAX_FIELD_OF_VIEW_MM`. The anatomy is fixed
            in mm, so a smaller grid crops it.

    Returns:
        The phantom, on a grid where 0 mm is a voxel centre along every axis.
    """
    sz, sy, sx = (float(s) for s in spacing_mm)
    if min(sz, sy, sx) <= 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm!r}")
    if shape is None:
        fz, fy, fx = THORAX_FIELD_OF_VIEW_MM
        shape = (round(fz / sz), round(fy / sy), round(fx / sx))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive integers (z, y, x), got {shape!r}")
    nz, ny, nx = (int(n) for n in shape)
    z_mm, y_mm, x_mm = _axis_mm(nz, sz), _axis_mm(ny, sy), _axis_mm(nx, sx)
    z, y, x = np.meshgrid(z_mm, y_mm, x_mm, indexing="ij", sparse=True)

    def ellipsoid(centre_zyx: tuple[float, float, float], semi_zyx: tuple[float, float, float]) -> NDArray[np.bool_]:
        (cz, cy, cx), (az, ay, ax) = centre_zyx, semi_zyx
        return np.asarray(((z - cz) / az) ** 2 + ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1.0)

    full = np.ones((nz, 1, 1), dtype=bool)
    body = full & (((y / 80.0) ** 2 + (x / 120.0) ** 2) <= 1.0)
    heart = ellipsoid((-10.0, -30.0, 15.0), (35.0, 30.0, 35.0))
    lung_l = ellipsoid((0.0, 5.0, 62.0), (50.0, 55.0, 40.0)) & ~heart
    lung_r = ellipsoid((0.0, 5.0, -62.0), (50.0, 55.0, 40.0))
    cord_centre_yx = (60.0, 0.0)
    cord_r2 = (y - cord_centre_yx[0]) ** 2 + (x - cord_centre_yx[1]) ** 2
    cord = full & (cord_r2 <= 5.0**2)
    vertebra = full & ((cord_r2 <= 12.0**2) | (((y - 38.0) / 12.0) ** 2 + (x / 16.0) ** 2 <= 1.0)) & ~cord

    gz, gy, gx = GTV_CENTRE_MM
    r2 = (z - gz) ** 2 + (y - gy) ** 2 + (x - gx) ** 2
    gtv = r2 <= GTV_RADIUS_MM**2
    ptv = r2 <= (GTV_RADIUS_MM + PTV_MARGIN_MM) ** 2

    hu = np.full((nz, ny, nx), AIR_HU, dtype=np.float32)
    hu[body] = 0.0
    hu[lung_l | lung_r] = -800.0
    hu[heart & body] = 40.0
    hu[vertebra & body] = 700.0
    hu[cord & body] = 30.0
    hu[gtv] = 40.0

    masks: dict[str, NDArray[np.bool_]] = {
        "Body": np.ascontiguousarray(body),
        "Lung_L": np.ascontiguousarray(lung_l & body),
        "Lung_R": np.ascontiguousarray(lung_r & body),
        "Heart": np.ascontiguousarray(heart & body),
        "SpinalCord": np.ascontiguousarray(cord & body),
        "GTV": np.ascontiguousarray(gtv & body),
        "PTV": np.ascontiguousarray(ptv & body),
    }
    interpreted = {
        "Body": "EXTERNAL",
        "Lung_L": "ORGAN",
        "Lung_R": "ORGAN",
        "Heart": "ORGAN",
        "SpinalCord": "ORGAN",
        "GTV": "GTV",
        "PTV": "PTV",
    }
    colors = {
        "Body": (0, 255, 0),
        "Lung_L": (0, 128, 255),
        "Lung_R": (0, 200, 255),
        "Heart": (255, 0, 128),
        "SpinalCord": (255, 255, 0),
        "GTV": (255, 0, 0),
        "PTV": (255, 128, 0),
    }
    spheres = {
        "GTV": SphereSpec(GTV_CENTRE_MM, GTV_RADIUS_MM),
        "PTV": SphereSpec(GTV_CENTRE_MM, GTV_RADIUS_MM + PTV_MARGIN_MM),
    }
    for name, mask in masks.items():
        if not mask.any():
            logger.warning("structure %s is empty on the %s grid with spacing %s mm", name, shape, spacing_mm)
    return Phantom(
        hu=hu,
        z_mm=z_mm,
        y_mm=y_mm,
        x_mm=x_mm,
        masks=masks,
        interpreted_types=interpreted,
        spheres=spheres,
        colors=colors,
    )
