"""Credentialing flow: ingest a centre's submission, validate it, score it, decide, update credentials.

Scoring follows the case's QA stage (see :mod:`flows.scoring`). Each task takes and returns ids and paths only;
every task opens its own session. The flow body (:func:`credential_steps`) runs as a Prefect flow run or inline
(:mod:`flows.runtime`); :func:`run_credential_submission` picks by the settings. ``python -m flows.credentialing DIR
--provider CODE --case CODE`` runs it on the configured database.

Task runs are named by what they do and on what (``ingest[the-christie lung-sabr-outlining-mini]``,
``validate[submission 3]``, ``score-contours[submission 3]``, ``decide[submission 3]``); every log line names the
submission and its provider; each flow run publishes a markdown artifact with the outcome and the criteria table
(:mod:`flows.run_report`).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from benchmarks.cases import reference_files
from benchmarks.protocols import Protocol
from flows._store import content_sha256, copy_atomically, engine_for
from flows.crashpoints import crash_point
from flows.deferred import flow, task
from flows.evaluation import evaluate_run
from flows.patient_identity import PatientIdentityError, UnreadableHeaderError, refuse_other_identity
from flows.protocol_store import resolve_protocol
from flows.runtime import SettingsError, call, failed_run, flow_settings, require_database, run_flow
from flows.scoring import score_stage
from flows.steps import (
    data_dir_or_default,
    load_submission_and_case,
    logger,
    new_submission,
    record_decision,
    retry_on_io,
    set_status,
    submission_logger,
)
from flows.submission_reads import read_submission, reading_once
from models.credentials import apply_outcome, lock_provider_of_submission
from models.enums import QAStage, SubmissionStatus
from models.outcomes import current_outcome
from models.scoring_runs import current_run
from models.settings import Settings, get_settings
from models.tables import BenchmarkCase, Provider, Submission, Technique
from qa_checks.dicom_io import LoadedSubmission
from qa_checks.errors import QAChecksError
from qa_checks.protocol import Evaluation

__all__ = [
    "SCORE_TASK_NAMES",
    "IngestError",
    "Ingested",
    "SubmissionMismatchError",
    "credential_steps",
    "credential_submission",
    "decide_outcome",
    "ingest_submission",
    "run_credential_submission",
    "score_contours",
    "score_submission",
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
                    crash_point("ingest:committed")
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


@task(
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io,
    task_run_name="ingest[{provider_code} {case_code}]",
)
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
    ingested = store_submission(
        source_dir,
        provider_code=provider_code,
        case_code=case_code,
        case_version=case_version,
        actor=actor,
        database_url=database_url,
        data_dir=data_dir,
    )
    with Session(engine_for(database_url)) as session:
        log = submission_logger(session, ingested.submission_id)
    log.info("received" if ingested.created else "already received (the same files)")
    return ingested.submission_id


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


@task(task_run_name="validate[submission {submission_id}]")
def validate_submission(submission_id: int, *, actor: str, database_url: str) -> bool:
    """Read the submission, check its cross references and that it fits the case's stage; reject it with the
    reason if not."""
    with Session(engine_for(database_url)) as session:
        sub, case = load_submission_and_case(session, submission_id)
        log = submission_logger(session, submission_id)
        if sub.status is not SubmissionStatus.RECEIVED:
            log.info("already %s", sub.status.value)
            return sub.status is not SubmissionStatus.REJECTED
        # The reference is trusted (built, or imported and checked, with one frame of reference): its frame of
        # reference is read from one header; a problem reading it is an error of the case, not of the submission.
        reference_frame = reference_frame_of_reference(Path(case.reference_path))
        try:
            submitted = read_submission(sub.storage_path, sum_beams=case.stage in SUMMABLE_STAGES)
            check_fits_case(submitted, reference_frame, case.stage, sub.storage_path)
        except (QAChecksError, SubmissionMismatchError) as err:
            set_status(session, sub, SubmissionStatus.REJECTED, actor=actor, reason=str(err))
            session.commit()
            log.info("rejected: %s", sub.rejection_reason)
            return False
        notes = list(submitted.dose.notes) if submitted.dose is not None else []
        set_status(
            session, sub, SubmissionStatus.VALIDATED, actor=actor, details={"dose_notes": notes} if notes else None
        )
        session.flush()
        crash_point("validate:before-commit")
        session.commit()
        crash_point("validate:committed")
        log.info("validated")
        return True


SCORE_TASK_NAMES: dict[QAStage, str] = {
    QAStage.OUTLINING_BENCHMARK: "score-contours",
    QAStage.PLANNING_BENCHMARK: "score-plan",
    QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK: "gamma-check",
}
"""Name of the scoring task run of each stage (``score-contours[submission 3]``)."""


@task(task_run_name="score[submission {submission_id}]")
def score_submission(submission_id: int, *, actor: str, database_url: str, data_dir: str | None = None) -> int:
    """Score a validated submission by its case's QA stage (see :mod:`flows.scoring`); returns the results stored."""
    stored = score_stage(submission_id, actor=actor, database_url=database_url, data_dir=data_dir)
    with Session(engine_for(database_url)) as session:
        log = submission_logger(session, submission_id)
        sub, _ = load_submission_and_case(session, submission_id)
        log.info("%d results stored, status %s", stored, sub.status.value)
    return stored


score_contours = score_submission
"""The outlining benchmark's scoring task (the same task: scoring follows the case's stage)."""


def stored_evaluation(session: Session, submission_id: int, stage: QAStage, protocol: Protocol) -> Evaluation:
    """Judge the submission's current scoring run's results (:func:`flows.evaluation.evaluate_run`)."""
    run = current_run(session, submission_id)
    if run is None:
        raise LookupError(f"submission {submission_id} has no scoring run")
    return evaluate_run(session, run.id or 0, stage, protocol)


@task(task_run_name="decide[submission {submission_id}]")
def decide_outcome(
    submission_id: int,
    *,
    actor: str,
    database_url: str,
    data_dir: str | None = None,
    validity_days: int | None = None,
) -> str:
    """Apply the protocol's criteria for the case's stage to the stored results; record the automatic outcome and
    re-evaluate the credentials it bears on (:func:`models.credentials.apply_outcome`), in one transaction.

    A decision is never committed without its credentials: a process killed between the two would otherwise leave
    a decided submission that nothing re-evaluates (a restarted runner resumes only unfinished submissions).
    ``validity_days``: default ``Settings().credential_validity_days``.
    """
    if validity_days is None:
        validity_days = Settings().credential_validity_days
    with Session(engine_for(database_url)) as session:
        # The locks before anything is read or audited, in the order every credential update takes them (the audit
        # chain's head, then the provider): a second decision of the same submission waits and finds it decided.
        lock_provider_of_submission(session, submission_id)
        sub, case = load_submission_and_case(session, submission_id)
        log = submission_logger(session, submission_id)
        if sub.status is not SubmissionStatus.SCORED:  # decided before (re-run): keep the current outcome
            current = current_outcome(session, submission_id)
            log.info("already %s", sub.status.value)
            return current.level.value if current else sub.status.value
        run = current_run(session, submission_id)
        if run is None:
            raise LookupError(f"submission {submission_id} is scored but has no scoring run")
        protocol = resolve_protocol(run.protocol_id, run.protocol_version, data_dir=data_dir_or_default(data_dir))
        evaluation = evaluate_run(session, run.id or 0, case.stage, protocol)
        outcome = record_decision(
            session,
            sub,
            level=evaluation.outcome.value,
            reasons=list(evaluation.reasons),
            actor=actor,
            protocol_id=protocol.id,
            protocol_version=protocol.version,
        )
        run.outcome_id = outcome.id
        session.add(run)
        apply_outcome(session, submission_id=submission_id, actor=actor, validity_days=validity_days)
        session.flush()
        crash_point("decide:before-commit")
        session.commit()
        crash_point("decide:committed")
        log.info("decided %s (protocol %s@%s)", outcome.level.value, protocol.id, protocol.version)
        return outcome.level.value


@task(task_run_name="update-credentials[submission {submission_id}]")
def update_credentials(submission_id: int, *, actor: str, database_url: str, validity_days: int) -> list[int]:
    """Grant or withhold the technique credential and refresh the trial credentials that depend on it.

    :func:`decide_outcome` has done so with the decision; this evaluates them again (nothing changes, nothing is
    audited, unless something else changed since), e.g. for a submission decided before decisions did."""
    with Session(engine_for(database_url)) as session:
        touched = apply_outcome(session, submission_id=submission_id, actor=actor, validity_days=validity_days)
        session.flush()
        crash_point("credential:before-commit")
        session.commit()
        crash_point("credential:committed")
        log = submission_logger(session, submission_id)
        _, case = load_submission_and_case(session, submission_id)
        technique = session.get(Technique, case.technique_id)
        log.info(
            "credentials re-evaluated (%s and its trials: %d rows)",
            technique.code if technique else case.technique_id,
            len(touched),
        )
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


def credential_steps(
    settings: Settings,
    source_dir: str,
    provider_code: str,
    case_code: str,
    case_version: str | None = None,
    actor: str = "rtqa-flow",
) -> dict[str, Any]:
    """The flow's body: ingest → validate → score → decide → credential, for one centre submission folder.

    Each task does nothing when its step is already done, so re-submitting the same files (or re-running a
    submission that stopped half-way) is harmless. The stored files are read once for validation and scoring
    (:func:`flows.submission_reads.reading_once`).
    """
    url, data = settings.resolved_database_url, str(settings.data_dir)
    with reading_once():  # validation and scoring read the stored files once
        submission_id = call(
            ingest_submission,
            source_dir,
            provider_code=provider_code,
            case_code=case_code,
            case_version=case_version,
            actor=actor,
            database_url=url,
            data_dir=data,
        )
        if call(validate_submission, submission_id, actor=actor, database_url=url):
            with Session(engine_for(url)) as session:
                _, case = load_submission_and_case(session, submission_id)
            scoring = f"{SCORE_TASK_NAMES.get(case.stage, 'score')}[submission {submission_id}]"
            call(score_submission, submission_id, actor=actor, database_url=url, data_dir=data, name=scoring)
            call(
                decide_outcome,
                submission_id,
                actor=actor,
                database_url=url,
                data_dir=data,
                validity_days=settings.credential_validity_days,
            )
            call(
                update_credentials,
                submission_id,
                actor=actor,
                database_url=url,
                validity_days=settings.credential_validity_days,
            )
    return submission_summary(submission_id, database_url=url)


@flow(name="credential-submission", log_prints=False)
def credential_submission(
    source_dir: str,
    provider_code: str,
    case_code: str,
    case_version: str | None = None,
    actor: str = "rtqa-flow",
) -> dict[str, Any]:
    """Ingest → validate → score → decide → credential, for one centre submission folder.

    The database and data directory come from the environment (``RTQA_DATABASE_URL``, ``RTQA_DATA_DIR``; see
    :mod:`flows.runtime`), never from parameters. Publishes the outcome as a markdown artifact.
    """
    from flows.run_report import publish_submission_artifact

    try:
        settings = flow_settings()
    except SettingsError as err:
        return failed_run(err)  # type: ignore[no-any-return]
    result = credential_steps(settings, source_dir, provider_code, case_code, case_version, actor)
    try:
        publish_submission_artifact(result["submission_id"], settings)
    except Exception as err:  # the decision is stored: a missing artifact must not fail the run
        logger().warning(
            "submission %s: no artifact published (%s: %s)", result["submission_id"], type(err).__name__, err
        )
    return result


def run_credential_submission(
    settings: Settings,
    source_dir: str,
    provider_code: str,
    case_code: str,
    case_version: str | None = None,
    actor: str = "rtqa-flow",
) -> dict[str, Any]:
    """Run :func:`credential_submission` for ``settings``: a Prefect flow run or inline (``Settings.flow_runs``)."""
    return run_flow(
        credential_submission, credential_steps, settings, source_dir, provider_code, case_code, case_version, actor
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.credentialing", description=__doc__)
    parser.add_argument("source_dir")
    parser.add_argument("--provider", required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--case-version", default=None, help="Default: the newest registered version.")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        require_database(settings.resolved_database_url)
    except SettingsError as err:
        parser.exit(2, f"error: {err}\n")
    print(run_credential_submission(settings, args.source_dir, args.provider, args.case, args.case_version))


if __name__ == "__main__":
    main()
