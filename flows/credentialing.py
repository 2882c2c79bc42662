"""Credentialing flow: ingest a centre's submission, validate it, score it, decide, update credentials.

Each task takes and returns ids and paths only; every task opens its own session. ``python -m
flows.credentialing DIR --provider CODE --case CODE`` runs it on the embedded default database.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.exceptions import MissingContextError
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from benchmarks.cases import reference_files
from benchmarks.protocols import load_protocol
from flows._store import content_sha256, copy_atomically, engine_for
from models.audit import record_audit
from models.credentials import apply_outcome
from models.enums import OutcomeLevel, OutcomeSource, SubmissionStatus
from models.outcomes import current_outcome
from models.settings import Settings
from models.tables import BenchmarkCase, Outcome, Provider, StructureResult, Submission
from models.types import utcnow
from qa_checks.dicom_io import load_submission
from qa_checks.errors import QAChecksError
from qa_checks.outlining import score_outlining
from qa_checks.protocol import evaluate


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a flow or task run; the module logger when a task body is called directly."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


class IngestError(ValueError):
    """A submission cannot be taken in (unknown provider or case, empty folder); nothing was stored."""


class SubmissionMismatchError(ValueError):
    """A submission's files are readable but do not fit the case; the submission is rejected with this reason."""


def _retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only transient I/O failures (file system, database connection), never bad input."""
    try:
        state.result()
    except (OSError, OperationalError):
        return True
    except Exception:
        return False
    return False


def settings_for(database_url: str | None, data_dir: str | None) -> Settings:
    """Settings from the environment, overridden by explicit flow parameters."""
    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if data_dir:
        overrides["data_dir"] = Path(data_dir)
    return Settings(**overrides)


def _set_status(
    session: Session,
    sub: Submission,
    status: SubmissionStatus,
    *,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    before = {"status": sub.status.value}
    sub.status = status
    sub.rejection_reason = reason if status is SubmissionStatus.REJECTED else None
    sub.updated_at = utcnow()
    session.add(sub)
    record_audit(
        session,
        actor=actor,
        action=f"submission.{status.value}",
        subject_type="submission",
        subject_id=sub.id or 0,
        before=before,
        after={"status": status.value, **(details or {})},
        reason=reason,
    )


def _load(session: Session, submission_id: int) -> tuple[Submission, BenchmarkCase]:
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise LookupError(f"submission {submission_id} does not exist")
    case = session.get(BenchmarkCase, sub.case_id)
    assert case is not None
    return sub, case


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_on_io)
def ingest_submission(
    source_dir: str,
    *,
    provider_code: str,
    case_code: str,
    case_version: str,
    actor: str,
    database_url: str,
    data_dir: str,
) -> int:
    """Store the upload under its content hash and record it as received; returns the submission id.

    The same files from the same provider for the same case give back the existing submission. A failure leaves
    neither a row nor a stored folder.
    """
    source = Path(source_dir)
    sha = content_sha256(source)
    with Session(engine_for(database_url)) as session:
        provider = session.exec(select(Provider).where(Provider.code == provider_code)).first()
        if provider is None:
            raise IngestError(f"unknown provider code {provider_code!r} (see `rtqa providers`)")
        case = session.exec(
            select(BenchmarkCase).where(BenchmarkCase.case_code == case_code, BenchmarkCase.version == case_version)
        ).first()
        if case is None:
            raise IngestError(f"unknown benchmark case {case_code!r} version {case_version!r}")
        existing = session.exec(
            select(Submission).where(
                Submission.provider_id == provider.id,
                Submission.case_id == case.id,
                Submission.content_sha256 == sha,
            )
        ).first()
        if existing is not None:
            assert existing.id is not None
            return existing.id
        destination = Path(data_dir) / "submissions" / provider_code / f"{case_code}@{case_version}" / sha
        created = copy_atomically(source, destination)
        try:
            previous = session.exec(
                select(Submission.attempt)
                .where(Submission.provider_id == provider.id, Submission.case_id == case.id)
                .order_by(col(Submission.attempt).desc())
            ).first()
            assert provider.id is not None and case.id is not None
            sub = Submission(
                provider_id=provider.id,
                case_id=case.id,
                attempt=(previous or 0) + 1,
                content_sha256=sha,
                status=SubmissionStatus.RECEIVED,
                storage_path=str(destination.resolve()),
                submitted_by=actor,
            )
            session.add(sub)
            session.flush()
            record_audit(
                session,
                actor=actor,
                action="submission.received",
                subject_type="submission",
                subject_id=sub.id or 0,
                after={
                    "provider": provider_code,
                    "case": f"{case_code}@{case_version}",
                    "attempt": sub.attempt,
                    "content_sha256": sha,
                },
            )
            session.commit()
        except BaseException:
            session.rollback()
            if created:
                shutil.rmtree(destination, ignore_errors=True)
            raise
        assert sub.id is not None
        return sub.id


@task
def validate_submission(submission_id: int, *, actor: str, database_url: str) -> bool:
    """Read the submission, check its cross references and that it fits the case; reject it with the reason if not."""
    with Session(engine_for(database_url)) as session:
        sub, case = _load(session, submission_id)
        if sub.status is not SubmissionStatus.RECEIVED:
            return sub.status is not SubmissionStatus.REJECTED
        # The reference is trusted: a problem reading it is an error of the case, not of the submission.
        reference = load_submission(reference_files(Path(case.reference_path)))
        try:
            submitted = load_submission(sub.storage_path)
            if submitted.structure_set is None:
                raise SubmissionMismatchError(
                    f"{sub.storage_path}: no RTSTRUCT file (Modality 'RTSTRUCT') in the submission"
                )
            if submitted.frame_of_reference_uid != reference.frame_of_reference_uid:
                raise SubmissionMismatchError(
                    f"{sub.storage_path}: (0020,0052) FrameOfReferenceUID {submitted.frame_of_reference_uid!r} "
                    f"does not match the case's {reference.frame_of_reference_uid!r}; contour on the supplied CT"
                )
        except (QAChecksError, SubmissionMismatchError) as err:
            _set_status(session, sub, SubmissionStatus.REJECTED, actor=actor, reason=str(err))
            session.commit()
            return False
        _set_status(session, sub, SubmissionStatus.VALIDATED, actor=actor)
        session.commit()
        return True


@task
def score_contours(submission_id: int, *, actor: str, database_url: str) -> int:
    """Contour metrics per protocol structure against the reference, on the reference CT grid.

    Returns the number of structures scored.
    """
    with Session(engine_for(database_url)) as session:
        sub, case = _load(session, submission_id)
        if sub.status is not SubmissionStatus.VALIDATED:  # already scored (re-run) or not scorable
            return len(
                session.exec(select(StructureResult).where(StructureResult.submission_id == submission_id)).all()
            )
        protocol = load_protocol(case.protocol_id)
        submitted = load_submission(sub.storage_path)
        reference = load_submission(reference_files(Path(case.reference_path)))
        assert submitted.structure_set is not None and reference.structure_set is not None and reference.ct is not None
        structures = [c.structure for c in protocol.outlining_criteria()]
        score = score_outlining(reference.structure_set, submitted.structure_set, reference.ct, structures=structures)
        base = {
            "grid": "reference CT",
            "spacing_mm": list(score.spacing_mm),
            "rasterisation": "voxel centre inside polygon, even-odd rule",
            "surfaces": "surfels of the voxel masks (surface-distance definition); HD95 = max of directed 95th",
        }
        for s in score.scores:
            params = {**base, "name_match": s.match_reason, "tolerance_mm": s.surface.tolerance_mm}
            for metric, (value, unit) in s.measurements().items():
                session.add(
                    StructureResult(
                        submission_id=submission_id,
                        structure=s.structure,
                        submitted_name=s.submitted_name,
                        metric=metric,
                        value=value,
                        unit=unit,
                        parameters=params,
                    )
                )
        before = sub.status
        # The reviewer sees how names were mapped: matches sit in each result's parameters, the rest here.
        _set_status(
            session,
            sub,
            SubmissionStatus.SCORED,
            actor=actor,
            details={
                "missing": list(score.missing),
                "unmatched_submitted": list(score.unmatched_submitted),
                "ambiguous": {name: list(candidates) for name, candidates in score.ambiguous},
            },
        )
        session.commit()
        _logger().info(
            "submission %s scored (%s -> scored): %d structures, missing %s",
            submission_id,
            before.value,
            len(score.scores),
            list(score.missing),
        )
        return len(score.scores)


@task
def decide_outcome(submission_id: int, *, actor: str, database_url: str) -> str:
    """Apply the protocol's outlining criteria to the stored results; record the automatic outcome."""
    with Session(engine_for(database_url)) as session:
        sub, case = _load(session, submission_id)
        if sub.status is not SubmissionStatus.SCORED:  # decided before (re-run): keep the current outcome
            current = current_outcome(session, submission_id)
            return current.level.value if current else sub.status.value
        protocol = load_protocol(case.protocol_id)
        results = session.exec(select(StructureResult).where(StructureResult.submission_id == submission_id)).all()
        measured = {(r.structure, r.metric): r.value for r in results if r.value is not None}
        present = {r.structure for r in results}
        evaluation = evaluate(protocol.outlining_criteria(), measured, present_structures=present)
        outcome = Outcome(
            submission_id=submission_id,
            level=OutcomeLevel(evaluation.outcome.value),
            reasons=list(evaluation.reasons),
            source=OutcomeSource.AUTOMATIC,
            decided_by=actor,
            protocol_id=protocol.id,
            protocol_version=protocol.version,
        )
        session.add(outcome)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="outcome.decided",
            subject_type="submission",
            subject_id=submission_id,
            after={"outcome_id": outcome.id, "level": outcome.level.value, "reasons": list(evaluation.reasons)},
        )
        _set_status(session, sub, SubmissionStatus.DECIDED, actor=actor)
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
        sub, case = _load(session, submission_id)
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
    case_version: str = "1.0",
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
        score_contours(submission_id, actor=actor, database_url=url)
        decide_outcome(submission_id, actor=actor, database_url=url)
        update_credentials(
            submission_id, actor=actor, database_url=url, validity_days=settings.credential_validity_days
        )
    return submission_summary(submission_id, database_url=url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.credentialing", description=__doc__)
    parser.add_argument("source_dir")
    parser.add_argument("--provider", required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--case-version", default="1.0")
    args = parser.parse_args(argv)
    result = credential_submission(args.source_dir, args.provider, args.case, args.case_version)
    print(result)


if __name__ == "__main__":
    main()
