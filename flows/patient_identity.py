"""Patient identity in a submission's DICOM headers, checked against the benchmark case's anonymised identity.

Benchmark cases are phantoms (or anonymised exports) carrying a dummy identity, e.g. (0010,0010) *PatientName*
``Benchmark^LungSABR^Mini``. A centre's planning system may stamp its own patient record on what it exports, and a
real patient's identity must not end up in the QA group's store.

Decision: **refuse, never strip**. The attributes checked are the Patient-module attributes that DICOM PS3.15
Annex E, Basic Application Level Confidentiality Profile (Table E.1-1) empties or replaces (action Z:
:data:`IDENTITY_ATTRIBUTES` with action ``"Z"``) or removes (action X). A submission file is refused when a Z
attribute holds a value other than the case's (empty is allowed) or an X attribute holds any value. Why refuse:

- the profile is the sender's de-identification; quietly repairing it here would hide that the centre's export
  leaks identity, and the next export (a trial patient) would leak too;
- stripping here could only be partial: the same profile replaces every UID (action U), including the (0020,0052)
  *FrameOfReferenceUID* and the referenced CT images a benchmark is checked by, so a stripped file could not
  honestly claim the profile ((0012,0062) *PatientIdentityRemoved*), and it would no longer be the file the centre
  sent;
- refusing before anything is stored keeps the identity out of the submission store, the database and the
  rejection reasons.

The refusal (:class:`PatientIdentityError`) names the file relative to the upload, the tags and the case's
expected values, but never the value received: that value is the personal data, and repeating it would copy it
into logs and the audit trail. :func:`refuse_other_identity` records the refusal in the audit trail (files and tags
only). The dummy identity of another registered case is no personal data and passes, so that a submission made on
the wrong case's CT is rejected by validation for its frame of reference, the real mistake.

Every element up to the pixel data is read, so an identity attribute placed out of order is still seen; a file
holding one twice (where any reader would show one and hide the other) or that cannot be read at all is refused
(:class:`UnreadableHeaderError`).

Not checked: attributes the profile keeps under its Retain Patient Characteristics Option (sex, age, size,
weight), identity outside the top-level Patient module (nested sequences, private tags, free text elsewhere) and
burned-in pixel text.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as PydicomSequence
from pydicom.tag import BaseTag
from sqlmodel import Session, select

from benchmarks.cases import reference_files
from flows.intake import is_dicom_file
from models.audit import record_audit
from models.tables import BenchmarkCase, Provider

__all__ = [
    "IDENTITY_ATTRIBUTES",
    "IdentityAttribute",
    "PatientIdentityError",
    "UnreadableHeaderError",
    "case_identity",
    "check_patient_identity",
    "refuse_other_identity",
]

AUDITED_FILES: Final = 50
"""Most files listed in the audit event of a refused upload (the count of all is recorded beside them)."""


@dataclass(frozen=True)
class IdentityAttribute:
    """One Patient-module attribute and its action in the Basic Profile (``"Z"``: empty or dummy, ``"X"``:
    remove)."""

    keyword: str
    action: str

    @property
    def tag(self) -> str:
        """``"(gggg,eeee) Keyword"``."""
        tag = tag_for_keyword(self.keyword)
        assert tag is not None
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {self.keyword}"


IDENTITY_ATTRIBUTES: Final = (
    IdentityAttribute("PatientName", "Z"),
    IdentityAttribute("PatientID", "Z"),
    IdentityAttribute("PatientBirthDate", "Z"),
    IdentityAttribute("PatientBirthTime", "X"),
    IdentityAttribute("OtherPatientIDs", "X"),
    IdentityAttribute("OtherPatientNames", "X"),
    IdentityAttribute("OtherPatientIDsSequence", "X"),
    IdentityAttribute("PatientBirthName", "X"),
    IdentityAttribute("PatientAddress", "X"),
    IdentityAttribute("PatientMotherBirthName", "X"),
    IdentityAttribute("MedicalRecordLocator", "X"),
    IdentityAttribute("PatientTelephoneNumbers", "X"),
    IdentityAttribute("PatientTelecomInformation", "X"),
    IdentityAttribute("PatientComments", "X"),
)
"""The attributes checked, with their PS3.15 Table E.1-1 Basic Profile action."""

_PIXEL_DATA_TAGS: Final = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""(7FE0,0008) *FloatPixelData*, (7FE0,0009) *DoubleFloatPixelData*, (7FE0,0010) *PixelData*: reading stops here."""

_IDENTITY_TAGS: Final = frozenset(tag_for_keyword(a.keyword) for a in IDENTITY_ATTRIBUTES)


class UnreadableHeaderError(ValueError):
    """A DICOM file's elements cannot be read (or hold an identity attribute twice), so its identity cannot be
    checked."""


class PatientIdentityError(ValueError):
    """Submission files carry a patient identity other than the case's (see the module docstring).

    Attributes:
        findings: each offending file (relative to the submission folder) with the tags found, in path order.
    """

    def __init__(self, message: str, findings: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        super().__init__(message)
        self.findings = tuple(findings)


def _header(path: Path) -> Dataset:
    """The file's top-level elements up to its pixel data, read whole (an element out of order is still seen).

    Raises:
        UnreadableHeaderError: an identity attribute occurs twice (one occurrence would hide the other from every
            reader, while both stay in the file).
    """
    tags: list[int] = []

    def record(tag: BaseTag, vr: str | None, length: int) -> bool:
        tags.append(int(tag))
        return int(tag) in _PIXEL_DATA_TAGS

    with path.open("rb") as fh:
        ds = pydicom.filereader.read_partial(fh, stop_when=record, force=True)
    twice = sorted({t for t in tags if t in _IDENTITY_TAGS and tags.count(t) > 1})
    if twice:
        shown = ", ".join(a.tag for a in IDENTITY_ATTRIBUTES if tag_for_keyword(a.keyword) in twice)
        raise UnreadableHeaderError(f"{path.name}: the file holds {shown} more than once; export it again")
    return ds


def _text(value: Any) -> str:
    """A value as compared: text without padding or trailing person-name separators; the values of a multi-valued
    element joined by ``\\``; ``"(sequence)"`` for a sequence with items."""
    if value is None:
        return ""
    if isinstance(value, PydicomSequence):
        return "(sequence)" if len(value) else ""
    if isinstance(value, MultiValue):
        return "\\".join(_text(v) for v in value).strip("\\")
    return str(value).strip().rstrip("^=").strip()


def case_identity(reference_file: Path) -> dict[str, str]:
    """The case's dummy identity: every Z attribute of :data:`IDENTITY_ATTRIBUTES` in one reference file, as text
    (empty when absent)."""
    ds = _header(reference_file)
    return {
        a.keyword: _text(ds[a.keyword].value) if a.keyword in ds else "" for a in IDENTITY_ATTRIBUTES if a.action == "Z"
    }


def _offending(ds: Dataset, expected: Mapping[str, str], known: Sequence[Mapping[str, str]]) -> list[IdentityAttribute]:
    """The attributes of ``ds`` that break the rule: any X attribute; the Z attributes, unless each is empty or
    that of ``expected`` or, all together, of one identity in ``known``."""
    texts = {a.keyword: _text(ds[a.keyword].value) if a.keyword in ds else "" for a in IDENTITY_ATTRIBUTES}
    removed = [a for a in IDENTITY_ATTRIBUTES if a.action == "X" and texts[a.keyword]]
    dummies = [a for a in IDENTITY_ATTRIBUTES if a.action == "Z"]
    if any(
        all(texts[a.keyword] in ("", identity.get(a.keyword, "")) for a in dummies) for identity in (expected, *known)
    ):
        return removed
    return [a for a in dummies if texts[a.keyword] not in ("", expected.get(a.keyword, ""))] + removed


def check_patient_identity(folder: Path, expected: Mapping[str, str], known: Sequence[Mapping[str, str]] = ()) -> None:
    """Check every DICOM file under ``folder`` (by :func:`flows.intake.is_dicom_file`; hidden files skipped)
    against the case's identity ``expected`` (:func:`case_identity`).

    The dummy identity of another registered case (``known``) is no personal data: such a file passes here, and
    validation then rejects it for its frame of reference, naming the real mistake.

    Raises:
        UnreadableHeaderError: a DICOM file's elements (up to the pixel data) cannot be read, or hold an identity
            attribute twice (naming the file).
        PatientIdentityError: files carry another identity (naming the first file, its tags and the case's values,
            never the values found).
    """
    findings: list[tuple[str, tuple[str, ...]]] = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts) or not is_dicom_file(path):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns about non-conforming values; errors are what count
                offending = _offending(_header(path), expected, known)
        except UnreadableHeaderError as err:
            raise UnreadableHeaderError(f"{relative.as_posix()}: {str(err).split(': ', 1)[1]}") from None
        except Exception as err:  # damaged headers raise many pydicom error types
            raise UnreadableHeaderError(
                f"{relative.as_posix()}: the DICOM file cannot be read ({type(err).__name__}), so its patient "
                "identity cannot be checked; export it again"
            ) from None
        if offending:
            findings.append((relative.as_posix(), tuple(a.tag for a in offending)))
    if not findings:
        return
    name, tags = findings[0]
    expected_values = [
        f"{a.tag} {expected.get(a.keyword, '')!r}" for a in IDENTITY_ATTRIBUTES if a.tag in tags and a.action == "Z"
    ]
    removed = [a.tag for a in IDENTITY_ATTRIBUTES if a.tag in tags and a.action == "X"]
    what = []
    if expected_values:
        what.append("differs from the case's anonymised " + ", ".join(expected_values))
    if removed:
        what.append(f"{', '.join(removed)} must be absent")
    others = f" ({len(findings) - 1} more files likewise)" if len(findings) > 1 else ""
    raise PatientIdentityError(
        f"{name}: a patient identity other than the benchmark's: {'; '.join(what)}{others} (the values sent are "
        "not repeated here); export with the case's identity, or de-identify the files (DICOM PS3.15 Basic "
        "Profile), and upload again; nothing was stored",
        findings,
    )


@lru_cache(maxsize=256)
def _registered_identity(reference_dir: str) -> dict[str, str] | None:
    """The dummy identity of a registered case's reference files (they do not change once registered); None when
    they cannot be read."""
    files = reference_files(Path(reference_dir))
    try:
        return case_identity(files[0]) if files else None
    except Exception:  # a case whose files are gone cannot be compared with
        return None


def refuse_other_identity(
    session: Session, folder: Path, *, provider: Provider, case: BenchmarkCase, actor: str
) -> None:
    """:func:`check_patient_identity` of ``folder`` against ``case``'s reference files; a refusal for another
    identity is recorded in the audit trail (``submission.refused``: provider, case, files and tags, no values) and
    committed before it is raised.

    Raises:
        PatientIdentityError, UnreadableHeaderError: as :func:`check_patient_identity`.
    """
    paths = session.exec(select(BenchmarkCase.reference_path).where(BenchmarkCase.id != case.id)).all()
    known = [identity for path in sorted(set(paths)) if (identity := _registered_identity(path))]
    try:
        check_patient_identity(folder, _registered_identity(case.reference_path) or {}, known)
    except PatientIdentityError as err:
        record_audit(
            session,
            actor=actor,
            action="submission.refused",
            subject_type="provider",
            subject_id=provider.code,
            after={
                "case": f"{case.case_code}@{case.version}",
                "rule": "patient identity (DICOM PS3.15 Basic Application Level Confidentiality Profile)",
                "files": [{"file": name, "tags": list(tags)} for name, tags in err.findings[:AUDITED_FILES]],
                "files_refused": len(err.findings),
            },
            reason=str(err),
        )
        session.commit()
        raise
