"""A world for report and national-view tests: the three scored stages' cases, a centre (the-christie) with a real,
flow-decided submission of each stage (and a rejected one), another centre (leeds-teaching-hospitals) with a real
outlining submission, and peer providers whose decided results are copies of the-christie's with the values
scaled (test data for the national distribution only: no report of theirs is opened).

Peers per case: outlining 4 others (leeds and three copies), planning 3 copies, TPS check 2 copies: fewer than
:data:`models.national.MIN_OTHER_PROVIDERS_FOR_CENTRES`, so a centre's TPS-check comparison is withheld.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pydicom
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import STAGE_DOSIMETRY, BuiltCase, build_case
from benchmarks.protocols import load_protocol
from benchmarks.simulator import Deviation, PlanDeviation, simulate_plan_submission, simulate_submission
from flows._store import engine_for
from flows.catalogue import build_reference, case_stage, register_case, register_protocol
from flows.credentialing import (
    decide_outcome,
    ingest_submission,
    score_submission,
    update_credentials,
    validate_submission,
)
from models.auth import issue_token
from models.enums import OutcomeLevel, OutcomeSource, Role, SubmissionStatus
from models.settings import Settings
from models.tables import (
    BenchmarkCase,
    DoseResult,
    Outcome,
    PlanResult,
    Provider,
    StructureResult,
    Submission,
    Technique,
    User,
)
from tests.coarse import build_coarse_lung
from tests.portal.conftest import OTHER, OWN
from tests.runs import run_id

OUTLINING = "lung-sabr-outlining-mini"
TPS = "lung-sabr-tps-check-coarse"

PEERS = {
    "outlining": ("the-royal-marsden", "barts-health", "guys-and-st-thomas"),
    "planning": ("the-royal-marsden", "barts-health", "guys-and-st-thomas"),
    "dosimetry": ("the-royal-marsden", "barts-health"),
}
"""Providers given copies of the-christie's results, per stage; their values are the-christie's times
:data:`SCALES` (in that order)."""

SCALES = (0.9, 0.95, 0.98)
"""Below 1, so that a Dice of 1 stays at most 1."""


@dataclass
class ReportWorld:
    """Submission ids by name (``outlining``, ``planning``, ``dosimetry``, ``rejected``, ``leeds``), the cases by
    stage name, and tokens of ``centre`` (OWN), ``other_centre`` (OTHER), ``staff`` and ``commissioner``."""

    settings: Settings
    engine: Engine
    ids: dict[str, int]
    cases: dict[str, BuiltCase]
    tokens: dict[str, str]


def _run(settings: Settings, directory: Path, built: BuiltCase, provider: str) -> int:
    url, data = settings.resolved_database_url, str(settings.data_dir)
    sid = ingest_submission.fn(
        str(directory),
        provider_code=provider,
        case_code=built.spec.case_id,
        case_version=built.spec.version,
        actor="tests",
        database_url=url,
        data_dir=data,
    )
    if validate_submission.fn(sid, actor="tests", database_url=url):
        score_submission.fn(sid, actor="tests", database_url=url, data_dir=data)
        with Session(engine_for(settings.resolved_database_url)) as session:
            scored = session.get(Submission, sid).status is SubmissionStatus.SCORED  # type: ignore[union-attr]
        if scored:
            decide_outcome.fn(sid, actor="tests", database_url=url, data_dir=data, validity_days=365)
            update_credentials.fn(sid, actor="tests", database_url=url, validity_days=365)
    return sid


def _register(settings: Settings, engine: Engine, root: Path) -> dict[str, BuiltCase]:
    outlining = build_case(OUTLINING, root)
    register_case.fn(
        build_reference.fn(OUTLINING, str(root)), actor="tests", database_url=settings.resolved_database_url
    )
    cases = {
        "outlining": outlining,
        "planning": build_coarse_lung(root),
        "dosimetry": build_coarse_lung(root, case_id=TPS, stage=STAGE_DOSIMETRY),
    }
    with Session(engine) as session:
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        for key in ("planning", "dosimetry"):
            built = cases[key]
            session.add(
                BenchmarkCase(
                    case_code=built.spec.case_id,
                    version=built.spec.version,
                    title=built.spec.title,
                    technique_id=lung.id or 0,
                    stage=case_stage(built.spec),
                    protocol_id="uk-lung-sabr",
                    protocol_version="1.0",
                    reference_sha256=built.content_sha256,
                    reference_path=str(built.directory),
                )
            )
        register_protocol(session, load_protocol("uk-lung-sabr"), actor="tests")
        session.commit()
    return cases


def _copy_results(engine: Engine, source_id: int, providers: tuple[str, ...]) -> None:
    """Decided submissions of ``providers`` whose results are the source's scaled by :data:`SCALES`."""
    with Session(engine) as session:
        source = session.get(Submission, source_id)
        assert source is not None
        rows = [
            *session.exec(select(StructureResult).where(StructureResult.submission_id == source_id)).all(),
            *session.exec(select(PlanResult).where(PlanResult.submission_id == source_id)).all(),
            *session.exec(select(DoseResult).where(DoseResult.submission_id == source_id)).all(),
        ]
        for code, scale in zip(providers, SCALES, strict=False):
            provider = session.exec(select(Provider).where(Provider.code == code)).one()
            sub = Submission(
                provider_id=provider.id or 0,
                case_id=source.case_id,
                attempt=1,
                content_sha256=(code + "0" * 64)[:64],
                status=SubmissionStatus.DECIDED,
                storage_path=source.storage_path,
                submitted_by="tests",
            )
            session.add(sub)
            session.flush()
            session.add(
                Outcome(
                    submission_id=sub.id or 0,
                    level=OutcomeLevel.PER_PROTOCOL,
                    source=OutcomeSource.AUTOMATIC,
                    decided_by="tests",
                    protocol_id="uk-lung-sabr",
                    protocol_version="1.0",
                )
            )
            new_run = run_id(session, sub.id or 0)
            for r in rows:
                data = r.model_dump(exclude={"id", "submission_id", "computed_at", "scoring_run_id"})
                data["scoring_run_id"] = new_run
                if data["value"] is not None:
                    data["value"] = data["value"] * scale
                session.add(type(r)(submission_id=sub.id or 0, **data))
        session.commit()


def _tokens(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        own = session.exec(select(Provider).where(Provider.code == OWN)).one()
        other = session.exec(select(Provider).where(Provider.code == OTHER)).one()
        users = {
            "centre": User(email="phys@christie.test", name="Physicist", role=Role.CENTRE, provider_id=own.id),
            "other_centre": User(email="phys@leeds.test", name="Leeds", role=Role.CENTRE, provider_id=other.id),
            "staff": User(email="qa@rttqa.test", name="QA", role=Role.STAFF),
            "commissioner": User(email="comm@nhs.test", name="Commissioner", role=Role.COMMISSIONER),
        }
        existing = {u.email for u in session.exec(select(User)).all()}
        out = {}
        for key, user in users.items():
            found = session.exec(select(User).where(User.email == user.email)).first()
            if user.email not in existing:
                session.add(user)
                session.flush()
                found = user
            assert found is not None
            out[key] = issue_token(session, user=found, actor="tests")
        session.commit()
    return out


def build_world(settings: Settings, engine: Engine, root: Path) -> ReportWorld:
    """Register the cases and run the submissions (about 15 s on two busy cores)."""
    cases = _register(settings, engine, root / "cases")
    out = root / "submissions"
    ids: dict[str, int] = {}
    sim = simulate_submission(
        cases["outlining"],
        provider=OWN,
        deviations=[Deviation.parse("margin_mm:PTV:3"), Deviation.parse("rename:SpinalCord:Cord")],
        seed=0,
        out_dir=out / "outlining",
    )
    ids["outlining"] = _run(settings, sim.directory, cases["outlining"], OWN)
    for key, texts in (("planning", ()), ("dosimetry", ("dose_scale_percent:2",))):
        plan = simulate_plan_submission(
            cases[key], provider=OWN, deviations=[PlanDeviation.parse(t) for t in texts], seed=0, out_dir=out / key
        )
        ids[key] = _run(settings, plan.directory, cases[key], OWN)
    rejected = simulate_plan_submission(
        cases["planning"], provider=OWN, deviations=[], seed=1, out_dir=out / "rejected"
    )
    ds = pydicom.dcmread(rejected.rtdose_path)
    ds.DoseSummationType = "BEAM"
    ds.save_as(rejected.rtdose_path)
    ids["rejected"] = _run(settings, rejected.directory, cases["planning"], OWN)
    leeds = simulate_submission(
        cases["outlining"],
        provider=OTHER,
        deviations=[Deviation.parse("shift_mm:GTV:0,0,2")],
        seed=0,
        out_dir=out / "leeds",
    )
    ids["leeds"] = _run(settings, leeds.directory, cases["outlining"], OTHER)
    for key, peers in PEERS.items():
        _copy_results(engine, ids[key], peers)
    shutil.rmtree(out, ignore_errors=True)
    return ReportWorld(settings, engine, ids, cases, _tokens(engine))
