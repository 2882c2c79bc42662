"""Readers for DICOM CT series, RTSTRUCT, RTPLAN and RTDOSE, and for a whole submission folder.

Geometry rules (see :mod:`qa_checks.geometry` for the conventions):

- Only axial, axis-aligned images are read: (0020,0037) *ImageOrientationPatient* must have its row cosines
  along ±x and its column cosines along ±y (within :data:`ORIENTATION_TOLERANCE`), which covers HFS, HFP, FFS and
  FFP. Anything else raises :class:`~qa_checks.errors.UnsupportedGeometryError`; nothing is resampled.
- Returned arrays are re-ordered so that ``z_mm``, ``y_mm`` and ``x_mm`` all *increase*: where a direction
  cosine is negative (HFP, FFS, FFP) the stored array is flipped along that axis. Voxel values are not changed.
- CT slices are sorted by (0020,0032) *ImagePositionPatient* z; their spacing must be uniform within
  :data:`SLICE_SPACING_TOLERANCE_MM` and their x/y origin identical within the same tolerance (no gantry tilt).

pydicom reports non-conforming values (e.g. an over-long UID) as Python warnings when elements are decoded.
The readers log those through this module's logger with the file name instead of letting them propagate.
"""

from __future__ import annotations

from qa_checks.ct_reader import read_ct_series
from qa_checks.dicom_reading import ORIENTATION_TOLERANCE, SLICE_SPACING_TOLERANCE_MM
from qa_checks.rtdose_reader import read_rtdose
from qa_checks.rtplan_reader import read_rtplan
from qa_checks.rtstruct_reader import read_rtstruct
from qa_checks.submission_io import LoadedSubmission, load_submission

__all__ = [
    "ORIENTATION_TOLERANCE",
    "SLICE_SPACING_TOLERANCE_MM",
    "LoadedSubmission",
    "load_submission",
    "read_ct_series",
    "read_rtdose",
    "read_rtplan",
    "read_rtstruct",
]
