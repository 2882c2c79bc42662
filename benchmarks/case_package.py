"""What a centre downloads for a benchmark case: the reference objects its QA stage supplies, as one zip.

Which objects a stage supplies is data, :data:`benchmarks.case_spec.DISTRIBUTED_FILES` (stage -> modalities): the
outlining benchmark supplies the CT only (the reference RTSTRUCT is the answer), the planning benchmark the CT and
the reference RTSTRUCT (the reference RTPLAN / RTDOSE stay with the QA group), the TPS check the CT, RTSTRUCT and
the reference RTPLAN (the reference RTDOSE is the answer). Files are chosen by the (0008,0060) *Modality* written
in each file, never by its name, so a case directory holding more (an imported planning case with its reference
plan) still gives only what the stage supplies.

The zip is deterministic: entries in path order, each dated 1980-01-01 00:00, so one case version always gives the
same bytes. Entry names are ``<case>-<version>/CT/CT.0001.dcm``, ``<case>-<version>/RTSTRUCT.dcm``, ...
"""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path
from typing import Final

import pydicom
from pydicom.errors import InvalidDicomError

from benchmarks.case_spec import DISTRIBUTED_FILES
from benchmarks.cases import DICOM_DIR_NAME, reference_files

__all__ = ["ZIP_DATE_TIME", "CasePackageError", "supplied_files", "supplied_modalities", "write_case_zip"]

ZIP_DATE_TIME: Final = (1980, 1, 1, 0, 0, 0)
"""Date and time written on every zip entry (the earliest a zip can hold), so builds are byte-identical."""


class CasePackageError(ValueError):
    """A case cannot be packaged for download; the message names the case folder and what is wrong."""


def supplied_modalities(stage: str) -> tuple[str, ...]:
    """The modalities a centre receives for a case of ``stage`` (see :data:`DISTRIBUTED_FILES`).

    Raises:
        CasePackageError: the stage supplies no files (e.g. the facility questionnaire).
    """
    try:
        return DISTRIBUTED_FILES[str(stage)]
    except KeyError:
        raise CasePackageError(f"a {str(stage).replace('_', ' ')} has no case files to download") from None


def _modality(path: Path, directory: Path) -> str:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (InvalidDicomError, OSError) as err:
        where = path.relative_to(directory).as_posix()
        raise CasePackageError(f"{directory.name}: {where} cannot be read as DICOM ({err})") from None
    return str(ds.get("Modality", ""))


def supplied_files(directory: Path, stage: str) -> list[tuple[Path, str]]:
    """The reference files of the built case in ``directory`` that a centre receives for ``stage``, each with its
    (0008,0060) *Modality*, in path order.

    Raises:
        CasePackageError: the stage supplies nothing, the folder holds no reference files, a file is not readable
            DICOM, or a modality the stage supplies is missing (a dosimetry case without its RTPLAN).
    """
    wanted = supplied_modalities(stage)
    files = reference_files(directory)
    if not files:
        raise CasePackageError(f"{directory.name}: no reference DICOM files in the case folder")
    chosen = [(path, modality) for path in files if (modality := _modality(path, directory)) in wanted]
    missing = [m for m in wanted if m not in {modality for _, modality in chosen}]
    if missing:
        raise CasePackageError(f"{directory.name}: the case folder holds no {', '.join(missing)} file")
    return chosen


def write_case_zip(directory: Path, stage: str, target: Path, *, folder: str) -> list[str]:
    """Write the files a centre receives for ``stage`` (:func:`supplied_files`) into the zip ``target``, under
    ``folder/`` with their paths relative to the case's ``dicom/`` folder; returns the entry names.

    The zip is written beside ``target`` and renamed into place, so a reader never sees half a file.
    """
    chosen = supplied_files(directory, stage)
    dicom = directory / DICOM_DIR_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    names: list[str] = []
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, _ in chosen:
                name = f"{folder}/{path.relative_to(dicom).as_posix()}"
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with path.open("rb") as source, zf.open(info, "w") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                names.append(name)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return names
