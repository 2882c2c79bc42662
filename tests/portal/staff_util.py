"""Helpers for the QA staff page tests: signing a TestClient in, reading the page's CSRF token, and a small set of
submissions with outcomes, results and a name mapping written straight to the database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.audit import record_audit
from models.enums import OutcomeLevel, OutcomeSource, QAStage, SubmissionStatus
from models.tables import (
    BenchmarkCase,
    Outcome,
    PlanResult,
    Provider,
    StructureResult,
    Submission,
    Technique,
)
from tests.portal.conftest import OTHER, OWN

DECIDED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def sign_in(client: TestClient, token: str) -> None:
    """Sign ``client`` in through the sign-in form (its cookie jar then holds the session)."""
    client.cookies.clear()
    r = client.post("/sign-in", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text


def csrf(client: TestClient, page: str = "/sign-in") -> str:
    """The CSRF token of the signed-in session, read from a page."""
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get(page).text)
    assert match, "signed-in pages carry the CSRF token"
    return match.group(1)


@dataclass(frozen=True)
class Queue:
    """Submission ids: the-christie's outlining attempts 1 and 2 (both decided, with a mapping), its lung planning
    attempt 1 (decided, with criteria), leeds' spine outlining attempt 1 (decided) and the-christie's received
    outlining attempt 3 at the prostate case."""

    first: int
    second: int
    planning: int
    leeds: int
    received: int


def _case(session: Session, code: str, technique: str, stage: QAStage) -> BenchmarkCase:
    tech = session.exec(select(Technique).where(Technique.code == technique)).one()
    case = BenchmarkCase(
        case_code=code,
        version="1.0",
        title=f"{code} title",
        technique_id=tech.id or 0,
        stage=stage,
        protocol_id="uk-lung-sabr",
        protocol_version="1.0",
        reference_sha256="0" * 64,
        reference_path="/x",
    )
    session.add(case)
    session.flush()
    return case


def add_submission(
    session: Session,
    *,
    provider: str,
    case: BenchmarkCase,
    attempt: int,
    level: OutcomeLevel | None,
    reasons: tuple[str, ...] = (),
    received_at: datetime = DECIDED_AT,
) -> int:
    """A submission (decided with an automatic ``level``, or just received when None)."""
    prov = session.exec(select(Provider).where(Provider.code == provider)).one()
    sub = Submission(
        provider_id=prov.id or 0,
        case_id=case.id or 0,
        attempt=attempt,
        content_sha256=f"{case.id:032d}{attempt:016d}{prov.id:016d}",
        status=SubmissionStatus.DECIDED if level is not None else SubmissionStatus.RECEIVED,
        storage_path="/x",
        submitted_by="t",
        received_at=received_at,
    )
    session.add(sub)
    session.flush()
    if level is not None:
        session.add(
            Outcome(
                submission_id=sub.id or 0,
                level=level,
                reasons=list(reasons),
                source=OutcomeSource.AUTOMATIC,
                decided_by="rtqa-flow",
                protocol_id="uk-lung-sabr",
                protocol_version="1.0",
                decided_at=received_at,
            )
        )
    session.flush()
    return sub.id or 0


def add_mapping(session: Session, submission_id: int) -> None:
    """Outlining results for two structures (one by synonym, one exact) and the scorer's record of an unmatched,
    an ambiguous and a missing name."""
    for structure, submitted, why in (("SpinalCord", "Cord", "synonym of SpinalCord"), ("PTV", "PTV", "exact")):
        for metric, value, unit in (("dice", 0.91, "1"), ("hd95_mm", 2.5, "mm")):
            session.add(
                StructureResult(
                    submission_id=submission_id,
                    structure=structure,
                    submitted_name=submitted,
                    metric=metric,
                    value=value,
                    unit=unit,
                    parameters={"name_match": why},
                )
            )
    record_audit(
        session,
        actor="rtqa-flow",
        action="submission.scored",
        subject_type="submission",
        subject_id=submission_id,
        after={
            "status": "scored",
            "unmatched_submitted": ["Zebra"],
            "ambiguous": {"Lung": ["Lung_L", "Lung_R"]},
            "missing": ["Heart"],
        },
    )
    session.flush()


def add_plan_results(session: Session, submission_id: int) -> None:
    """A target measured against a criterion it misses, and an organ mapped by synonym."""
    criterion = {
        "id": "ptv-v100",
        "structure": "PTV",
        "metric": "V100%",
        "direction": ">=",
        "per_protocol": 95.0,
        "acceptable": 90.0,
        "unit": "%",
        "description": "PTV V100%",
    }
    session.add(
        PlanResult(
            submission_id=submission_id,
            structure="PTV",
            metric="V100%",
            value=87.5,
            unit="%",
            parameters={
                "submitted_name": "PTV_5400",
                "prescription_source": "RTPLAN dose reference 1",
                "criteria": [criterion],
            },
        )
    )
    session.add(
        PlanResult(
            submission_id=submission_id,
            structure="Esophagus",
            metric="Dmax",
            value=20.0,
            unit="Gy",
            parameters={"submitted_name": "Oesophagus", "name_match": "synonym of Esophagus"},
        )
    )
    session.flush()


def build_queue(engine: Engine, *, with_received: bool = True) -> Queue:
    """The submissions of :class:`Queue`, committed; without the received one (``received`` is then 0) for a live
    server, whose runner would take it up."""
    with Session(engine) as session:
        outlining = _case(session, "lung-outlining", "sabr_lung", QAStage.OUTLINING_BENCHMARK)
        planning = _case(session, "lung-planning", "sabr_lung", QAStage.PLANNING_BENCHMARK)
        spine = _case(session, "spine-outlining", "sabr_spine", QAStage.OUTLINING_BENCHMARK)
        prostate = _case(session, "prostate-outlining", "sabr_prostate", QAStage.OUTLINING_BENCHMARK)
        first = add_submission(
            session,
            provider=OWN,
            case=outlining,
            attempt=1,
            level=OutcomeLevel.UNACCEPTABLE_VARIATION,
            reasons=("Dice of PTV 0.61 is below the acceptable level 0.7",),
            received_at=datetime(2026, 3, 1, tzinfo=UTC),
        )
        second = add_submission(
            session,
            provider=OWN,
            case=outlining,
            attempt=2,
            level=OutcomeLevel.UNACCEPTABLE_VARIATION,
            reasons=("Dice of PTV 0.65 is below the acceptable level 0.7",),
            received_at=datetime(2026, 3, 3, tzinfo=UTC),
        )
        plan = add_submission(
            session,
            provider=OWN,
            case=planning,
            attempt=1,
            level=OutcomeLevel.UNACCEPTABLE_VARIATION,
            reasons=("V100% of PTV 87.5 % is below the acceptable level 90 %",),
            received_at=datetime(2026, 3, 4, tzinfo=UTC),
        )
        leeds = add_submission(
            session,
            provider=OTHER,
            case=spine,
            attempt=1,
            level=OutcomeLevel.PER_PROTOCOL,
            reasons=("Leeds-only reason: Dice of SpinalCord 0.95",),
            received_at=datetime(2026, 3, 5, tzinfo=UTC),
        )
        received = (
            add_submission(
                session,
                provider=OWN,
                case=prostate,
                attempt=1,
                level=None,
                received_at=datetime(2026, 3, 6, tzinfo=UTC),
            )
            if with_received
            else 0
        )
        for sid in (first, second):
            add_mapping(session, sid)
        add_plan_results(session, plan)
        session.commit()
    return Queue(first=first, second=second, planning=plan, leeds=leeds, received=received)
