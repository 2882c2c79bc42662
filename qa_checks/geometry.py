"""Patient-coordinate grids: CT image volumes and dose grids.

Conventions used throughout :mod:`qa_checks`:

- Coordinates are DICOM patient coordinates (LPS: +x towards the patient's left, +y posterior, +z superior),
  in mm.
- Arrays are indexed (z, y, x), i.e. (plane, row, column). Axis 0 is never called "x".
- Each axis is described by a 1-D vector of voxel-centre coordinates (``z_mm``, ``y_mm``, ``x_mm``) that must be
  strictly monotonic. The DICOM readers in :mod:`qa_checks.dicom_io` always return increasing vectors (they flip
  the stored array where the direction cosines are negative, e.g. HFP, FFS, FFP); grids built by hand may use
  decreasing vectors and every function in :mod:`qa_checks` accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from qa_checks.errors import InvalidGridError

__all__ = [
    "FFP",
    "FFS",
    "HFP",
    "HFS",
    "IMAGE_ORIENTATION_BY_POSITION",
    "PATIENT_POSITIONS",
    "DoseGrid",
    "Grid",
    "ImageVolume",
    "axis_spacing_mm",
    "check_axis",
]

HFS: Final = "HFS"
"""(0018,5100) *PatientPosition* head first-supine. (0020,0037) *ImageOrientationPatient* ``[1,0,0, 0,1,0]``."""
HFP: Final = "HFP"
"""Head first-prone. (0020,0037) *ImageOrientationPatient* ``[-1,0,0, 0,-1,0]``: row and column direction
cosines are negative, so x and y decrease along the stored array."""
FFS: Final = "FFS"
"""Feet first-supine. (0020,0037) *ImageOrientationPatient* ``[-1,0,0, 0,1,0]``: x decreases along a row."""
FFP: Final = "FFP"
"""Feet first-prone. (0020,0037) *ImageOrientationPatient* ``[1,0,0, 0,-1,0]``: y decreases down a column."""

PATIENT_POSITIONS: Final[tuple[str, ...]] = (HFS, HFP, FFS, FFP)
"""The (0018,5100) *PatientPosition* values supported: the four axial, axis-aligned positions."""

IMAGE_ORIENTATION_BY_POSITION: Final[dict[str, tuple[float, float, float, float, float, float]]] = {
    HFS: (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    HFP: (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
    FFS: (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    FFP: (1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
}
"""The usual (0020,0037) *ImageOrientationPatient* (row cosines, then column cosines) for each position."""


class Grid(Protocol):
    """Anything with (z, y, x) voxel-centre coordinate vectors in mm, e.g. :class:`ImageVolume`, :class:`DoseGrid`."""

    @property
    def z_mm(self) -> npt.NDArray[np.float64]: ...

    @property
    def y_mm(self) -> npt.NDArray[np.float64]: ...

    @property
    def x_mm(self) -> npt.NDArray[np.float64]: ...


def check_axis(values: npt.ArrayLike, *, name: str) -> npt.NDArray[np.float64]:
    """Return ``values`` as a 1-D float64 array after checking it is a usable grid axis.

    The axis must be 1-D, non-empty, finite and strictly monotonic (increasing or decreasing).

    Raises:
        InvalidGridError: naming ``name`` and the offending value.
    """
    axis = np.asarray(values, dtype=np.float64)
    if axis.ndim != 1:
        raise InvalidGridError(f"{name} must be a 1-D array of voxel-centre coordinates in mm; got shape {axis.shape}")
    if axis.size == 0:
        raise InvalidGridError(f"{name} is empty; a grid axis needs at least one coordinate")
    if not np.all(np.isfinite(axis)):
        raise InvalidGridError(f"{name} contains non-finite coordinates: {axis.tolist()}")
    if axis.size > 1:
        steps = np.diff(axis)
        if not (np.all(steps > 0) or np.all(steps < 0)):
            bad = int(np.flatnonzero(np.sign(steps) != np.sign(steps[0]))[0]) if np.any(steps) else 0
            raise InvalidGridError(
                f"{name} is not strictly monotonic: {axis[bad]} mm is followed by {axis[bad + 1]} mm "
                f"(index {bad}); a grid axis must strictly increase or strictly decrease"
            )
    return axis


def axis_spacing_mm(axis: npt.NDArray[np.float64], *, name: str) -> float:
    """Mean absolute spacing between consecutive coordinates of ``axis``, in mm.

    Raises:
        InvalidGridError: if the axis has a single coordinate (spacing undefined).
    """
    if axis.size < 2:
        raise InvalidGridError(f"{name} has a single coordinate; spacing along it is undefined")
    return float(abs(axis[-1] - axis[0]) / (axis.size - 1))


def _check_values(values: npt.NDArray[np.generic], z: np.ndarray, y: np.ndarray, x: np.ndarray, name: str) -> None:
    expected = (z.size, y.size, x.size)
    if values.ndim != 3 or values.shape != expected:
        raise InvalidGridError(
            f"{name} has shape {values.shape} but the axes give (z, y, x) = {expected} "
            f"(len(z_mm), len(y_mm), len(x_mm))"
        )


class _GridGeometry:
    """Shape, spacing and voxel volume derived from the (z, y, x) voxel-centre coordinate vectors."""

    z_mm: npt.NDArray[np.float64]
    y_mm: npt.NDArray[np.float64]
    x_mm: npt.NDArray[np.float64]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) number of voxels."""
        return (self.z_mm.size, self.y_mm.size, self.x_mm.size)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """(z, y, x) voxel spacing in mm, positive."""
        return (
            axis_spacing_mm(self.z_mm, name="z_mm"),
            axis_spacing_mm(self.y_mm, name="y_mm"),
            axis_spacing_mm(self.x_mm, name="x_mm"),
        )

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx


@dataclass(frozen=True, eq=False)
class ImageVolume(_GridGeometry):
    """A CT volume in Hounsfield units, indexed (z, y, x).

    Attributes:
        values: HU after (0028,1053) *RescaleSlope* and (0028,1052) *RescaleIntercept*, shape (z, y, x).
        z_mm, y_mm, x_mm: voxel-centre coordinates in patient LPS mm, strictly monotonic.
        frame_of_reference_uid: (0020,0052) *FrameOfReferenceUID*.
        patient_position: (0018,5100) *PatientPosition*, e.g. ``"HFS"``.
        series_instance_uid: (0020,000E) *SeriesInstanceUID*.
        sop_instance_uids: (0008,0018) *SOPInstanceUID* of each z slice, in the order of ``z_mm``.
    """

    values: npt.NDArray[np.float32]
    z_mm: npt.NDArray[np.float64]
    y_mm: npt.NDArray[np.float64]
    x_mm: npt.NDArray[np.float64]
    frame_of_reference_uid: str | None = None
    patient_position: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        z = check_axis(self.z_mm, name="z_mm")
        y = check_axis(self.y_mm, name="y_mm")
        x = check_axis(self.x_mm, name="x_mm")
        values = np.asarray(self.values, dtype=np.float32)
        _check_values(values, z, y, x, "values")
        if self.sop_instance_uids and len(self.sop_instance_uids) != z.size:
            raise InvalidGridError(
                f"sop_instance_uids has {len(self.sop_instance_uids)} entries but z_mm has {z.size} slices"
            )
        object.__setattr__(self, "z_mm", z)
        object.__setattr__(self, "y_mm", y)
        object.__setattr__(self, "x_mm", x)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "sop_instance_uids", tuple(self.sop_instance_uids))


@dataclass(frozen=True, eq=False)
class DoseGrid(_GridGeometry):
    """A dose distribution indexed (z, y, x).

    ``DoseGrid(values_gy, z_mm, y_mm, x_mm)`` is enough; the other fields record where the grid came from.

    Attributes:
        values_gy: dose in Gy, shape (z, y, x). When ``dose_units`` is ``"RELATIVE"`` (only when the reader was
            called with ``allow_relative=True``) the values are the scaled stored values and are *not* Gy.
        z_mm, y_mm, x_mm: voxel-centre coordinates in patient LPS mm, strictly monotonic.
        frame_of_reference_uid: (0020,0052) *FrameOfReferenceUID*.
        dose_units: (3004,0002) *DoseUnits*, ``"GY"`` or ``"RELATIVE"``.
        dose_type: (3004,0004) *DoseType*: ``"PHYSICAL"``, ``"EFFECTIVE"`` or ``"ERROR"``.
        dose_summation_type: (3004,000A) *DoseSummationType*: ``"PLAN"``, ``"FRACTION"``, ``"BEAM"``, ...
        referenced_plan_uid: (0008,1155) *ReferencedSOPInstanceUID* in (300C,0002) *ReferencedRTPlanSequence*.
        sop_instance_uid: (0008,0018) *SOPInstanceUID* of the RTDOSE.
        path: file the grid was read from (the files, comma-separated, for a sum of beam doses).
        summation: what ``values_gy`` is after reading: ``"PLAN"`` (the dose of the whole plan: read from a PLAN
            dose, a FRACTION dose multiplied by the number of fractions, or a sum of BEAM doses), ``"BEAM"`` (one
            beam's dose), or None for a grid built by hand. See :mod:`qa_checks.rtdose_meaning`.
        referenced_beam_numbers: (300C,0006) *ReferencedBeamNumber* values in (300C,0002)
            *ReferencedRTPlanSequence* › (300C,0020) *ReferencedFractionGroupSequence* › (300C,0004)
            *ReferencedBeamSequence*, in increasing order.
        notes: each conversion applied to the stored dose, in words (e.g. ``"summed 3 BEAM doses (beams 1, 2,
            3)"``); store them with any result computed from the grid.

    Raises:
        InvalidGridError: in construction, naming the argument (axis not 1-D or not strictly monotonic, values
            shape not (len(z_mm), len(y_mm), len(x_mm))).
    """

    values_gy: npt.NDArray[np.float64]
    z_mm: npt.NDArray[np.float64]
    y_mm: npt.NDArray[np.float64]
    x_mm: npt.NDArray[np.float64]
    frame_of_reference_uid: str | None = None
    dose_units: str | None = None
    dose_type: str | None = None
    dose_summation_type: str | None = None
    referenced_plan_uid: str | None = None
    sop_instance_uid: str | None = None
    path: str | None = None
    summation: str | None = None
    referenced_beam_numbers: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        z = check_axis(self.z_mm, name="z_mm")
        y = check_axis(self.y_mm, name="y_mm")
        x = check_axis(self.x_mm, name="x_mm")
        object.__setattr__(self, "referenced_beam_numbers", tuple(self.referenced_beam_numbers))
        object.__setattr__(self, "notes", tuple(self.notes))
        values = np.asarray(self.values_gy, dtype=np.float64)
        _check_values(values, z, y, x, "values_gy")
        object.__setattr__(self, "z_mm", z)
        object.__setattr__(self, "y_mm", y)
        object.__setattr__(self, "x_mm", x)
        object.__setattr__(self, "values_gy", values)
