"""Digital phantoms for spine and oligometastasis SABR: a thoracic vertebral metastasis and a left adrenal
metastasis, built from analytic shapes with CT numbers in HU.

Conventions as in :mod:`benchmarks.anatomy`: arrays (z, y, x); spacings (z, y, x) in mm; DICOM patient
coordinates (LPS, mm) of voxel centres for a head-first-supine patient (+x patient's left, +y posterior,
+z superior), 0 mm a voxel centre on every axis; a voxel belongs to a structure when its centre lies inside the
analytic shape. Structure names are AAPM TG-263 names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from benchmarks.anatomy import DEFAULT_SPACING_MM, _finish, _make_grid
from benchmarks.phantoms import AIR_HU, Phantom, SphereSpec

__all__ = [
    "ABDOMEN_FIELD_OF_VIEW_MM",
    "ADRENAL_GTV_CENTRE_MM",
    "ADRENAL_GTV_RADIUS_MM",
    "ADRENAL_PTV_MARGIN_MM",
    "SPINE_CTV_MARGIN_MM",
    "SPINE_FIELD_OF_VIEW_MM",
    "SPINE_GTV_CENTRE_MM",
    "SPINE_GTV_RADIUS_MM",
    "SPINE_PTV_MARGIN_MM",
    "abdomen_phantom",
    "spine_phantom",
]

SPINE_FIELD_OF_VIEW_MM: Final = (160.0, 280.0, 400.0)
"""Extent (z, y, x) in mm of the default spine grid (a thorax section around T8)."""

SPINE_GTV_CENTRE_MM: Final = (0.0, 46.0, 8.0)
"""Centre (z, y, x) of the vertebral metastasis: left anterior-lateral part of the T8 vertebral body."""

SPINE_GTV_RADIUS_MM: Final = 10.0
"""Radius of the (spherical) vertebral metastasis, mm."""

SPINE_CTV_MARGIN_MM: Final = 5.0
"""The CTV is the vertebral body within this distance of the GTV (the involved part of the body; it never
extends into the canal or soft tissue)."""

SPINE_PTV_MARGIN_MM: Final = 2.0
"""CTV-to-PTV margin of spine SABR (2 mm, with the PTV kept out of the spinal canal)."""

ABDOMEN_FIELD_OF_VIEW_MM: Final = (200.0, 240.0, 360.0)
"""Extent (z, y, x) in mm of the default abdomen grid (upper abdomen around L1)."""

ADRENAL_GTV_CENTRE_MM: Final = (45.0, 22.0, 50.0)
"""Centre (z, y, x) of the left adrenal metastasis, superior-medial to the left kidney."""

ADRENAL_GTV_RADIUS_MM: Final = 14.0
"""Radius of the adrenal metastasis (2.8 cm diameter), mm."""

ADRENAL_PTV_MARGIN_MM: Final = 5.0
"""GTV-to-PTV margin of the adrenal metastasis (isotropic)."""

_SPAN: Final = (-1e4, 1e4)


def spine_phantom(*, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM, shape: Sequence[int] | None = None) -> Phantom:
    """Thorax section with a metastasis in the T8 vertebral body, for spine SABR.

    The anatomy around the spine is that of :func:`benchmarks.anatomy.thorax_phantom` (same body, lungs,
    oesophagus, cord, canal and vertebrae), without the lung tumour. Structures (TG-263 name, (3006,00A4)
    RTROIInterpretedType, HU): ``Body`` (EXTERNAL, 20 HU), ``Lung_L`` / ``Lung_R`` (ORGAN, -800 HU),
    ``Esophagus`` (ORGAN, 30 HU), ``SpinalCord`` (radius 5 mm, ORGAN, 30 HU), ``SpinalCanal`` (radius 8 mm,
    ORGAN), ``VB_T8`` (the vertebra centred on z = 0, body and posterior ring, ORGAN, +700 HU), ``GTV`` (sphere of
    radius :data:`SPINE_GTV_RADIUS_MM` at :data:`SPINE_GTV_CENTRE_MM`, lytic: 150 HU, GTV), ``CTV`` (the T8
    vertebral body within :data:`SPINE_CTV_MARGIN_MM` of the GTV, plus the GTV; CTV) and ``PTV`` (CTV +
    :data:`SPINE_PTV_MARGIN_MM`, minus the spinal canal; PTV).

    Args:
        spacing_mm: voxel spacing (z, y, x) in mm (default 2 x 1 x 1 mm).
        shape: grid shape (z, y, x); by default it covers :data:`SPINE_FIELD_OF_VIEW_MM`.
    """
    g = _make_grid(spacing_mm, shape, SPINE_FIELD_OF_VIEW_MM, "spine")
    body = g.cylinder((0.0, 0.0), (115.0, 170.0), _SPAN)
    canal = g.cylinder((70.0, 0.0), (8.0, 8.0), _SPAN)
    cord = g.cylinder((70.0, 0.0), (5.0, 5.0), _SPAN)
    vertebral_body = g.cylinder((45.0, 0.0), (16.0, 20.0), _SPAN)
    spine = (vertebral_body | g.cylinder((72.0, 0.0), (15.0, 14.0), _SPAN)) & ~canal
    # Vertebrae 24 mm high separated by 6 mm discs, as in the thorax phantom; T8 is centred on z = 0.
    period = 24.0 + 6.0
    phase = np.mod(g.axes[0] + 12.0, period)
    bony_planes = (phase < 24.0)[:, None, None]
    t8_planes = (np.abs(g.axes[0]) <= 12.0)[:, None, None]
    bone = spine & bony_planes
    disc = spine & ~bony_planes
    vertebra = bone & t8_planes
    esophagus = g.cylinder((20.0, -8.0), (7.0, 8.0), _SPAN) & ~spine
    heart = g.ellipsoid((-45.0, -35.0, 20.0), (55.0, 50.0, 60.0)) & ~esophagus
    mediastinum = heart | esophagus | spine | canal
    lung_r = g.ellipsoid((5.0, 5.0, -88.0), (90.0, 85.0, 62.0)) & ~mediastinum
    lung_l = g.ellipsoid((5.0, 5.0, 88.0), (85.0, 85.0, 58.0)) & ~mediastinum
    t8_body = vertebral_body & vertebra
    gtv = g.sphere(SPINE_GTV_CENTRE_MM, SPINE_GTV_RADIUS_MM) & t8_body
    ctv = gtv | (t8_body & g.grow(gtv, SPINE_CTV_MARGIN_MM))
    ptv = g.grow(ctv, SPINE_PTV_MARGIN_MM) & ~canal

    hu = np.full(g.shape, AIR_HU, dtype=np.float32)
    hu[body] = 20.0
    hu[lung_l | lung_r] = -800.0
    hu[heart] = 40.0
    hu[esophagus] = 30.0
    hu[bone] = 700.0
    hu[disc] = 80.0
    hu[canal] = 20.0
    hu[cord] = 30.0
    hu[gtv] = 150.0
    hu[~body] = AIR_HU
    structures = [
        ("Body", body, "EXTERNAL", (0, 255, 0)),
        ("Lung_L", lung_l, "ORGAN", (0, 128, 255)),
        ("Lung_R", lung_r, "ORGAN", (0, 200, 255)),
        ("Esophagus", esophagus, "ORGAN", (160, 82, 45)),
        ("SpinalCord", cord, "ORGAN", (255, 255, 0)),
        ("SpinalCanal", canal, "ORGAN", (200, 200, 0)),
        ("VB_T8", vertebra, "ORGAN", (230, 230, 230)),
        ("GTV", gtv, "GTV", (255, 0, 0)),
        ("CTV", ctv, "CTV", (255, 0, 255)),
        ("PTV", ptv, "PTV", (255, 128, 0)),
    ]
    return _finish(g, hu, structures, {}, "spine")


def abdomen_phantom(*, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM, shape: Sequence[int] | None = None) -> Phantom:
    """Upper abdomen with a left adrenal metastasis, for oligometastasis SABR.

    Structures (TG-263 name, interpreted type, HU): ``Body`` (elliptic cylinder 32 x 22 cm, EXTERNAL, 20 HU),
    ``Liver`` (right upper quadrant, ORGAN, 60 HU), ``Stomach`` (left upper quadrant, ORGAN, 25 HU wall with a
    -700 HU gas bubble), ``Bowel_Small`` (below the stomach, ORGAN, 30 HU), ``Kidney_L`` / ``Kidney_R`` (ORGAN,
    35 HU), ``SpinalCord`` (radius 5 mm, ORGAN, 30 HU) in a bony vertebral column (+700 HU, no structure),
    ``GTV`` (sphere of radius :data:`ADRENAL_GTV_RADIUS_MM` at :data:`ADRENAL_GTV_CENTRE_MM`, 40 HU; GTV) and
    ``PTV`` (GTV + :data:`ADRENAL_PTV_MARGIN_MM`; PTV). Outside the body is air.

    Args:
        spacing_mm: voxel spacing (z, y, x) in mm (default 2 x 1 x 1 mm).
        shape: grid shape (z, y, x); by default it covers :data:`ABDOMEN_FIELD_OF_VIEW_MM`.
    """
    g = _make_grid(spacing_mm, shape, ABDOMEN_FIELD_OF_VIEW_MM, "abdomen")
    body = g.cylinder((0.0, 0.0), (110.0, 160.0), _SPAN)
    canal = g.cylinder((68.0, 0.0), (8.0, 8.0), _SPAN)
    cord = g.cylinder((68.0, 0.0), (5.0, 5.0), _SPAN)
    spine = (g.cylinder((42.0, 0.0), (17.0, 22.0), _SPAN) | g.cylinder((70.0, 0.0), (15.0, 14.0), _SPAN)) & ~canal
    kidney_l = g.ellipsoid((-20.0, 45.0, 72.0), (55.0, 22.0, 30.0))
    kidney_r = g.ellipsoid((-35.0, 45.0, -72.0), (55.0, 22.0, 30.0))
    gtv = g.sphere(ADRENAL_GTV_CENTRE_MM, ADRENAL_GTV_RADIUS_MM)
    ptv = g.sphere(ADRENAL_GTV_CENTRE_MM, ADRENAL_GTV_RADIUS_MM + ADRENAL_PTV_MARGIN_MM)
    liver = g.ellipsoid((45.0, -5.0, -65.0), (70.0, 80.0, 85.0)) & ~(spine | canal | kidney_r)
    stomach = g.ellipsoid((50.0, -50.0, 60.0), (45.0, 30.0, 45.0)) & ~liver
    gas = g.ellipsoid((55.0, -62.0, 60.0), (20.0, 12.0, 25.0)) & stomach
    bowel = g.ellipsoid((-55.0, -35.0, 10.0), (40.0, 45.0, 95.0)) & ~(liver | stomach | kidney_l | kidney_r)

    hu = np.full(g.shape, AIR_HU, dtype=np.float32)
    hu[body] = 20.0
    hu[liver] = 60.0
    hu[stomach] = 25.0
    hu[gas] = -700.0
    hu[bowel] = 30.0
    hu[kidney_l | kidney_r] = 35.0
    hu[spine] = 700.0
    hu[canal] = 20.0
    hu[cord] = 30.0
    hu[gtv] = 40.0
    hu[~body] = AIR_HU
    structures = [
        ("Body", body, "EXTERNAL", (0, 255, 0)),
        ("Liver", liver, "ORGAN", (165, 42, 42)),
        ("Stomach", stomach, "ORGAN", (255, 200, 120)),
        ("Bowel_Small", bowel, "ORGAN", (255, 170, 200)),
        ("Kidney_L", kidney_l, "ORGAN", (0, 128, 255)),
        ("Kidney_R", kidney_r, "ORGAN", (0, 200, 255)),
        ("SpinalCord", cord, "ORGAN", (255, 255, 0)),
        ("GTV", gtv, "GTV", (255, 0, 0)),
        ("PTV", ptv, "PTV", (255, 128, 0)),
    ]
    spheres = {
        "GTV": SphereSpec(ADRENAL_GTV_CENTRE_MM, ADRENAL_GTV_RADIUS_MM),
        "PTV": SphereSpec(ADRENAL_GTV_CENTRE_MM, ADRENAL_GTV_RADIUS_MM + ADRENAL_PTV_MARGIN_MM),
    }
    return _finish(g, hu, structures, spheres, "abdomen")
