"""Write standard DICOM CT image series, RT Structure Sets, RT Plans and RT Doses from arrays and masks.

This module gathers the public names of the writers, one module per concern: ``dicom_base`` (UIDs, dates and the
modules every file carries), ``dicom_ct``, ``dicom_rtstruct``, ``dicom_rtplan`` and ``dicom_rtdose``.

The files are meant to be indistinguishable, for a reader, from what a planning system exports: CT Image Storage
and RT Structure Set Storage SOP instances with file meta information, explicit VR little endian, and the
type 1 and type 2 attributes of the Patient, General Study, (RT) Series, Frame of Reference, General Equipment,
image and SOP Common modules present.

Geometry: arrays are (z, y, x); slices are axial with (0020,0037) ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``
(rows along +y, columns along +x, LPS mm, head first supine). Voxel-centre coordinates come from the volume's
``z_mm``, ``y_mm``, ``x_mm`` vectors.

Determinism: with a ``uid_seed`` every UID is derived from the seed (``pydicom.uid.generate_uid`` with
``entropy_srcs``) and dates/times are fixed arguments (never the clock), so the same inputs give byte-identical
files.
"""

from __future__ import annotations

from benchmarks.dicom_base import (
    CT_IMAGE_STORAGE,
    DEFAULT_DATE,
    DEFAULT_TIME,
    RT_STRUCTURE_SET_STORAGE,
    UID_PREFIX,
    CtSeriesInfo,
    CtVolume,
    DicomWriteError,
    make_uid,
)
from benchmarks.dicom_ct import read_ct_series_info, write_ct_series
from benchmarks.dicom_rtdose import DOSE_STORED_MAX, RT_DOSE_STORAGE, write_rtdose
from benchmarks.dicom_rtplan import RT_PLAN_STORAGE, ArcSpec, PlanTarget, write_rtplan
from benchmarks.dicom_rtstruct import PlanarContour, mask_to_contours, write_rtstruct, write_rtstruct_contours

__all__ = [
    "CT_IMAGE_STORAGE",
    "DEFAULT_DATE",
    "DEFAULT_TIME",
    "DOSE_STORED_MAX",
    "RT_DOSE_STORAGE",
    "RT_PLAN_STORAGE",
    "RT_STRUCTURE_SET_STORAGE",
    "UID_PREFIX",
    "ArcSpec",
    "CtSeriesInfo",
    "CtVolume",
    "DicomWriteError",
    "PlanTarget",
    "PlanarContour",
    "make_uid",
    "mask_to_contours",
    "read_ct_series_info",
    "write_ct_series",
    "write_rtdose",
    "write_rtplan",
    "write_rtstruct",
    "write_rtstruct_contours",
]
