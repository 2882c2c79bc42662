"""Structure sets: named regions of interest made of planar contours in patient coordinates (LPS, mm)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLOSED_PLANAR",
    "POINT",
    "Contour",
    "Structure",
    "StructureSet",
]

CLOSED_PLANAR: Final = "CLOSED_PLANAR"
"""(3006,0042) *ContourGeometricType* of a closed polygon lying in one plane (the only type rasterised)."""
POINT: Final = "POINT"
"""(3006,0042) *ContourGeometricType* of a single point (markers, isocentres); never rasterised."""

PLANE_TOLERANCE_MM: Final = 0.01
"""Largest spread of z (mm) among the points of a contour for it to count as axial, and the distance within
which two contours are taken to lie on the same plane. DS values carry far more precision than this, and
contour planes in practice are at least 0.5 mm apart."""


@dataclass(frozen=True, eq=False)
class Contour:
    """One item of (3006,0040) *ContourSequence*.

    Attributes:
        points_mm: (N, 3) float64 array of (x, y, z) points in patient LPS mm, from (3006,0050) *ContourData*.
        geometric_type: (3006,0042) *ContourGeometricType*, e.g. ``"CLOSED_PLANAR"`` or ``"POINT"``.
        referenced_sop_instance_uids: (0008,1155) *ReferencedSOPInstanceUID* values of the item's
            (3006,0016) *ContourImageSequence* (the image slices the contour was drawn on), possibly empty.
    """

    points_mm: npt.NDArray[np.float64]
    geometric_type: str
    referenced_sop_instance_uids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        points = np.asarray(self.points_mm, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points_mm must have shape (N, 3) of (x, y, z) in mm; got {points.shape}")
        object.__setattr__(self, "points_mm", points)

    @property
    def z_mm(self) -> float:
        """Mean z (mm) of the points: the plane of an axial contour."""
        return float(self.points_mm[:, 2].mean()) if len(self.points_mm) else float("nan")

    @property
    def is_axial(self) -> bool:
        """True when all points share one z within :data:`PLANE_TOLERANCE_MM`."""
        if len(self.points_mm) == 0:
            return False
        z = self.points_mm[:, 2]
        return bool(z.max() - z.min() <= PLANE_TOLERANCE_MM)


@dataclass(frozen=True, eq=False)
class Structure:
    """One region of interest.

    Attributes:
        number: (3006,0022) *ROINumber*.
        name: (3006,0026) *ROIName* as submitted (map it to TG-263 with :func:`qa_checks.names.map_structure_names`).
        interpreted_type: (3006,00A4) *RTROIInterpretedType* (``"PTV"``, ``"ORGAN"``, ``"EXTERNAL"``, ...) or None.
        contours: the contours of the (3006,0039) *ROIContourSequence* item for this ROI.
        colour: (3006,002A) *ROIDisplayColor* as (R, G, B) 0-255, or None.
    """

    number: int
    name: str
    interpreted_type: str | None = None
    contours: tuple[Contour, ...] = ()
    colour: tuple[int, int, int] | None = None

    @property
    def closed_planar_contours(self) -> tuple[Contour, ...]:
        """The ``CLOSED_PLANAR`` contours with at least three points."""
        return tuple(c for c in self.contours if c.geometric_type == CLOSED_PLANAR and len(c.points_mm) >= 3)

    @property
    def z_planes_mm(self) -> npt.NDArray[np.float64]:
        """Sorted distinct z (mm) of the closed planar contours; planes closer than :data:`PLANE_TOLERANCE_MM`
        are merged (their mean is reported)."""
        zs = np.sort(np.array([c.z_mm for c in self.closed_planar_contours], dtype=np.float64))
        if zs.size == 0:
            return zs
        groups = np.split(zs, np.flatnonzero(np.diff(zs) > PLANE_TOLERANCE_MM) + 1)
        return np.array([g.mean() for g in groups], dtype=np.float64)

    @property
    def is_empty(self) -> bool:
        """True when the structure has no closed planar contour (nothing to rasterise)."""
        return not self.closed_planar_contours


@dataclass(frozen=True, eq=False)
class StructureSet:
    """A read RTSTRUCT.

    Attributes:
        structures: in (3006,0020) *StructureSetROISequence* order.
        frame_of_reference_uid: (0020,0052) *FrameOfReferenceUID* of the first item of
            (3006,0010) *ReferencedFrameOfReferenceSequence*.
        referenced_series_uid: (0020,000E) *SeriesInstanceUID* in (3006,0014) *RTReferencedSeriesSequence*.
        referenced_sop_instance_uids: every (0008,1155) *ReferencedSOPInstanceUID* in the referenced series'
            (3006,0016) *ContourImageSequence* and in the contours' own *ContourImageSequence*.
        sop_instance_uid: (0008,0018) *SOPInstanceUID*.
        label: (3006,0002) *StructureSetLabel*.
        path: file the set was read from.
    """

    structures: tuple[Structure, ...]
    frame_of_reference_uid: str | None = None
    referenced_series_uid: str | None = None
    referenced_sop_instance_uids: frozenset[str] = field(default_factory=frozenset)
    sop_instance_uid: str | None = None
    label: str | None = None
    path: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """ROI names in order."""
        return tuple(s.name for s in self.structures)

    def __iter__(self) -> Iterator[Structure]:
        return iter(self.structures)

    def __len__(self) -> int:
        return len(self.structures)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.structures)

    def __getitem__(self, name: str) -> Structure:
        """The structure whose (3006,0026) *ROIName* is exactly ``name``.

        Raises:
            KeyError: listing the available names when there is none, or the ROI numbers when several
                structures share the name (use :meth:`by_number` then).
        """
        found = [s for s in self.structures if s.name == name]
        if not found:
            where = f" in {self.path}" if self.path else ""
            raise KeyError(f"no structure named {name!r}{where}; available: {', '.join(map(repr, self.names))}")
        if len(found) > 1:
            numbers = ", ".join(str(s.number) for s in found)
            raise KeyError(f"{len(found)} structures are named {name!r} (ROINumber {numbers}); use by_number()")
        return found[0]

    def get(self, name: str) -> Structure | None:
        """Like ``self[name]`` but None when there is no structure of that name (still KeyError if duplicated)."""
        if name not in self:
            return None
        return self[name]

    def by_number(self, number: int) -> Structure:
        """The structure with (3006,0022) *ROINumber* ``number``; KeyError listing the numbers otherwise."""
        for s in self.structures:
            if s.number == number:
                return s
        raise KeyError(f"no structure with ROINumber {number}; available: {[s.number for s in self.structures]}")
