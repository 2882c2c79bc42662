"""Naming of per-structure task runs, the inline path without Prefect, and log lines naming submission and
provider. (Task runs recorded under a Prefect server: tests/flows/test_credentialing.py::TestFlowUnderPrefect.)"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from flows.part_tasks import without_part_tasks
from flows.steps import SubmissionLog, submission_logger
from flows.structure_tasks import run_structure, structure_task_name
from models.enums import QAStage, SubmissionStatus
from models.tables import BenchmarkCase, Provider, Submission, Technique


@pytest.mark.parametrize(("structure", "name"), [("PTV", "score-contours[PTV]"), ("Lung_L", "score-contours[Lung_L]")])
def test_structure_task_name(structure: str, name: str) -> None:
    assert structure_task_name(structure) == name


def test_outside_a_flow_run_the_comparison_is_called_directly() -> None:
    from prefect.context import TaskRunContext

    def compute() -> str:
        assert TaskRunContext.get() is None  # no task run was made
        return "scored"

    assert run_structure("PTV", compute) == "scored"
    with without_part_tasks():
        assert run_structure("PTV", compute) == "scored"


def test_submission_log_lines_name_the_submission_and_provider(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with Session(engine) as session:
        provider = session.exec(select(Provider).where(Provider.code == "the-christie")).one()
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        case = BenchmarkCase(
            case_code="lung-sabr-outlining-mini",
            version="1.0",
            title="mini",
            stage=QAStage.OUTLINING_BENCHMARK,
            technique_id=lung.id or 0,
            protocol_id="uk-lung-sabr",
            protocol_version="1.0",
            reference_path="/nowhere",
            reference_sha256="0" * 64,
        )
        session.add(case)
        session.flush()
        sub = Submission(
            provider_id=provider.id or 0,
            case_id=case.id or 0,
            attempt=2,
            content_sha256="1" * 64,
            storage_path="/nowhere",
            submitted_by="tests",
            status=SubmissionStatus.RECEIVED,
        )
        session.add(sub)
        session.commit()
        assert sub.id is not None
        log = submission_logger(session, sub.id)
    assert isinstance(log, SubmissionLog)
    with caplog.at_level(logging.INFO, logger="flows"):
        log.info("validated in %.1f s", 1.25)
    [record] = [r for r in caplog.records if r.name == "flows"]
    assert record.getMessage() == f"submission {sub.id} (the-christie, lung-sabr-outlining-mini@1.0, attempt 2): " + (
        "validated in 1.2 s"
    )
    assert (record.submission_id, record.provider) == (sub.id, "the-christie")  # type: ignore[attr-defined]
