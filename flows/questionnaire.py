"""The facility questionnaire stage: a centre's answers are stored, checked and decided like any other submission.

A technique's form (``benchmarks/questionnaires/<technique>.yaml``) is registered as a case of the stage
``facility_questionnaire`` (code ``questionnaire-<technique>``, version = the form's version; its reference is the
form file). Answers become a submission of that case (the answers as ``answers.json`` under the data directory,
attempt numbers, audit), are evaluated by :func:`benchmarks.questionnaires.evaluate_answers` (required answers
present, each answer within the protocol's levels), and the outcome updates the technique credential. Malformed
answers (unknown question, wrong type, out of range) are refused before anything is stored.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from benchmarks.questionnaire_forms import QUESTIONNAIRE_DIR
from benchmarks.questionnaires import Questionnaire, QuestionnaireEvaluation, evaluate_answers, load_questionnaire
from flows._store import content_sha256, copy_atomically, engine_for
from flows.deferred import flow
from flows.runtime import with_flow_settings
from flows.steps import add_case, new_submission, record_decision, set_status
from models.credentials import apply_outcome
from models.enums import QAStage, SubmissionStatus
from models.settings import Settings
from models.tables import BenchmarkCase, Outcome, Provider, Submission, Technique

ANSWERS_NAME = "answers.json"
"""File name of the stored answers inside a questionnaire submission's folder."""


class QuestionnaireSubmissionError(ValueError):
    """A questionnaire cannot be taken in (unknown provider or technique); nothing was stored."""


def questionnaire_case_code(technique: str) -> str:
    """Case code of a technique's facility questionnaire, e.g. ``"questionnaire-sabr_lung"``."""
    return f"questionnaire-{technique}"


def register_questionnaire(session: Session, form: Questionnaire, *, actor: str) -> BenchmarkCase:
    """The case standing for ``form`` (registered, audited, on first use; idempotent by code and version)."""
    code = questionnaire_case_code(form.technique)
    case = session.exec(
        select(BenchmarkCase).where(BenchmarkCase.case_code == code, BenchmarkCase.version == form.version)
    ).first()
    if case is not None:
        return case
    technique = session.exec(select(Technique).where(Technique.code == form.technique)).first()
    if technique is None or technique.id is None:
        raise QuestionnaireSubmissionError(f"unknown technique {form.technique!r}; run `rtqa db init`")
    path = (QUESTIONNAIRE_DIR / f"{form.technique}.yaml").resolve()
    case = BenchmarkCase(
        case_code=code,
        version=form.version,
        title=form.title,
        technique_id=technique.id,
        stage=QAStage.FACILITY_QUESTIONNAIRE,
        protocol_id=code,
        protocol_version=form.version,
        reference_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        reference_path=str(path),
    )
    add_case(session, case, actor=actor)
    return case


@dataclass(frozen=True)
class QuestionnaireResult:
    """What a questionnaire submission came to."""

    submission_id: int
    attempt: int
    outcome: str
    reasons: tuple[str, ...]
    created: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "submission_id": self.submission_id,
            "attempt": self.attempt,
            "status": SubmissionStatus.DECIDED.value,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "created": self.created,
        }


def _store_answers(
    evaluation: QuestionnaireEvaluation, data_dir: Path, provider: str, case: str
) -> tuple[str, Path, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / ANSWERS_NAME).write_text(json.dumps(evaluation.as_dict()["answers"], indent=2, sort_keys=True))
        sha = content_sha256(folder)
        destination = data_dir / "submissions" / provider / case / sha
        created = copy_atomically(folder, destination)
    return sha, destination, created


def submit_answers(
    provider_code: str,
    technique: str,
    answers: dict[str, Any],
    *,
    actor: str,
    database_url: str,
    data_dir: Path,
    validity_days: int,
    as_of: date | None = None,
) -> QuestionnaireResult:
    """Evaluate, store and decide a centre's answers, then update its credentials; idempotent for equal answers.

    Raises:
        QuestionnaireError: malformed answers (every problem named); nothing stored.
        QuestionnaireFileError: no form for ``technique``.
        QuestionnaireSubmissionError: unknown provider.
    """
    form = load_questionnaire(technique)
    evaluation = evaluate_answers(form, answers, as_of=as_of)
    with Session(engine_for(database_url)) as session:
        provider = session.exec(select(Provider).where(Provider.code == provider_code)).first()
        if provider is None or provider.id is None:
            raise QuestionnaireSubmissionError(f"unknown provider code {provider_code!r} (see `rtqa providers`)")
        case = register_questionnaire(session, form, actor=actor)
        assert case.id is not None
        case_label = f"{case.case_code}@{case.version}"
        sha, destination, created = _store_answers(evaluation, data_dir, provider_code, case_label)
        try:
            existing = session.exec(
                select(Submission).where(
                    Submission.provider_id == provider.id,
                    Submission.case_id == case.id,
                    Submission.content_sha256 == sha,
                )
            ).first()
            if existing is not None and existing.id is not None:
                session.commit()  # the case registration, if it was new
                outcome = session.exec(
                    select(Outcome).where(Outcome.submission_id == existing.id, col(Outcome.is_current).is_(True))
                ).first()
                return QuestionnaireResult(
                    existing.id,
                    existing.attempt,
                    outcome.level.value if outcome else existing.status.value,
                    tuple(outcome.reasons) if outcome else (),
                    created=False,
                )
            sub = new_submission(session, provider=provider, case=case, sha=sha, storage_path=destination, actor=actor)
            set_status(session, sub, SubmissionStatus.VALIDATED, actor=actor)
            set_status(
                session,
                sub,
                SubmissionStatus.SCORED,
                actor=actor,
                details={"evaluated_on": evaluation.evaluated_on.isoformat(), "form": case_label},
            )
            outcome = record_decision(
                session,
                sub,
                level=evaluation.outcome.value,
                reasons=list(evaluation.reasons),
                actor=actor,
                protocol_id=case.protocol_id,
                protocol_version=case.protocol_version,
            )
            apply_outcome(session, submission_id=sub.id or 0, actor=actor, validity_days=validity_days)
            session.commit()
        except BaseException:
            session.rollback()
            if created:
                shutil.rmtree(destination, ignore_errors=True)
            raise
        assert sub.id is not None
        return QuestionnaireResult(sub.id, sub.attempt, outcome.level.value, tuple(evaluation.reasons), created=True)


@flow(name="facility-questionnaire")
def facility_questionnaire(
    provider_code: str,
    technique: str,
    answers: dict[str, Any],
    actor: str = "rtqa-flow",
) -> dict[str, Any]:
    """Submit a centre's facility questionnaire answers (see :func:`submit_answers`); the database and data
    directory come from the environment (see :mod:`flows.runtime`)."""
    return with_flow_settings(_submit, provider_code, technique, answers, actor)  # type: ignore[no-any-return]


def _submit(settings: Settings, provider_code: str, technique: str, answers: dict[str, Any], actor: str) -> Any:
    return submit_answers(
        provider_code,
        technique,
        answers,
        actor=actor,
        database_url=settings.resolved_database_url,
        data_dir=settings.data_dir,
        validity_days=settings.credential_validity_days,
    ).as_dict()
