"""A small world for rescoring tests: the mini lung outlining case, one stage required for lung SABR, simulated
centres run through the credentialing tasks, and a protocol version with other thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from benchmarks.cases import BuiltCase
from benchmarks.protocols import PROTOCOL_DIR
from benchmarks.simulator import Deviation, SimulatedSubmission, simulate_submission
from flows._store import engine_for
from flows.catalogue import case_stage
from flows.credentialing import decide_outcome, ingest_submission, score_submission, validate_submission
from flows.credentialing import update_credentials as update_credentials_task
from flows.protocol_store import add_protocol
from models.settings import Settings
from models.stages import register_stage_requirements
from models.tables import BenchmarkCase, Provider, Technique

CASE = "lung-sabr-outlining-mini"
PROTOCOL = "uk-lung-sabr"


@dataclass(frozen=True)
class Centre:
    """A simulated centre's submission, its id once run, and the oracle's PTV Dice."""

    provider: str
    sim: SimulatedSubmission
    submission_id: int

    @property
    def ptv_dice(self) -> float:
        return self.sim.measurements[("PTV", "dice")]


def register_outlining_only(settings: Settings, built: BuiltCase) -> int:
    """Register the case (protocol uk-lung-sabr 1.0) with the outlining benchmark as lung SABR's only required
    stage, so a technique credential is granted exactly while the outlining stage passes."""
    with Session(engine_for(settings.resolved_database_url)) as session:
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        case = BenchmarkCase(
            case_code=built.spec.case_id,
            version=built.spec.version,
            title=built.spec.title,
            technique_id=lung.id or 0,
            stage=case_stage(built.spec),
            protocol_id=PROTOCOL,
            protocol_version="1.0",
            reference_sha256=built.content_sha256,
            reference_path=str(built.directory),
        )
        session.add(case)
        register_stage_requirements(
            session, protocol_id=PROTOCOL, requirements=[("outlining_benchmark", "sabr_lung", "")], actor="tests"
        )
        session.commit()
        assert case.id is not None
        return case.id


def provider_codes(settings: Settings, n: int) -> list[str]:
    """``n`` provider codes of the registry."""
    with Session(engine_for(settings.resolved_database_url)) as session:
        return list(session.exec(select(Provider.code).order_by(col(Provider.code)).limit(n)).all())


def run_centre(
    settings: Settings, built: BuiltCase, out: Path, provider: str, deviation: str, *, seed: int = 0
) -> Centre:
    """Simulate ``provider``'s submission with ``deviation`` and run every credentialing step (task bodies)."""
    sim = simulate_submission(
        built, provider=provider, deviations=[Deviation.parse(deviation)], seed=seed, out_dir=out / provider
    )
    url, data = settings.resolved_database_url, str(settings.data_dir)
    sid = ingest_submission.fn(
        str(sim.directory),
        provider_code=provider,
        case_code=built.spec.case_id,
        case_version=built.spec.version,
        actor="tests",
        database_url=url,
        data_dir=data,
    )
    assert validate_submission.fn(sid, actor="tests", database_url=url)
    score_submission.fn(sid, actor="tests", database_url=url, data_dir=data)
    decide_outcome.fn(
        sid, actor="tests", database_url=url, data_dir=data, validity_days=settings.credential_validity_days
    )
    update_credentials_task.fn(sid, actor="tests", database_url=url, validity_days=settings.credential_validity_days)
    return Centre(provider, sim, sid)


def write_protocol_version(tmp: Path, *, version: str, changes: dict[str, str], data_dir: Path) -> None:
    """Add uk-lung-sabr at ``version``: the shipped file with each text of ``changes`` (found exactly once)
    replaced."""
    text = (PROTOCOL_DIR / f"{PROTOCOL}.yaml").read_text(encoding="utf-8")
    for old, new in {'version: "1.0"': f'version: "{version}"', **changes}.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp / f"{PROTOCOL}-{version}.yaml"
    path.write_text(text, encoding="utf-8")
    add_protocol(path, data_dir=data_dir)
