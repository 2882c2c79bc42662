"""Credentialing flow: ingest a centre's submission, validate it, score it, decide, update credentials.

Scoring follows the case's QA stage (see :mod:`flows.scoring`). Each task takes and returns ids and paths only;
every task opens its own session. ``python -m flows.credentialing DIR --provider CODE --case CODE`` runs it on
the embedded default database.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from prefect import flow, task
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from benchmarks.cases import reference_files
from benchmarks.protocols import GAMMA_STRUCTURE, Protocol
from flows._store import content_sha256, copy_atomically, engine_for
from flows.patient_identity import PatientIdentityError, UnreadableHeaderError, refuse_other_identity
from flows.protocol_store import resolve_protocol
from flows.scoring import criterion_from_json, score_stage
from flows.steps import (
    data_dir_or_default,
    load_submission_and_case,
    new_submission,
    record_decision,
    retry_on_io,
    set_status,
    settings_for,
)
from models.credentials import apply_outcome
from models.enums import QAStage, SubmissionStatus
from models.outcomes import current_outcome
from models.tables import BenchmarkCase, DoseResult, PlanResult, Provider, StructureResult, Submission
from qa_checks.dicom_io import LoadedSubmission, load_submission
from qa_checks.errors import QAChecksError
from qa_checks.protocol import Evaluation, evaluate

__all__ = [
    "IngestError",
    "Ingested",
    "SubmissionMismatchError",
    "credential_submission",
    "decide_outcome",
    "ingest_submission",
    "score_contours",
    "score_submission",
    "settings_for",
    "store_submission",
    "stored_evaluation",
    "submission_summary",
    "update_credentials",
    "validate_submission",
]


class IngestError(ValueError):
    """A submission cannot be taken in (unknown provider or case, empty folder); nothing was stored."""


class SubmissionMismatchError(ValueError):
    """A submission's files are readable but do not fit the case; the submission is rejected with this reason."""


@dataclass(frozen=True)
class Ingested:
    """The submission a folder was stored as, and whether this call created it (False: the same files again)."""

    submission_id: int
    created: bool


def store_submission(
    source_dir: str,
    *,
    provider_code: str,
    case_code: str,
    case_version: str | None,
    actor: str,
    database_url: str,
    data_dir: str,
) -> Ingested:
    """Store the upload under its content hash and record it as received.

    The same files from the same provider for the same case give back the existing submission (``created``
    False). A failure leaves neither a row nor a stored folder.

    Files carrying a patient identity other than the case's are refused before anything is stored, and the
    refusal is audited (see :mod:`flows.patient_identity`).

    Raises:
        IngestError: unknown provider or case; a patient identity other than the case's; a DICOM header that
            cannot be read as far as the Patient module.
        FileNotFoundError: the folder is missing or holds no files.
    """
    source = Path(source_dir)
    sha = content_sha256(source)
    _refuse_patient_identity(source, provider_code, case_code, case_version, actor=actor, database_url=database_url)
    created = False
    destination: Path | None = None
    try:
        for _ in range(INGEST_RACE_RETRIES):
            with Session(engine_for(database_url)) as session:
                provider, case = _provider_and_case(session, provider_code, case_code, case_version)
                existing = session.exec(
                    select(Submission).where(
                        Submission.provider_id == provider.id,
                        Submission.case_id == case.id,
                        Submission.content_sha256 == sha,
                    )
                ).first()
                if existing is not None:
                    assert existing.id is not None
                    return Ingested(existing.id, created=False)
                destination = Path(data_dir) / "submissions" / provider_code / f"{case.case_code}@{case.version}" / sha
                created = copy_atomically(source, destination) or created
                try:
                    sub = new_submission(
                        session, provider=provider, case=case, sha=sha, storage_path=destination, actor=actor
                    )
                    session.commit()
                except IntegrityError:
                    # Another upload of this provider and case took the attempt number, or stored the same files,
                    # in the meantime: look again.
                    session.rollback()
                    continue
                assert sub.id is not None
                created = False  # the folder now belongs to the recorded submission
                return Ingested(sub.id, created=True)
        raise IngestError(
            f"too many uploads for {provider_code} and {case_code} at once; send this one again in a minute"
        )
    finally:
        if created and destination is not None and not _is_recorded(database_url, destination):
            shutil.rmtree(destination, ignore_errors=True)


INGEST_RACE_RETRIES = 20
"""How often an ingest that lost a race for the next attempt number looks again before giving up."""


def _provider_and_case(
    session: Session, provider_code: str, case_code: str, case_version: str | None
) -> tuple[Provider, BenchmarkCase]:
    provider = session.exec(select(Provider).where(Provider.code == provider_code)).first()
    if provider is None:
        raise IngestError(f"unknown provider code {provider_code!r} (see `rtqa providers`)")
    query = select(BenchmarkCase).where(BenchmarkCase.case_code == case_code)
    if case_version is not None:
        query = query.where(BenchmarkCase.version == case_version)
    case = session.exec(query.order_by(col(BenchmarkCase.created_at).desc(), col(BenchmarkCase.id).desc())).first()
    if case is None:
        which = f"{case_code!r}" + (f" version {case_version!r}" if case_version else "")
        raise IngestError(
            f"unknown benchmark case {which}: publish it first (`rtqa cases publish {case_code}`) "
            "or see `rtqa cases list`"
        )
    return provider, case


def _refuse_patient_identity(
    source: Path, provider_code: str, case_code: str, case_version: str | None, *, actor: str, database_url: str
) -> None:
    """:class:`IngestError` when files under ``source`` carry a patient identity other than the case's (audited,
    see :func:`flows.patient_identity.refuse_other_identity`) or cannot be checked."""
    with Session(engine_for(database_url)) as session:
        provider, case = _provider_and_case(session, provider_code, case_code, case_version)
        try:
            refuse_other_identity(session, source, provider=provider, case=case, actor=actor)
        except (PatientIdentityError, UnreadableHeaderError) as err:
            raise IngestError(str(err)) from None


def _is_recorded(database_url: str, destination: Path) -> bool:
    """Whether a submission row points at ``destination`` (then its folder must stay)."""
    with Session(engine_for(database_url)) as session:
        stored = str(destination.resolve())
        return session.exec(select(Submission.id).where(Submission.storage_path == stored)).first() is not None


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io)
def ingest_submission(
    source_dir: str,
    *,
    provider_code: str,
    case_code: str,
    case_version: str | None,
    actor: str,
    database_url: str,
    data_dir: str,
) -> int:
    """Store the upload under its content hash and record it as received; returns the submission id.

    The same files from the same provider for the same case give back the existing submission. A failure leaves
    neither a row nor a stored folder (see :func:`store_submission`).
    """
    return store_submission(
        source_dir,
        provider_code=provider_code,
        case_code=case_code,
        case_version=case_version,
        actor=actor,
        database_url=database_url,
        data_dir=data_dir,
    ).submission_id


REQUIRED_MODALITIES: dict[QAStage, tuple[str, ...]] = {
    QAStage.OUTLINING_BENCHMARK: ("RTSTRUCT",),
    QAStage.PLANNING_BENCHMARK: ("RTSTRUCT", "RTPLAN", "RTDOSE"),
    QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK: ("RTDOSE",),
}
"""The DICOM objects a submission of each scored stage must hold."""

SUMMABLE_STAGES: frozenset[QAStage] = frozenset({QAStage.PLANNING_BENCHMARK, QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK})
"""Stages whose RTDOSE may come as one file per beam of the plan on one grid: summed, and the sum recorded."""

_WHAT: dict[str, str] = {
    "RTSTRUCT": "the structure set (RTSTRUCT) with your contours",
    "RTPLAN": "your plan (RTPLAN)",
    "RTDOSE": "the plan dose (RTDOSE, DoseSummationType PLAN)",
}


def check_fits_case(
    submitted: LoadedSubmission, reference_frame_of_reference_uid: str | None, stage: QAStage, where: str
) -> None:
    """Check that a readable submission fits its case: the objects its stage needs, and the case's frame of
    reference (centres contour and plan on the supplied CT).

    Raises:
        SubmissionMismatchError: naming what is missing or the tag and values that differ.
    """
    present = {"RTSTRUCT": submitted.structure_set, "RTPLAN": submitted.plan, "RTDOSE": submitted.dose}
    missing = [m for m in REQUIRED_MODALITIES.get(stage, ()) if present[m] is None]
    if missing:
        raise SubmissionMismatchError(
            f"{where}: no {', '.join(missing)} file (Modality {', '.join(repr(m) for m in missing)}) in the "
            f"submission; {stage.label} submissions need " + " and ".join(_WHAT[m] for m in missing)
        )
    if submitted.frame_of_reference_uid != reference_frame_of_reference_uid:
        raise SubmissionMismatchError(
            f"{where}: (0020,0052) FrameOfReferenceUID {submitted.frame_of_reference_uid!r} "
            f"does not match the case's {reference_frame_of_reference_uid!r}; contour and plan on the supplied CT"
        )


def reference_frame_of_reference(reference_dir: Path) -> str | None:
    """The (0020,0052) *FrameOfReferenceUID* of a registered case: that of its first reference file carrying one
    (registration checked that all of them share it)."""
    for path in reference_files(reference_dir):
        uid = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["FrameOfReferenceUID"]).get(
            "FrameOfReferenceUID"
        )
        if uid:
            return str(uid)
    return None


@task
def validate_submission(submission_id: int, *, actor: str, database_url: str) -> bool:
    """Read the submission, check its cross references and that it fits the case's stage; reject it with the
    reason if not."""
    with Session(engine_for(database_url)) as session:
        sub, case = load_submission_and_case(session, submission_id)
        if sub.status is not SubmissionStatus.RECEIVED:
            return sub.status is not SubmissionStatus.REJECTED
        # The reference is trusted (built, or imported and checked, with one frame of reference): its frame of
        # reference is read from one header; a problem reading it is an error of the case, not of the submission.
        reference_frame = reference_frame_of_reference(Path(case.reference_path))
        try:
            submitted = load_submission(sub.storage_path, sum_beams=case.stage in SUMMABLE_STAGES)
            check_fits_case(submitted, reference_frame, case.stage, sub.storage_path)
        except (QAChecksError, SubmissionMismatchError) as err:
            set_status(session, sub, SubmissionStatus.REJECTED, actor=actor, reason=str(err))
            session.commit()
            return False
        notes = list(submitted.dose.notes) if submitted.dose is not None else []
        set_status(
            session, sub, SubmissionStatus.VALIDATED, actor=actor, details={"dose_notes": notes} if notes else None
        )
        session.commit()
        return True


@task
def score_submission(submission_id: int, *, actor: str, database_url: str, data_dir: str | None = None) -> int:
    """Score a validated submission by its case's QA stage (see :mod:`flows.scoring`); returns the results stored."""
    return score_stage(submission_id, actor=actor, database_url=database_url, data_dir=data_dir)


score_contours = score_submission
"""The outlining benchmark's scoring task (the same task: scoring follows the case's stage)."""


def stored_evaluation(session: Session, submission_id: int, stage: QAStage, protocol: Protocol) -> Evaluation:
    """Judge the stored results: outlining against the protocol's outlining criteria, planning and dosimetry
    against the criteria stored with their results."""
    if stage is QAStage.OUTLINING_BENCHMARK:
        results = session.exec(select(StructureResult).where(StructureResult.submission_id == submission_id)).all()
        measured = {(r.structure, r.metric): r.value for r in results if r.value is not None}
        return evaluate(protocol.outlining_criteria(), measured, present_structures={r.structure for r in results})
    rows: list[tuple[str, str, float | None, dict[str, Any]]]
    if stage is QAStage.PLANNING_BENCHMARK:
        plan_rows = session.exec(select(PlanResult).where(PlanResult.submission_id == submission_id)).all()
        rows = [(r.structure or "", r.metric, r.value, dict(r.parameters)) for r in plan_rows]
    else:
        dose_rows = session.exec(select(DoseResult).where(DoseResult.submission_id == submission_id)).all()
        rows = [(GAMMA_STRUCTURE, r.metric, r.value, dict(r.parameters)) for r in dose_rows]
    criteria = {c["id"]: criterion_from_json(c) for _, _, _, params in rows for c in params.get("criteria", [])}
    measured = {(s, m): v for s, m, v, _ in rows if v is not None}
    missing_reasons = {(s, m): str(p["reason"]) for s, m, v, p in rows if v is None and p.get("reason")}
    present = {s for s, m, v, _ in rows if m == "Volume" and v} | {GAMMA_STRUCTURE}
    present |= {c.structure for c in criteria.values() if c.key in measured or c.key in missing_reasons}
    return evaluate(list(criteria.values()), measured, present_structures=present, missing_reasons=missing_reasons)


@task
def decide_outcome(submission_id: int, *, actor: str, database_url: str, data_dir: str | None = None) -> str:
    """Apply the protocol's criteria for the case's stage to the stored results; record the automatic outcome."""
    with Session(engine_for(database_url)) as session:
        sub, case = load_submission_and_case(session, submission_id)
        if sub.status is not SubmissionStatus.SCORED:  # decided before (re-run): keep the current outcome
            current = current_outcome(session, submission_id)
            return current.level.value if current else sub.status.value
        protocol = resolve_protocol(case.protocol_id, case.protocol_version, data_dir=data_dir_or_default(data_dir))
        evaluation = stored_evaluation(session, submission_id, case.stage, protocol)
        outcome = record_decision(
            session,
            sub,
            level=evaluation.outcome.value,
            reasons=list(evaluation.reasons),
            actor=actor,
            protocol_id=protocol.id,
            protocol_version=protocol.version,
        )
        session.commit()
        return outcome.level.value


@task
def update_credentials(submission_id: int, *, actor: str, database_url: str, validity_days: int) -> list[int]:
    """Grant or withhold the technique credential and refresh the trial credentials that depend on it."""
    with Session(engine_for(database_url)) as session:
        touched = apply_outcome(session, submission_id=submission_id, actor=actor, validity_days=validity_days)
        session.commit()
        return touched


def submission_summary(submission_id: int, *, database_url: str) -> dict[str, Any]:
    """Status, attempt and current outcome of a submission, as plain data."""
    with Session(engine_for(database_url)) as session:
        sub, case = load_submission_and_case(session, submission_id)
        outcome = current_outcome(session, submission_id)
        return {
            "submission_id": submission_id,
            "case": f"{case.case_code}@{case.version}",
            "attempt": sub.attempt,
            "status": sub.status.value,
            "rejection_reason": sub.rejection_reason,
            "outcome": outcome.level.value if outcome else None,
            "reasons": list(outcome.reasons) if outcome else [],
        }


@flow(name="credential-submission", log_prints=False)
def credential_submission(
    source_dir: str,
    provider_code: str,
    case_code: str,
    case_version: str | None = None,
    actor: str = "rtqa-flow",
    database_url: str | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Ingest → validate → score → decide → credential, for one centre submission folder."""
    settings = settings_for(database_url, data_dir)
    url = settings.resolved_database_url
    submission_id = ingest_submission(
        source_dir,
        provider_code=provider_code,
        case_code=case_code,
        case_version=case_version,
        actor=actor,
        database_url=url,
        data_dir=str(settings.data_dir),
    )
    # Each task does nothing when its step is already done, so re-submitting the same files is harmless.
    if validate_submission(submission_id, actor=actor, database_url=url):
        score_submission(submission_id, actor=actor, database_url=url, data_dir=str(settings.data_dir))
        decide_outcome(submission_id, actor=actor, database_url=url, data_dir=str(settings.data_dir))
        update_credentials(
            submission_id, actor=actor, database_url=url, validity_days=settings.credential_validity_days
        )
    return submission_summary(submission_id, database_url=url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.credentialing", description=__doc__)
    parser.add_argument("source_dir")
    parser.add_argument("--provider", required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--case-version", default=None, help="Default: the newest registered version.")
    args = parser.parse_args(argv)
    result = credential_submission(args.source_dir, args.provider, args.case, args.case_version)
    print(result)


if __name__ == "__main__":
    main()
