"""Error classes raised by :mod:`qa_checks`.

Every message names the file (when there is one), the DICOM attribute by tag and keyword, and the value
found, so that a physicist reading the message knows which object to fix and how, e.g.::

    rtdose.dcm: (3004,0002) DoseUnits is 'RELATIVE'; only 'GY' can be converted to dose in Gy
"""

from __future__ import annotations

__all__ = [
    "AmbiguousInputError",
    "FrameOfReferenceMismatchError",
    "InvalidGridError",
    "InvalidValueError",
    "MissingAttributeError",
    "MissingReferenceError",
    "NotDicomError",
    "PlanScoringError",
    "QAChecksError",
    "UnsupportedDoseSummationError",
    "UnsupportedDoseTypeError",
    "UnsupportedDoseUnitsError",
    "UnsupportedGeometryError",
    "WrongModalityError",
]


class QAChecksError(Exception):
    """Base class of every error raised on purpose by :mod:`qa_checks`."""


class NotDicomError(QAChecksError):
    """A file cannot be read as DICOM (no ``DICM`` prefix, truncated, a directory, ...)."""


class InvalidValueError(QAChecksError):
    """A DICOM file reads as DICOM but a value the reader needs cannot be decoded or converted (damaged bytes, a
    non-number in a numeric element, a non-finite coordinate)."""


class WrongModalityError(QAChecksError):
    """(0008,0060) *Modality* is not the one the reader expects (e.g. an RTPLAN given to the CT reader)."""


class MissingAttributeError(QAChecksError):
    """A DICOM attribute the reader needs is absent or empty."""


class MissingReferenceError(QAChecksError):
    """An object references another that is not in the submission.

    Examples: the RTSTRUCT's referenced CT series (0020,000E) *SeriesInstanceUID* or one of its contour image
    (0008,1155) *ReferencedSOPInstanceUID* values is not among the CT files; the RTDOSE's
    (300C,0002) *ReferencedRTPlanSequence* names a plan other than the submitted RTPLAN.
    """


class FrameOfReferenceMismatchError(QAChecksError):
    """Objects that must share one (0020,0052) *FrameOfReferenceUID* do not."""


class UnsupportedGeometryError(QAChecksError):
    """Geometry the readers refuse rather than silently resample: oblique (0020,0037) *ImageOrientationPatient*,
    non-uniform slice spacing, gantry tilt, non-axial contours, multi-frame CT."""


class InvalidGridError(QAChecksError):
    """A grid is malformed: axes not 1-D or not strictly monotonic, shape not matching the axes, ..."""


class UnsupportedDoseUnitsError(QAChecksError):
    """(3004,0002) *DoseUnits* is not ``GY`` and the caller did not allow relative dose."""


class UnsupportedDoseTypeError(QAChecksError):
    """(3004,0004) *DoseType* is not one the caller allows (by default only ``PHYSICAL``)."""


class UnsupportedDoseSummationError(QAChecksError):
    """(3004,000A) *DoseSummationType* does not give the plan dose: ``BEAM`` alone, ``FRACTION`` without the
    number of fractions, any other value; or beam doses that cannot be summed (different plans or grids)."""


class AmbiguousInputError(QAChecksError):
    """More than one candidate where exactly one is needed (two CT series, two RTSTRUCTs, ...)."""


class PlanScoringError(QAChecksError):
    """A submitted plan cannot be scored: an RT object, a target structure, a prescription or the number of
    fractions is missing. The message names the file, the tags and what to add."""
