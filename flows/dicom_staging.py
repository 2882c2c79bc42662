"""The staging area of pushed DICOM objects, and the step that makes a staged study ONE submission.

Layout: ``ROOT/<provider code>/<StudyInstanceUID>/<MODALITY>/<SOPInstanceUID>.dcm``. Each instance is checked
(:mod:`flows.dicom_instances`) and then written atomically (renamed into place, or copied to a hidden temporary
name in the target folder and renamed), so a study folder only ever holds whole files; the same SOP instance sent
again replaces the earlier copy. Beside the files, hidden and so never part of a submission: ``.study.json`` (the
study's frame of reference, patient and senders, fixed by its first accepted object) and ``.refused.jsonl`` (one
line per refused instance). :meth:`Staging.finalise` identifies the case from the objects
(:class:`flows.dicom_cases.CaseIndex`) and stores the study through :func:`flows.credentialing.store_submission`,
the upload path; the steps then run as for an upload. Either way the study folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from flows._store import engine_for
from flows.credentialing import IngestError, store_submission
from flows.dicom_cases import CaseIndex, CaseMatchError
from flows.dicom_instances import InstanceHeader, InstanceRefusedError, PushStatus, check_against_case, read_header
from models.audit import record_audit
from models.settings import Settings

__all__ = ["DEFAULT_MIN_FREE_BYTES", "STAGING_DIR_NAME", "PushReceipt", "StagedInstance", "Staging"]

STAGING_DIR_NAME = "dicom-staging"
"""Folder of the receiver's staging area under the data directory."""

DEFAULT_MIN_FREE_BYTES = 256 * 1024**2
"""Free disk space, in bytes, that receiving an instance must leave; below it instances are refused (0xA700)."""

MAX_LISTED_REFUSALS = 50
"""Most refused instances listed one by one in a push's audit record (the count is always kept)."""

_STATE = ".study.json"
_REFUSED = ".refused.jsonl"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedInstance:
    """An accepted instance and where it was written."""

    provider_code: str
    header: InstanceHeader
    path: Path
    size_bytes: int


@dataclass(frozen=True)
class PushReceipt:
    """What became of one staged study: a submission (``submission_id``), or the ``reason`` why not."""

    provider_code: str
    study_uid: str
    by_modality: dict[str, int]
    refused: tuple[dict[str, str], ...] = ()
    submission_id: int | None = None
    created: bool = False
    case: str | None = None
    reason: str | None = None
    status: int | None = None
    """With ``reason``: the :class:`flows.dicom_instances.PushStatus` that tells the sender why."""
    comment: str | None = None
    """With ``reason``: the reason in at most 64 characters (a DICOM (0000,0902) *ErrorComment*)."""
    instances: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """(SOP Class UID, SOP Instance UID) of every accepted instance."""


def _refusal_record(header: InstanceHeader | None, refused: InstanceRefusedError) -> dict[str, str]:
    return {
        "sop_class_uid": header.sop_class_uid if header else "",
        "sop_instance_uid": header.sop_instance_uid if header else "",
        "modality": header.modality if header else "",
        "status": f"0x{int(refused.status):04X}",
        "reason": refused.reason,
    }


class Staging:
    """A staging area rooted at ``root`` (the receiver's is ``data_dir/dicom-staging``; a STOW-RS request has its
    own). Thread-safe: checks run in parallel, placing files and finalising a study are serialised per area."""

    def __init__(self, root: Path, settings: Settings, *, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> None:
        self.root = root
        self.settings = settings
        self.min_free_bytes = min_free_bytes
        self.lock = threading.RLock()
        self._bytes: dict[Path, int] = {}

    def study_dir(self, provider_code: str, study_uid: str) -> Path:
        return self.root / provider_code / study_uid

    # --- receiving --------------------------------------------------------------------------------------------

    def receive(
        self,
        source: Path,
        *,
        provider_code: str,
        index: CaseIndex,
        sender: str,
        expected_sop_class: str | None = None,
        expected_sop_instance: str | None = None,
        on_study: Callable[[InstanceHeader, bool], None] | None = None,
    ) -> StagedInstance:
        """Check the instance in ``source`` and move it into its study folder.

        ``on_study(header, accepted)`` runs under the area's lock once the file is in place, or once a refusal is
        recorded in the study folder (the receiver marks the study as held by the association there, before anyone
        could finalise it).

        Raises:
            InstanceRefusedError: the status and reason; recorded in the study folder when the study is known.
        """
        header = read_header(source, expected_sop_class=expected_sop_class, expected_sop_instance=expected_sop_instance)
        candidates = index.candidates(
            frame_of_reference_uids=header.frame_of_reference_uids,
            ct_series_uids=[
                *header.referenced_ct_series_uids,
                *([header.series_uid] if header.modality == "CT" and header.series_uid else []),
            ],
        )
        folder = self.study_dir(provider_code, header.study_uid)
        with self.lock:
            try:
                state = self._state(folder)
                check_against_case(
                    header,
                    candidates,
                    study_frame_of_reference_uid=state.get("frame_of_reference_uid"),
                    study_patient_id=state.get("patient_id"),
                )
                size = source.stat().st_size
                target = folder / header.modality / f"{header.sop_instance_uid}.dcm"
                replaced = target.stat().st_size if target.exists() else 0
                self._check_resources(folder, size - replaced)
                self._place(source, target)
            except InstanceRefusedError as refused:
                self._record_refusal(folder, header, refused)
                if on_study is not None:
                    on_study(header, False)
                raise
            self._bytes[folder] = self._staged_bytes(folder) + size - replaced
            changed = False
            if state.get("frame_of_reference_uid") is None and header.frame_of_reference_uids:
                state["frame_of_reference_uid"], changed = header.frame_of_reference_uids[0], True
            if state.get("patient_id") is None:
                state["patient_id"], changed = header.patient_id, True
            if sender not in state.setdefault("senders", []):
                state["senders"].append(sender)
                changed = True
            if changed:
                self._write_state(folder, state)
            if on_study is not None:
                on_study(header, True)
        return StagedInstance(provider_code, header, target, size)

    def _state(self, folder: Path) -> dict[str, Any]:
        path = folder / _STATE
        if not path.is_file():
            return {}
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def _write_state(self, folder: Path, state: dict[str, Any]) -> None:
        tmp = folder / f".state-{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, folder / _STATE)

    def _record_refusal(self, folder: Path, header: InstanceHeader | None, refused: InstanceRefusedError) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / _REFUSED).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(_refusal_record(header, refused)) + "\n")
        except OSError:
            _log.exception("cannot record a refusal in %s", folder)

    def _staged_bytes(self, folder: Path) -> int:
        if folder not in self._bytes:
            self._bytes[folder] = sum(p.stat().st_size for p in folder.rglob("*.dcm")) if folder.is_dir() else 0
        return self._bytes[folder]

    def _check_resources(self, folder: Path, size: int) -> None:
        limit = self.settings.max_upload_bytes
        if self._staged_bytes(folder) + size > limit:
            raise InstanceRefusedError(
                PushStatus.OUT_OF_RESOURCES,
                f"the study's objects exceed the limit of {limit} bytes (RTQA_MAX_UPLOAD_BYTES); send less or ask the "
                "QA team",
                comment="the push exceeds the upload limit (RTQA_MAX_UPLOAD_BYTES)",
            )
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free - size < self.min_free_bytes:
            raise InstanceRefusedError(
                PushStatus.OUT_OF_RESOURCES,
                f"the receiver's disk is nearly full ({free} bytes free); try again later or tell the QA team",
                comment="the receiver's disk is nearly full",
            )

    def _place(self, source: Path, target: Path) -> None:
        """Move ``source`` to ``target`` atomically (a rename, or a copy under a hidden name then a rename)."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
                return
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
            tmp = target.parent / f".incoming-{uuid.uuid4().hex}.dcm"
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as err:
            raise InstanceRefusedError(
                PushStatus.OUT_OF_RESOURCES,
                f"the object cannot be written on the receiver ({err.strerror or err}); try again later",
                comment="the object cannot be written on the receiver",
            ) from None

    def record_unplaced_refusal(self, provider_code: str, study_uid: str | None, refused: InstanceRefusedError) -> None:
        """Record a refusal of an instance whose header could not be read, when its study is known."""
        if study_uid:
            with self.lock:
                self._record_refusal(self.study_dir(provider_code, study_uid), None, refused)

    # --- the studies held -------------------------------------------------------------------------------------

    def studies(self) -> list[tuple[str, str, float]]:
        """Every staged study: (provider code, StudyInstanceUID, time of the last change as a POSIX timestamp)."""
        found: list[tuple[str, str, float]] = []
        if not self.root.is_dir():
            return found
        for provider in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for study in sorted(s for s in provider.iterdir() if s.is_dir() and not s.name.startswith(".")):
                times = [p.stat().st_mtime for p in study.rglob("*")] or [study.stat().st_mtime]
                found.append((provider.name, study.name, max(times)))
        return found

    def discard(self, provider_code: str, study_uid: str, sop_instance_uids: set[str]) -> None:
        """Remove these instances of a study (an association that ended without a release); the folder goes when
        no object is left in it."""
        folder = self.study_dir(provider_code, study_uid)
        with self.lock:
            for path in folder.glob("*/*.dcm"):
                if path.stem in sop_instance_uids:
                    path.unlink(missing_ok=True)
            self._bytes.pop(folder, None)
            if folder.is_dir() and not any(folder.glob("*/*.dcm")):
                shutil.rmtree(folder, ignore_errors=True)
                self._remove_if_empty(folder.parent)

    def _remove_if_empty(self, folder: Path) -> None:
        with contextlib.suppress(OSError):
            folder.rmdir()

    # --- finalising ---------------------------------------------------------------------------------------------

    def finalise(self, provider_code: str, study_uid: str, *, index: CaseIndex, via: str) -> PushReceipt | None:
        """Make the staged study ONE submission (or say why not, audited); the study folder is removed either way.

        ``via`` names the route for the audit trail ("C-STORE", "STOW-RS"). Returns None when nothing is staged.
        """
        folder = self.study_dir(provider_code, study_uid)
        with self.lock:
            if not folder.is_dir():
                return None
            work = folder.parent / f".finalising-{uuid.uuid4().hex}"
            os.replace(folder, work)
            self._bytes.pop(folder, None)
        try:
            receipt = self._finalise(work, provider_code, study_uid, index=index, via=via)
        except BaseException:
            with self.lock:  # an unexpected failure (e.g. the database is down): keep the study to try again
                if folder.exists():  # objects of the study arrived meanwhile: put the earlier ones beside them
                    for path in work.glob("*/*.dcm"):
                        target = folder / path.parent.name / path.name
                        if not target.exists():
                            target.parent.mkdir(parents=True, exist_ok=True)
                            os.replace(path, target)
                    shutil.rmtree(work, ignore_errors=True)
                else:
                    os.replace(work, folder)
            raise
        shutil.rmtree(work, ignore_errors=True)
        with self.lock:
            self._remove_if_empty(folder.parent)
        return receipt

    def mark_released(self, provider_code: str, study_uid: str) -> None:
        """Note in the study's state that the association sending it was released (so a receiver restarted before
        the study became a submission knows it was complete)."""
        folder = self.study_dir(provider_code, study_uid)
        with self.lock:
            if folder.is_dir():
                state = self._state(folder)
                state["released"] = True
                self._write_state(folder, state)

    def was_released(self, provider_code: str, study_uid: str) -> bool:
        """Whether :meth:`mark_released` was called for the staged study."""
        with self.lock:
            return bool(self._state(self.study_dir(provider_code, study_uid)).get("released"))

    def remove(self, provider_code: str, study_uid: str) -> None:
        """Delete a staged study with everything in it."""
        folder = self.study_dir(provider_code, study_uid)
        with self.lock:
            shutil.rmtree(folder, ignore_errors=True)
            self._bytes.pop(folder, None)
            self._remove_if_empty(folder.parent)

    def remove_abandoned(self) -> list[str]:
        """Delete the hidden work folders a stopped process left while finalising; returns their names."""
        names: list[str] = []
        with self.lock:
            for work in self.root.glob("*/.finalising-*") if self.root.is_dir() else []:
                shutil.rmtree(work, ignore_errors=True)
                names.append(f"{work.parent.name}/{work.name}")
        return names

    def _finalise(self, work: Path, provider_code: str, study_uid: str, *, index: CaseIndex, via: str) -> PushReceipt:
        state = self._state(work)
        refused = tuple(json.loads(line) for line in _read_lines(work / _REFUSED) if line.strip())
        files = sorted(work.glob("*/*.dcm"))
        headers = [read_header(p) for p in files]
        by_modality = dict(sorted(Counter(h.modality for h in headers).items()))
        base = PushReceipt(
            provider_code=provider_code,
            study_uid=study_uid,
            by_modality=by_modality,
            refused=refused,
            instances=tuple((h.sop_class_uid, h.sop_instance_uid) for h in headers),
        )
        actor = ", ".join(state.get("senders", [])) or f"dicom:{provider_code}"
        if not headers:
            reason = "no object was accepted; see the status of each"
            return self._refuse(base, reason, PushStatus.NO_CASE, "no object was accepted", actor=actor[:200], via=via)
        frames = {u for h in headers for u in h.frame_of_reference_uids}
        series = {u for h in headers for u in h.referenced_ct_series_uids}
        series |= {h.series_uid for h in headers if h.modality == "CT" and h.series_uid}
        try:
            case = index.identify(frame_of_reference_uids=frames, ct_series_uids=series)
            ingested = store_submission(
                str(work),
                provider_code=provider_code,
                case_code=case.case_code,
                case_version=case.version,
                actor=actor[:200],
                database_url=self.settings.resolved_database_url,
                data_dir=str(self.settings.data_dir),
            )
        except CaseMatchError as err:
            return self._refuse(base, str(err), PushStatus.NO_CASE, err.comment, actor=actor[:200], via=via)
        except IngestError as err:
            comment = "the objects could not be stored as a submission"
            return self._refuse(base, str(err), PushStatus.PROCESSING_FAILURE, comment, actor=actor[:200], via=via)
        receipt = PushReceipt(
            **{
                **base.__dict__,
                "submission_id": ingested.submission_id,
                "created": ingested.created,
                "case": case.label,
            }
        )
        with Session(engine_for(self.settings.resolved_database_url)) as session:
            record_audit(
                session,
                actor=actor[:200],
                action="submission.pushed",
                subject_type="submission",
                subject_id=ingested.submission_id,
                after=_push_details(receipt, via=via, senders=state.get("senders", [])),
            )
            session.commit()
        _log.info(
            "%s study %s from %s: submission %s (%s) of %s, %s refused",
            via,
            study_uid,
            provider_code,
            ingested.submission_id,
            "new" if ingested.created else "already received",
            case.label,
            len(refused),
        )
        return receipt

    def _refuse(
        self, receipt: PushReceipt, reason: str, status: PushStatus, comment: str, *, actor: str, via: str
    ) -> PushReceipt:
        refused = PushReceipt(**{**receipt.__dict__, "reason": reason, "status": int(status), "comment": comment})
        with Session(engine_for(self.settings.resolved_database_url)) as session:
            record_audit(
                session,
                actor=actor,
                action="dicom.push_refused",
                subject_type="provider",
                subject_id=receipt.provider_code,
                after=_push_details(refused, via=via, senders=[]),
                reason=reason[:4000],
            )
            session.commit()
        _log.warning("%s study %s from %s not taken in: %s", via, receipt.study_uid, receipt.provider_code, reason)
        return refused


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def _push_details(receipt: PushReceipt, *, via: str, senders: list[str]) -> dict[str, Any]:
    """The audit record of a push: route, senders, study, instances by modality, refusals (the first
    :data:`MAX_LISTED_REFUSALS`)."""
    return {
        "via": via,
        "senders": list(senders),
        "study_instance_uid": receipt.study_uid,
        "instances_by_modality": dict(receipt.by_modality),
        "refused_count": len(receipt.refused),
        "refused": list(receipt.refused[:MAX_LISTED_REFUSALS]),
        "case": receipt.case,
    }
