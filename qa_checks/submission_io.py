"""Loading a whole submission folder: every DICOM file sorted by modality, read, and cross-checked.

:mod:`qa_checks.dicom_io` re-exports :func:`load_submission` and :class:`LoadedSubmission` beside the per-object
readers (:mod:`qa_checks.ct_reader`, :mod:`qa_checks.rtstruct_reader`, :mod:`qa_checks.rtdose_reader`,
:mod:`qa_checks.rtplan_reader`), whose shared helpers are in :mod:`qa_checks.dicom_reading`.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as PydicomSequence

from qa_checks.ct_reader import _ct_from_datasets
from qa_checks.dicom_reading import (
    _MEDIA_STORAGE_DIRECTORY,
    PathLike,
    _collect_files,
    _get,
    _pydicom_warnings_logged,
    _read_dataset,
    _tag,
)
from qa_checks.errors import (
    AmbiguousInputError,
    FrameOfReferenceMismatchError,
    InvalidValueError,
    MissingAttributeError,
    MissingReferenceError,
    NotDicomError,
    UnsupportedDoseSummationError,
)
from qa_checks.geometry import DoseGrid, ImageVolume
from qa_checks.plan import Plan
from qa_checks.rtdose_meaning import DEFAULT_ALLOWED_DOSE_TYPES, _positive_int, sum_beam_doses
from qa_checks.rtdose_reader import _rtdose_from_dataset
from qa_checks.rtplan_reader import _rtplan_from_dataset
from qa_checks.rtstruct_reader import _rtstruct_from_dataset
from qa_checks.structures import StructureSet

__all__ = ["LoadedSubmission", "load_submission"]

logger = logging.getLogger("qa_checks.dicom_io")
"""The readers' logger: messages about a submission read the same wherever they come from."""


@dataclass(frozen=True, eq=False)
class LoadedSubmission:
    """The objects of one submission, cross-checked by :func:`load_submission`.

    Attributes:
        ct, structure_set, plan, dose: the read objects, None when the submission has none of that kind.
        files_by_modality: every DICOM file found, by (0008,0060) *Modality* (including modalities not read).
        frame_of_reference_uid: the (0020,0052) *FrameOfReferenceUID* shared by all objects that carry one.
    """

    ct: ImageVolume | None
    structure_set: StructureSet | None
    plan: Plan | None
    dose: DoseGrid | None
    files_by_modality: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    frame_of_reference_uid: str | None = None


def load_submission(
    dir_or_files: PathLike | Iterable[PathLike],
    *,
    allow_relative_dose: bool = False,
    number_of_fractions: int | None = None,
    allowed_dose_types: Collection[str] = DEFAULT_ALLOWED_DOSE_TYPES,
    sum_beams: bool = False,
) -> LoadedSubmission:
    """Read a folder (or list) of mixed DICOM files and check that they belong together.

    Files are sorted by (0008,0060) *Modality*. Hidden files and directories (name starting with ``"."``) are
    ignored, as is a DICOMDIR; every other file must be DICOM. At most one CT series, one RTSTRUCT, one RTPLAN
    and one RTDOSE may be present (each is optional). Other modalities are listed in ``files_by_modality`` but
    not read.

    The RTDOSE must be the plan dose (see :func:`read_rtdose`): (3004,000A) *DoseSummationType* PLAN, or
    FRACTION when ``number_of_fractions`` is given (multiplied by it; it must then equal the RTPLAN's
    (300A,0078) *NumberOfFractionsPlanned* when an RTPLAN is present), with (3004,0004) *DoseType* in
    ``allowed_dose_types``. With ``sum_beams`` the submission may instead hold one BEAM RTDOSE per beam of the
    plan on one grid: they are summed by :func:`qa_checks.rtdose_meaning.sum_beam_doses` (recorded in the dose's
    ``notes``) and, when an RTPLAN is present, must cover exactly its beams. Messages name files relative to the
    submission folder when one folder is given.

    Cross-checks:

    - the RTSTRUCT's referenced (0020,000E) *SeriesInstanceUID* is the CT series, and every referenced image
      (0008,1155) *ReferencedSOPInstanceUID* is one of the CT slices (when a CT series is present);
    - the RTDOSE's (300C,0002) *ReferencedRTPlanSequence* names the submitted RTPLAN (when both are present);
    - every object carrying a (0020,0052) *FrameOfReferenceUID* carries the same one.

    Raises:
        NotDicomError: a non-hidden file is not DICOM (the message names it).
        AmbiguousInputError: two CT series, or two files of one RT modality (except BEAM doses with
            ``sum_beams``).
        UnsupportedDoseTypeError, UnsupportedDoseSummationError: the RTDOSE is not (or cannot be made) the
            physical plan dose.
        MissingReferenceError: a cross reference above is not satisfied.
        FrameOfReferenceMismatchError: frames of reference differ (the message lists each object's UID).
        and the errors of the individual readers.
    """
    if number_of_fractions is not None:
        _positive_int(number_of_fractions)  # a wrong argument is the caller's error, not a file's
    files = _collect_files(dir_or_files)
    if not files:
        raise NotDicomError(f"{dir_or_files}: no files found in the submission")
    by_modality: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    decoded: DecodedValues = set()
    for p in files:
        ds = _read_dataset(p)
        with _pydicom_warnings_logged(p):
            _check_values_decode(ds, p, decoded)
            media_class = _get(ds.file_meta, "MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None
            if media_class is not None and str(media_class) == _MEDIA_STORAGE_DIRECTORY:
                logger.info("%s: DICOMDIR ignored", p)
                continue
            modality = _get(ds, "Modality")
            if modality is None:
                raise MissingAttributeError(f"{p}: {_tag('Modality')} is missing; cannot sort the file")
            by_modality[str(modality).upper()].append((p, ds))

    root = Path(dir_or_files) if isinstance(dir_or_files, str | os.PathLike) and Path(dir_or_files).is_dir() else None
    for modality in ("RTSTRUCT", "RTPLAN", "RTDOSE"):
        found = by_modality.get(modality, [])
        if len(found) > 1 and not (modality == "RTDOSE" and sum_beams):
            if modality == "RTDOSE":
                summations = sorted({str(_get(ds, "DoseSummationType")) for _, ds in found})
                raise AmbiguousInputError(
                    f"the submission holds {len(found)} RTDOSE files "
                    f"({', '.join(_display_name(p, root) for p, _ in found)}) with {_tag('DoseSummationType')} "
                    f"{', '.join(summations)}; exactly one plan dose is expected (load one RTDOSE per beam of "
                    f"one plan with sum_beams=True)"
                )
            raise AmbiguousInputError(
                f"the submission holds {len(found)} {modality} files ({', '.join(str(p) for p, _ in found)}); "
                f"exactly one is expected"
            )
    for modality in by_modality.keys() - {"CT", "RTSTRUCT", "RTPLAN", "RTDOSE"}:
        logger.info("%d %s file(s) listed but not read", len(by_modality[modality]), modality)

    ct = None
    if by_modality.get("CT"):
        with _pydicom_warnings_logged(f"CT series in {by_modality['CT'][0][0].parent}"):
            ct = _ct_from_datasets(by_modality["CT"])
    structure_set = plan = dose = None
    if by_modality.get("RTSTRUCT"):
        p, ds = by_modality["RTSTRUCT"][0]
        with _pydicom_warnings_logged(p):
            structure_set = _rtstruct_from_dataset(ds, p)
    if by_modality.get("RTPLAN"):
        p, ds = by_modality["RTPLAN"][0]
        with _pydicom_warnings_logged(p):
            plan = _rtplan_from_dataset(ds, p)
    if by_modality.get("RTDOSE"):
        dose = _submission_dose(
            by_modality["RTDOSE"],
            root,
            plan,
            allow_relative=allow_relative_dose,
            number_of_fractions=number_of_fractions,
            allowed_dose_types=allowed_dose_types,
            sum_beams=sum_beams,
        )

    if ct is not None and structure_set is not None:
        _check_structure_set_references_ct(structure_set, ct, by_modality["CT"][0][0].parent)
    if dose is not None and plan is not None and dose.referenced_plan_uid != plan.sop_instance_uid:
        raise MissingReferenceError(
            f"{dose.path}: {_tag('ReferencedRTPlanSequence')} {_tag('ReferencedSOPInstanceUID')} is "
            f"{dose.referenced_plan_uid!r} but the submitted RTPLAN {plan.path} has {_tag('SOPInstanceUID')} "
            f"{plan.sop_instance_uid!r}"
        )
    if (
        plan is not None
        and structure_set is not None
        and plan.referenced_structure_set_uid is not None
        and plan.referenced_structure_set_uid != structure_set.sop_instance_uid
    ):
        logger.warning(
            "%s: references structure set %s but the submitted RTSTRUCT is %s",
            plan.path,
            plan.referenced_structure_set_uid,
            structure_set.sop_instance_uid,
        )

    frames: dict[str, str] = {}
    if ct is not None and ct.frame_of_reference_uid:
        frames[f"CT series {ct.series_instance_uid}"] = ct.frame_of_reference_uid
    if structure_set is not None and structure_set.frame_of_reference_uid:
        frames[f"RTSTRUCT {structure_set.path}"] = structure_set.frame_of_reference_uid
    if plan is not None and plan.frame_of_reference_uid:
        frames[f"RTPLAN {plan.path}"] = plan.frame_of_reference_uid
    if dose is not None and dose.frame_of_reference_uid:
        frames[f"RTDOSE {dose.path}"] = dose.frame_of_reference_uid
    if len(set(frames.values())) > 1:
        detail = "; ".join(f"{who}: {uid}" for who, uid in frames.items())
        raise FrameOfReferenceMismatchError(
            f"the submission's objects do not share one {_tag('FrameOfReferenceUID')}: {detail}"
        )

    return LoadedSubmission(
        ct=ct,
        structure_set=structure_set,
        plan=plan,
        dose=dose,
        files_by_modality={m: tuple(p for p, _ in items) for m, items in sorted(by_modality.items())},
        frame_of_reference_uid=next(iter(frames.values()), None),
    )


_NOT_DECODED_HERE = frozenset({0x30060050, 0x7FE00008, 0x7FE00009, 0x7FE00010})
"""(3006,0050) *ContourData* and the pixel data elements: large, and checked by the readers that use them."""


DecodedValues = set[tuple[object, ...]]
"""Raw values already decoded in a submission (see :func:`_check_values_decode`)."""


def _check_values_decode(ds: Dataset, path: Path, decoded: DecodedValues | None = None) -> None:
    """Decode every element of ``ds`` (nested items included) but :data:`_NOT_DECODED_HERE`.

    A value that cannot be decoded (an unknown VR, a binary value of the wrong length, ...) means damaged bytes,
    even in an element no reader uses: such a file is refused rather than judged on what happens to be intact.

    ``decoded`` (shared by the files of one submission) remembers the raw values decoded without error: a
    standard (even group) element with an explicit VR is decoded from its tag, VR, length, byte order, bytes and
    the dataset's character set alone, so an element equal in all of these to one already decoded (the slices of a
    CT series share most of theirs) would decode the same way and is not decoded again. Private elements and
    implicit-VR elements (whose VR may depend on other elements of the dataset) are always decoded.

    Raises:
        InvalidValueError: naming the file and the element.
    """
    # the character set pydicom decodes this dataset's text with (Dataset.__getitem__ uses the same expression)
    charset = ds.original_character_set or ds._character_set
    charset_key = tuple(charset) if isinstance(charset, list) else charset
    for key in list(ds.keys()):
        tag = int(key)
        if tag in _NOT_DECODED_HERE:
            continue
        signature: tuple[object, ...] | None = None
        raw = ds.get_item(key, keep_deferred=True)
        if (
            decoded is not None
            and isinstance(raw, RawDataElement)
            and isinstance(raw.value, bytes)
            and raw.VR is not None
            and " " not in raw.VR
            and not (tag >> 16) & 1
        ):
            signature = (tag, raw.VR, raw.length, raw.is_little_endian, raw.value, charset_key)
            if signature in decoded:
                continue
        try:
            value = ds[tag].value
        except Exception as exc:
            name = keyword_for_tag(tag) or "(private or unknown)"
            raise InvalidValueError(
                f"{path}: ({tag >> 16:04X},{tag & 0xFFFF:04X}) {name} cannot be decoded ({type(exc).__name__}: "
                f"{exc}); the file is damaged: export it again"
            ) from None
        if isinstance(value, PydicomSequence):
            for item in value:
                _check_values_decode(item, path, decoded)
        if signature is not None and decoded is not None:
            decoded.add(signature)


def _display_name(path: Path, root: Path | None) -> str:
    """``path`` relative to the submission folder ``root`` when it lies inside it, else as given."""
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return str(path)


def _submission_dose(
    found: Sequence[tuple[Path, Dataset]],
    root: Path | None,
    plan: Plan | None,
    *,
    allow_relative: bool,
    number_of_fractions: int | None,
    allowed_dose_types: Collection[str],
    sum_beams: bool,
) -> DoseGrid:
    """The plan dose of a submission from its RTDOSE file(s) (see :func:`load_submission`)."""
    doses = []
    for p, ds in found:
        with _pydicom_warnings_logged(p):
            doses.append(
                _rtdose_from_dataset(
                    ds,
                    p,
                    allow_relative=allow_relative,
                    number_of_fractions=number_of_fractions,
                    allowed_dose_types=allowed_dose_types,
                    allow_beam=sum_beams,
                    name=_display_name(p, root),
                )
            )
    names = [_display_name(p, root) for p, _ in found]
    if len(doses) == 1 and doses[0].summation == "PLAN":
        dose = doses[0]
        if number_of_fractions is not None and doses[0].notes and plan is not None:
            planned = plan.number_of_fractions
            if planned is not None and planned != number_of_fractions:
                raise UnsupportedDoseSummationError(
                    f"{names[0]}: per-fraction dose read as {number_of_fractions} fractions but the RTPLAN "
                    f"{_display_name(Path(plan.path or ''), root)} has {_tag('NumberOfFractionsPlanned')} "
                    f"{planned}; pass the plan's number of fractions or export the plan dose"
                )
        return dose
    relabelled = [replace(d, path=n) for d, n in zip(doses, names, strict=True)]
    dose = sum_beam_doses(relabelled)
    if plan is not None and plan.beams:
        planned_beams = {b.number for b in plan.beams if (b.treatment_delivery_type or "TREATMENT") == "TREATMENT"}
        if set(dose.referenced_beam_numbers) != planned_beams:
            missing = sorted(planned_beams - set(dose.referenced_beam_numbers))
            extra = sorted(set(dose.referenced_beam_numbers) - planned_beams)
            raise UnsupportedDoseSummationError(
                f"BEAM doses {', '.join(names)} cover beams {list(dose.referenced_beam_numbers)} but the RTPLAN "
                f"{_display_name(Path(plan.path or ''), root)} has treatment beams {sorted(planned_beams)} "
                f"(missing {missing}, not in the plan {extra}); submit one RTDOSE per beam or the plan dose"
            )
    return dose


def _check_structure_set_references_ct(structure_set: StructureSet, ct: ImageVolume, ct_dir: Path) -> None:
    if structure_set.referenced_series_uid is not None and structure_set.referenced_series_uid != (
        ct.series_instance_uid
    ):
        raise MissingReferenceError(
            f"{structure_set.path}: {_tag('RTReferencedSeriesSequence')} {_tag('SeriesInstanceUID')} is "
            f"{structure_set.referenced_series_uid!r} but the submitted CT series (in {ct_dir}) is "
            f"{ct.series_instance_uid!r}"
        )
    missing = sorted(structure_set.referenced_sop_instance_uids - set(ct.sop_instance_uids))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise MissingReferenceError(
            f"{structure_set.path}: {_tag('ContourImageSequence')} {_tag('ReferencedSOPInstanceUID')} "
            f"{shown} not among the {len(ct.sop_instance_uids)} submitted CT slices ({ct_dir})"
        )
