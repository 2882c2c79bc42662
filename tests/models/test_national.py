"""The national distribution: percentile ranks and quartiles of known sets worked out by hand, and which submission
stands for each provider (the latest decided one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.enums import OutcomeLevel, OutcomeSource, QAStage, SubmissionStatus
from models.national import (
    MetricKey,
    available_metrics,
    find_case,
    latest_decided_submissions,
    national_distribution,
    percentile_rank,
    quartiles,
)
from models.tables import (
    BenchmarkCase,
    DoseResult,
    Outcome,
    PlanResult,
    Provider,
    StructureResult,
    Submission,
    Technique,
)


class TestPercentileRank:
    # values 1, 2, 2, 3, 5 (n = 5): rank = 100 * (below + equal / 2) / 5
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1.0, 10.0),  # 0 below, 1 equal: 0.5 / 5
            (2.0, 40.0),  # 1 below, 2 equal: 2 / 5
            (3.0, 70.0),  # 3 below, 1 equal: 3.5 / 5
            (5.0, 90.0),  # 4 below, 1 equal: 4.5 / 5
            (4.0, 80.0),  # not in the set: 4 below
            (0.0, 0.0),
            (9.0, 100.0),
        ],
    )
    def test_by_hand(self, value: float, expected: float) -> None:
        assert percentile_rank([3.0, 1.0, 2.0, 5.0, 2.0], value) == pytest.approx(expected)

    def test_single_value_is_the_middle(self) -> None:
        assert percentile_rank([0.7], 0.7) == 50.0

    def test_empty_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            percentile_rank([], 1.0)


class TestQuartiles:
    def test_linear_between_order_statistics(self) -> None:
        # n = 4: Q1 at position 0.75 between 1 and 2 -> 1.75; median 2.5; Q3 at 2.25 between 3 and 4 -> 3.25
        assert quartiles([4.0, 1.0, 3.0, 2.0]) == pytest.approx((1.75, 2.5, 3.25))
        # n = 5: order statistics exactly
        assert quartiles([10.0, 20.0, 30.0, 40.0, 50.0]) == pytest.approx((20.0, 30.0, 40.0))

    def test_one_value(self) -> None:
        assert quartiles([2.0]) == (2.0, 2.0, 2.0)


class TestMetricKey:
    @pytest.mark.parametrize(
        ("text", "key"),
        [("PTV:dice", MetricKey("PTV", "dice")), ("PTV:R50%", MetricKey("PTV", "R50%")),
         ("gamma_pass_rate_percent", MetricKey(None, "gamma_pass_rate_percent"))],
    )  # fmt: skip
    def test_round_trip(self, text: str, key: MetricKey) -> None:
        assert MetricKey.parse(text) == key and key.id == text

    @pytest.mark.parametrize(
        ("key", "label"),
        [(MetricKey("GTV", "hd95_mm"), "GTV hd95"), (MetricKey(None, "gamma_pass_rate_percent"), "gamma pass rate"),
         (MetricKey("Lungs", "V20Gy%"), "Lungs V20Gy%"), (MetricKey("PTV", "_mm"), "PTV  mm")],
    )  # fmt: skip
    def test_label_leaves_the_unit_suffix_out(self, key: MetricKey, label: str) -> None:
        assert key.label == label


class _Cases:
    def __init__(self, session: Session) -> None:
        self.session = session
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        self.cases = {}
        for stage in (
            QAStage.OUTLINING_BENCHMARK,
            QAStage.PLANNING_BENCHMARK,
            QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK,
        ):
            case = BenchmarkCase(case_code=f"c-{stage.value}", version="1", title="t", technique_id=lung.id or 0,
                                 stage=stage, protocol_id="p", protocol_version="1", reference_sha256="0" * 64,
                                 reference_path="/x")  # fmt: skip
            session.add(case)
            self.cases[stage] = case
        session.flush()
        self.providers = {p.code: p for p in session.exec(select(Provider)).all()}

    def submission(self, code: str, stage: QAStage, attempt: int, status: SubmissionStatus) -> Submission:
        sub = Submission(provider_id=self.providers[code].id or 0, case_id=self.cases[stage].id or 0,
                         attempt=attempt, content_sha256=f"{code[:20]}{stage.value[:20]}{attempt}".ljust(64, "0"),
                         status=status, rejection_reason="bad" if status is SubmissionStatus.REJECTED else None,
                         storage_path="/x", submitted_by="t")  # fmt: skip
        self.session.add(sub)
        self.session.flush()
        if status is SubmissionStatus.DECIDED:
            self.session.add(Outcome(submission_id=sub.id or 0, level=OutcomeLevel.PER_PROTOCOL,
                                     source=OutcomeSource.AUTOMATIC, decided_by="t", protocol_id="p",
                                     protocol_version="1"))  # fmt: skip
        return sub


@pytest.fixture
def cases(engine: Engine) -> Iterator[_Cases]:
    with Session(engine) as session:
        yield _Cases(session)


class TestDistribution:
    def test_latest_decided_submission_stands_for_each_provider(self, cases: _Cases) -> None:
        s, stage = cases.session, QAStage.OUTLINING_BENCHMARK

        def dice(sub: Submission, value: float | None, structure: str = "PTV") -> None:
            s.add(StructureResult(submission_id=sub.id or 0, structure=structure, metric="dice", value=value, unit="1"))

        dice(cases.submission("the-christie", stage, 1, SubmissionStatus.DECIDED), 0.80)
        dice(cases.submission("the-christie", stage, 2, SubmissionStatus.DECIDED), 0.90)  # the latest decided
        cases.submission("the-christie", stage, 3, SubmissionStatus.REJECTED)  # rejected later: does not count
        dice(cases.submission("leeds-teaching-hospitals", stage, 1, SubmissionStatus.DECIDED), 0.70)
        dice(cases.submission("the-royal-marsden", stage, 1, SubmissionStatus.SCORED), 0.99)  # not decided
        dice(cases.submission("university-hospitals-bristol", stage, 1, SubmissionStatus.DECIDED), None)
        s.flush()
        case = cases.cases[stage]
        latest = latest_decided_submissions(s, case.id or 0)
        assert sorted(sub.attempt for sub in latest) == [1, 1, 2]
        dist = national_distribution(s, case, MetricKey("PTV", "dice"))
        assert [(v.provider_code, v.value, v.attempt) for v in dist.values] == [
            ("leeds-teaching-hospitals", 0.70, 1),
            ("the-christie", 0.90, 2),
        ]
        assert dist.unit == "1" and dist.case_label == "c-outlining_benchmark@1"
        assert dist.percentile_of(0.90) == 75.0  # 1 below, 1 equal, n = 2
        assert dist.values[0].network_code and dist.values[0].outcome == "per_protocol"
        assert national_distribution(s, case, MetricKey("GTV", "dice")).values == ()

    def test_metrics_judged_first_and_histogram_left_out(self, cases: _Cases) -> None:
        s = cases.session
        plan = cases.submission("the-christie", QAStage.PLANNING_BENCHMARK, 1, SubmissionStatus.DECIDED)
        criteria = {"criteria": [{"id": "r50"}]}
        s.add(PlanResult(submission_id=plan.id or 0, structure="PTV", metric="GI", value=5.0, unit="1"))
        s.add(PlanResult(submission_id=plan.id or 0, structure="PTV", metric="R50%", value=4.2, unit="1",
                         parameters=criteria))  # fmt: skip
        s.add(PlanResult(submission_id=plan.id or 0, structure="Lungs", metric="Dmean", value=None, unit="Gy"))
        dose = cases.submission("the-christie", QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK, 1, SubmissionStatus.DECIDED)
        s.add(DoseResult(submission_id=dose.id or 0, metric="gamma_histogram", value=100.0, unit="1"))
        s.add(DoseResult(submission_id=dose.id or 0, metric="gamma_pass_rate_percent", value=97.0, unit="%"))
        s.flush()
        planning = cases.cases[QAStage.PLANNING_BENCHMARK]
        assert [k.id for k, _ in available_metrics(s, planning)] == ["PTV:R50%", "PTV:GI"]
        assert [k.id for k, _ in available_metrics(s, planning, judged=[MetricKey("PTV", "GI")])] == [
            "PTV:GI",
            "PTV:R50%",
        ]
        dose_metrics = available_metrics(s, cases.cases[QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK])
        assert dose_metrics == [(MetricKey(None, "gamma_pass_rate_percent"), "%")]
        dist = national_distribution(s, cases.cases[QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK], dose_metrics[0][0])
        assert [v.value for v in dist.values] == [97.0]

    def test_find_case_by_code_or_version(self, cases: _Cases) -> None:
        s = cases.session
        newer = BenchmarkCase(**{**cases.cases[QAStage.OUTLINING_BENCHMARK].model_dump(exclude={"id", "created_at"}),
                                 "version": "2"})  # fmt: skip
        s.add(newer)
        s.flush()
        assert find_case(s, "c-outlining_benchmark@1") is cases.cases[QAStage.OUTLINING_BENCHMARK]
        assert find_case(s, "c-outlining_benchmark") is newer
        assert find_case(s, "c-outlining_benchmark@9") is None and find_case(s, "nope") is None
