"""Credentials for the commissioners' pages: the shipped protocols' stage requirements and trials, a benchmark case
per required stage, and decided submissions that put a handful of providers in known states.

Each provider's story is written out below with the dates it implies, so the tests can state what the pages must
show without asking the code under test (validity 730 days, the default policy):

| provider | technique | stages (decided, days before now) | credential |
|---|---|---|---|
| the-royal-marsden | sabr_lung | 4 of 4 passed 700 days ago | credentialed, ends in 30 days |
| the-christie | sabr_lung | 4 of 4 passed 10 days ago | credentialed, ends in 720 days |
| the-christie | srs_brain | 4 of 4 passed 720 days ago | credentialed, ends in 10 days |
| leeds-teaching-hospitals | sabr_lung | questionnaire, outlining passed; planning failed; TPS check missing | pending |
| university-college-london-hospitals | sabr_lung | 4 of 4 passed, the questionnaire 800 days ago | lapsed |
| cambridge-university-hospitals | sabr_lung | 4 of 4 passed 735 days ago, evaluated 30 days ago | credentialed, ended |
|  |  |  | 5 days ago (not marked lapsed yet) |
| oxford-university-hospitals | sabr_spine | questionnaire passed; outlining received, not decided | pending |

Trials are the shipped protocols' (code = protocol id): ``uk-lung-sabr`` needs sabr_lung, so the-royal-marsden,
the-christie and cambridge-university-hospitals are eligible (their trial credentials are credentialed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from flows.catalogue import register_shipped_protocols
from models.credentials import apply_outcome
from models.enums import OutcomeLevel, OutcomeSource, QAStage, SubmissionStatus
from models.tables import BenchmarkCase, Outcome, Provider, Submission, Technique
from models.types import utcnow

VALIDITY_DAYS = 730
PASS = OutcomeLevel.PER_PROTOCOL
FAIL = OutcomeLevel.UNACCEPTABLE_VARIATION

FOUR_STAGES = (
    QAStage.FACILITY_QUESTIONNAIRE,
    QAStage.OUTLINING_BENCHMARK,
    QAStage.PLANNING_BENCHMARK,
    QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK,
)
PROTOCOL = {"sabr_lung": "uk-lung-sabr", "srs_brain": "srs-brain", "sabr_spine": "spine-sabr"}

LUNG_ELIGIBLE = {"the-royal-marsden", "the-christie", "cambridge-university-hospitals"}
"""Providers whose uk-lung-sabr trial credential is credentialed."""


@dataclass
class Seeded:
    """What was seeded: ``now`` and the submission ids per provider."""

    now: datetime
    submissions: dict[str, list[int]] = field(default_factory=dict)


def _case(session: Session, technique: str, stage: QAStage) -> BenchmarkCase:
    code = f"{technique.replace('_', '-')}-{stage.value.replace('_', '-')}"
    case = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == code)).first()
    if case is None:
        tech = session.exec(select(Technique).where(Technique.code == technique)).one()
        case = BenchmarkCase(
            case_code=code,
            version="1.0",
            title=f"{technique} {stage.label}",
            technique_id=tech.id or 0,
            stage=stage,
            protocol_id=PROTOCOL[technique],
            protocol_version="1",
            reference_sha256="0" * 64,
            reference_path="/cases/" + code,
        )
        session.add(case)
        session.flush()
    return case


class _Seeder:
    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.seeded = Seeded(now=now)
        self.count = 0

    def submit(self, provider: str, technique: str, stage: QAStage, level: OutcomeLevel | None, days_ago: float) -> int:
        """A submission to the stage's case, decided ``days_ago`` with ``level`` (``None``: received, undecided)."""
        self.count += 1
        prov = self.session.exec(select(Provider).where(Provider.code == provider)).one()
        case = _case(self.session, technique, stage)
        attempts = self.session.exec(
            select(Submission).where(Submission.provider_id == prov.id, Submission.case_id == case.id)
        ).all()
        when = self.seeded.now - timedelta(days=days_ago)
        sub = Submission(
            provider_id=prov.id or 0,
            case_id=case.id or 0,
            attempt=len(attempts) + 1,
            content_sha256=f"{self.count:064x}",
            status=SubmissionStatus.RECEIVED if level is None else SubmissionStatus.DECIDED,
            storage_path="/x",
            submitted_by="tests",
            received_at=when,
        )
        self.session.add(sub)
        self.session.flush()
        if level is not None:
            self.session.add(
                Outcome(
                    submission_id=sub.id or 0,
                    level=level,
                    source=OutcomeSource.AUTOMATIC,
                    decided_by="tests",
                    protocol_id=PROTOCOL[technique],
                    protocol_version="1",
                    decided_at=when,
                )
            )
            self.session.flush()
        self.seeded.submissions.setdefault(provider, []).append(sub.id or 0)
        return sub.id or 0

    def evaluate(self, submission_id: int, *, days_ago: float = 0) -> None:
        apply_outcome(
            self.session,
            submission_id=submission_id,
            actor="tests",
            validity_days=VALIDITY_DAYS,
            now=self.seeded.now - timedelta(days=days_ago),
        )

    def all_passed(self, provider: str, technique: str, days_ago: float, *, evaluated_days_ago: float = 0) -> None:
        last = 0
        for stage in FOUR_STAGES:
            last = self.submit(provider, technique, stage, PASS, days_ago)
        self.evaluate(last, days_ago=evaluated_days_ago)


def seed_credentials(engine: Engine, *, now: datetime | None = None) -> Seeded:
    """Register the shipped protocols and seed the providers' stories (see the module docstring)."""
    with Session(engine) as session:
        register_shipped_protocols(session, actor="tests")
        s = _Seeder(session, now or utcnow())
        s.all_passed("the-royal-marsden", "sabr_lung", 700)
        s.all_passed("the-christie", "sabr_lung", 10)
        s.all_passed("the-christie", "srs_brain", 720)
        s.submit("leeds-teaching-hospitals", "sabr_lung", QAStage.FACILITY_QUESTIONNAIRE, PASS, 40)
        s.submit("leeds-teaching-hospitals", "sabr_lung", QAStage.OUTLINING_BENCHMARK, PASS, 30)
        s.evaluate(s.submit("leeds-teaching-hospitals", "sabr_lung", QAStage.PLANNING_BENCHMARK, FAIL, 20))
        s.submit("university-college-london-hospitals", "sabr_lung", QAStage.FACILITY_QUESTIONNAIRE, PASS, 800)
        for stage in FOUR_STAGES[1:]:
            last = s.submit("university-college-london-hospitals", "sabr_lung", stage, PASS, 100)
        s.evaluate(last)
        s.all_passed("cambridge-university-hospitals", "sabr_lung", 735, evaluated_days_ago=30)
        answered = s.submit("oxford-university-hospitals", "sabr_spine", QAStage.FACILITY_QUESTIONNAIRE, PASS, 5)
        s.submit("oxford-university-hospitals", "sabr_spine", QAStage.OUTLINING_BENCHMARK, None, 1)
        s.evaluate(answered)
        session.commit()
        return s.seeded


__all__ = ["LUNG_ELIGIBLE", "VALIDITY_DAYS", "Seeded", "seed_credentials"]
