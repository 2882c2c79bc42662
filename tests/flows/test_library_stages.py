"""Every library planning and TPS-check case through the credentialing flow's tasks, at full resolution: the
stored outcome equals the simulator's independent oracle (:mod:`benchmarks.simulation.oracle`, which measures the
analytic dose model with its own definitions and bounds gamma in closed form; it imports no qa_checks metric code).

Planning cases get the unchanged reference plan and each planning deviation kind, with amounts the oracle decides
clearly (none of its criteria within the RTDOSE storage tolerance of a level: ``sim.borderline`` empty). A
combination whose deviation can move no criterion of the case's protocol is skipped, naming why. TPS-check cases
get the reference recalculated unchanged, a 2% scale, shifts of 5 mm and 0.5 mm and 1% noise; only outcomes the
oracle's closed-form gamma bounds decide are compared.

Seeds are fixed (0). Runtime: about 20 minutes on two busy shared cores (15-40 s per lung, prostate, spine and
oligomets run, 40-95 s per SRS run: the 1 mm SRS grids); hence ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import STAGE_DOSIMETRY, STAGE_PLANNING, list_cases
from flows._store import engine_for
from models.settings import Settings
from models.tables import DoseResult, PlanResult
from tests.flows.library_runs import CaseLibrary, run_flow, simulate, stored_outcome

pytestmark = pytest.mark.slow

PLANNING_CASES = tuple(c.case_id for c in list_cases() if c.stage == STAGE_PLANNING)
TPS_CASES = tuple(c.case_id for c in list_cases() if c.stage == STAGE_DOSIMETRY)

REFERENCE = ""
"""The unchanged reference plan (no deviation)."""

PLANNING_DEVIATIONS: dict[str, dict[str, str | None]] = {
    # Amounts as in tests/benchmarks/test_plan_oracle.py: coverage 85% (acceptable level 90%), Dmax 180% (above
    # 167%), R50% x 1.5 (above the minor-deviation limit), cord 30 Gy (TG-101 3 fx: 18 / 21.9 Gy).
    "lung-sabr-planning": {
        "under_coverage": "under_coverage:85",
        "hot_spot": "hot_spot:180",
        "poor_conformity": "poor_conformity:1.5",
        "organ_overdose": "organ_overdose:SpinalCord:30",
    },
    # Criteria: PTV V100%, rectum V24Gy% (35 / 40 %), bladder V39Gy (8 / 12 cc). No maximum-dose criterion, and
    # the Gaussian hot spot stays inside the PTV: nothing for it to move. R50% x 5 moves rectum V24Gy% from 7% to
    # 49% (unacceptable). The overdose part is at most 15 mm around the bladder point nearest the PTV: 45 Gy moves
    # bladder V39Gy from 0.7 cc to 6.8 cc, still per protocol (the measurement moves, the level is not reached).
    "prostate-sabr-planning": {
        "under_coverage": "under_coverage:85",
        "hot_spot": None,
        "poor_conformity": "poor_conformity:5",
        "organ_overdose": "organ_overdose:Bladder:45",
    },
    # Two targets (24 Gy PTV, 18 Gy PTV_2), each judged on its own prescription. Coverage 85% also drops R100%
    # below the 0.9 PITV floor. The maximum-dose levels are 200 / 250 % (RTOG 90-05 MDPD) and a hot spot is at most
    # 200%: 180% moves Dmax% and stays per protocol (200% would be borderline). Brainstem 20 Gy exceeds both
    # TG-101 1-fraction limits (D0.5cc 10 Gy, D0.035cc 15 Gy).
    "srs-brain-planning": {
        "under_coverage": "under_coverage:85",
        "hot_spot": "hot_spot:180",
        "poor_conformity": "poor_conformity:1.5",
        "organ_overdose": "organ_overdose:Brainstem:20",
    },
    # Criteria: PTV V100% and the TG-101 cord limits. No maximum-dose criterion (hot spot skipped). The reference
    # plan fixes R50% = 3.0 in its dose options (SPINE_DOSE_OPTIONS); poor_conformity multiplies that R50%, and a
    # shallower fall-off 3.5 mm from the cord raises the cord dose.
    "spine-sabr-planning": {
        "under_coverage": "under_coverage:85",
        "hot_spot": None,
        "poor_conformity": "poor_conformity:1.5",
        "organ_overdose": "organ_overdose:SpinalCord:30",
    },
    # Criteria: PTV V100%, Dmax% (140 / 167 %) and R100% only: no organ limits (site-dependent, not yet entered),
    # and the RTOG R50% / D2cm table is not applied, so poor_conformity (the R50% fall-off) moves none; R100% is
    # set by coverage.
    "oligomets-sabr-planning": {
        "under_coverage": "under_coverage:85",
        "hot_spot": "hot_spot:180",
        "poor_conformity": None,
        "organ_overdose": None,
    },
}

SKIP_REASONS: dict[tuple[str, str], str] = {
    ("prostate-sabr-planning", "hot_spot"): (
        "prostate-sabr has no maximum-dose criterion; the hot spot stays in the PTV"
    ),
    ("spine-sabr-planning", "hot_spot"): "spine-sabr has no maximum-dose criterion; the hot spot stays in the PTV",
    ("oligomets-sabr-planning", "poor_conformity"): "oligomets-sabr has no R50% / D2cm or organ criterion to move",
    ("oligomets-sabr-planning", "organ_overdose"): "oligomets-sabr has no organ-at-risk limits",
}

PLANNING_RUNS = [(case, kind) for case in PLANNING_CASES for kind in ("reference", *PLANNING_DEVIATIONS[case])]

TPS_DEVIATIONS: dict[str, tuple[str, ...]] = {
    "reference": (),
    "scale 2%": ("dose_scale_percent:2",),
    "shift 5 mm": ("dose_shift_mm:0,0,5",),
    "shift 0.5 mm": ("dose_shift_mm:0,0,0.5",),
    "noise 1%": ("dose_noise_percent:1",),
}

MUST_DECIDE = ("reference", "scale 2%")
"""TPS-check variants the oracle must decide for every case (their gamma bounds are exact)."""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> CaseLibrary:
    return CaseLibrary(tmp_path_factory.mktemp("library-cases"))


def test_the_library_cases_are_covered() -> None:
    """Every planning and TPS-check case of the library is in this module's tables."""
    assert set(PLANNING_CASES) == set(PLANNING_DEVIATIONS)
    assert len(PLANNING_CASES) == 5 and len(TPS_CASES) == 3
    for case, kinds in PLANNING_DEVIATIONS.items():
        assert set(kinds) == {"under_coverage", "hot_spot", "poor_conformity", "organ_overdose"}
        assert all((text is None) == ((case, kind) in SKIP_REASONS) for kind, text in kinds.items())


@pytest.mark.parametrize(("case_id", "kind"), PLANNING_RUNS, ids=[f"{c}-{k}" for c, k in PLANNING_RUNS])
def test_planning_outcome_is_the_oracles(
    settings: Settings, library: CaseLibrary, tmp_path: Path, case_id: str, kind: str
) -> None:
    if kind != "reference" and PLANNING_DEVIATIONS[case_id][kind] is None:
        pytest.skip(SKIP_REASONS[(case_id, kind)])
    text = PLANNING_DEVIATIONS[case_id].get(kind) or REFERENCE
    built = library.register(case_id, settings)
    sim = simulate(built, tmp_path / "submission", *([text] if text else []))
    assert sim.check == "planning" and sim.expected_outcome is not None
    assert sim.borderline == (), f"{text or 'reference'} is borderline for {sim.borderline}: pick another amount"
    if kind == "reference":
        assert sim.expected_outcome.value == "per_protocol", sim.expected_reason

    sid = run_flow(settings, sim.directory, built)
    level, reasons = stored_outcome(settings, sid)
    assert level == sim.expected_outcome.value, (reasons, sim.expected_reason)
    with Session(settings_engine(settings)) as session:
        rows = session.exec(select(PlanResult).where(PlanResult.submission_id == sid)).all()
    # Every target of the plan was scored against its own prescription.
    assert built.spec.plan is not None
    for rx in built.spec.plan.targets:
        coverage = next(r for r in rows if r.structure == rx.structure and r.metric == "V100%")
        assert coverage.parameters["prescription_gy"] == pytest.approx(rx.dose_gy)


@pytest.mark.parametrize("variant", list(TPS_DEVIATIONS))
@pytest.mark.parametrize("case_id", TPS_CASES)
def test_tps_check_outcome_is_the_oracles(
    settings: Settings, library: CaseLibrary, tmp_path: Path, case_id: str, variant: str
) -> None:
    built = library.register(case_id, settings)
    sim = simulate(built, tmp_path / "submission", *TPS_DEVIATIONS[variant], check="tps_check")
    assert sim.check == "tps_check"
    if variant in MUST_DECIDE:
        assert sim.expected_outcome is not None, sim.expected_reason
    sid = run_flow(settings, sim.directory, built)
    level, reasons = stored_outcome(settings, sid)
    with Session(settings_engine(settings)) as session:
        rows = {r.metric: r for r in session.exec(select(DoseResult).where(DoseResult.submission_id == sid)).all()}
    rate = rows["gamma_pass_rate_percent"].value
    assert rate is not None
    low, high = sim.gamma_pass_rate_bounds_percent or (0.0, 100.0)
    assert low - 1e-9 <= rate <= high + 1e-9, (rate, low, high)
    if sim.expected_outcome is None:
        pytest.skip(f"the oracle does not decide {variant} (bounds {low:.2f}-{high:.2f} %); stored {level} {rate:.2f}%")
    assert level == sim.expected_outcome.value, (reasons, sim.expected_reason)


def settings_engine(settings: Settings) -> Engine:
    return engine_for(settings.resolved_database_url)
