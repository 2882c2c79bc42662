"""Scoring tasks, one per QA stage: each stores its metric results with units and parameters.

* outlining benchmark: contour metrics per protocol structure against the reference (``StructureResult``); inside a
  Prefect flow run each structure is a task run of its own, ``score-contours[PTV]`` (:mod:`flows.structure_tasks`);
* planning benchmark: plan indices, DVH metrics and organ limits per target and organ (``PlanResult``); inside a
  Prefect flow run the plan indices and each structure's DVH metrics are task runs of their own, ``plan-indices[PTV]``,
  ``dvh[SpinalCord]`` (:mod:`flows.part_tasks`);
* complex treatment dosimetry check (TPS check): 3D gamma of the centre's dose against the reference
  (``DoseResult``); inside a Prefect flow run the comparison is a task run named by its criterion, ``gamma[3%/2mm]``.

Results of the planning and dosimetry stages carry, in their parameters, the protocol criteria they are judged
against (``criteria``), so the decision reads the stored record alone. Every scoring is a scoring run
(:class:`models.tables.ScoringRun`): the first on arrival, more when the submission is rescored
(:mod:`flows.rescoring`); each run keeps its own results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from benchmarks.cases import RTDOSE_NAME, reference_files
from benchmarks.protocols import GAMMA_METRIC, Protocol
from flows._store import engine_for
from flows.crashpoints import crash_point
from flows.part_tasks import gamma_label, run_gamma, run_plan_step
from flows.protocol_store import resolve_protocol
from flows.steps import data_dir_or_default, load_submission_and_case, set_status, submission_logger
from flows.structure_tasks import run_structure
from flows.submission_reads import read_submission
from models.enums import QAStage, ScoringTrigger, SubmissionStatus
from models.scoring_runs import current_run, start_run
from models.tables import DoseResult, PlanResult, ScoringRun, StructureResult
from qa_checks.dicom_io import LoadedSubmission
from qa_checks.dosimetry import score_dosimetry
from qa_checks.errors import QAChecksError
from qa_checks.outlining import score_outlining
from qa_checks.planning import PlanScore, TargetPrescription, score_plan
from qa_checks.protocol import Criterion

RESULT_TABLES: dict[QAStage, type[StructureResult] | type[PlanResult] | type[DoseResult]] = {
    QAStage.OUTLINING_BENCHMARK: StructureResult,
    QAStage.PLANNING_BENCHMARK: PlanResult,
    QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK: DoseResult,
}
"""Where each scored stage keeps its results."""


def criterion_json(c: Criterion) -> dict[str, Any]:
    """A criterion as stored beside the result it judges."""
    return {
        "id": c.id,
        "structure": c.structure,
        "metric": c.metric,
        "direction": c.direction,
        "per_protocol": c.per_protocol,
        "acceptable": c.acceptable,
        "unit": c.unit,
        "description": c.description,
    }


def criterion_from_json(data: dict[str, Any]) -> Criterion:
    """The inverse of :func:`criterion_json`."""
    return Criterion(
        data["id"],
        data["structure"],
        data["metric"],
        data["direction"],
        float(data["per_protocol"]),
        float(data["acceptable"]),
        data["unit"],
        data.get("description", ""),
    )


def _count(session: Session, table: type[Any], submission_id: int) -> int:
    """How many results the submission's current scoring run stored."""
    run = current_run(session, submission_id)
    if run is None:
        return 0
    return len(session.exec(select(table).where(table.scoring_run_id == run.id)).all())


def _store_outlining(
    session: Session, submission_id: int, run_id: int, storage: str, reference_dir: Path, protocol: Protocol
) -> dict[str, Any]:
    submitted = read_submission(storage)
    reference = read_submission(reference_files(reference_dir))
    assert submitted.structure_set is not None and reference.structure_set is not None and reference.ct is not None
    structures = [c.structure for c in protocol.outlining_criteria()]
    score = score_outlining(
        reference.structure_set, submitted.structure_set, reference.ct, structures=structures, run_each=run_structure
    )
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
                    scoring_run_id=run_id,
                    structure=s.structure,
                    submitted_name=s.submitted_name,
                    metric=metric,
                    value=value,
                    unit=unit,
                    parameters=params,
                )
            )
    return {
        "scored": len(score.scores),
        "missing": list(score.missing),
        "unmatched_submitted": list(score.unmatched_submitted),
        "ambiguous": {name: list(candidates) for name, candidates in score.ambiguous},
    }


def reference_dose_files(reference_dir: Path) -> list[Path]:
    """The reference case's RTDOSE file alone: gamma needs only the reference dose, so the TPS check does not read
    the case's CT series and structure set again (validation has read and cross-checked the whole case). Reading
    them took about 90 % of a clinical-size TPS check (``perf/bench_submission.py``).

    Raises:
        LookupError: the case has no RTDOSE (an error of the case, not of the submission).
    """
    files = [p for p in reference_files(reference_dir) if p.name == RTDOSE_NAME]
    if not files:
        raise LookupError(f"case reference {reference_dir}: no {RTDOSE_NAME}; a TPS check needs the reference dose")
    return files


def _store_dosimetry(
    session: Session, submission_id: int, run_id: int, storage: str, reference_dir: Path, protocol: Protocol
) -> dict[str, Any]:
    submitted = read_submission(storage, sum_beams=True)
    reference = read_submission(reference_dose_files(reference_dir))
    assert submitted.dose is not None and reference.dose is not None
    params = protocol.gamma_parameters()
    reference_dose, submitted_dose = reference.dose, submitted.dose
    score = run_gamma(
        gamma_label(params["dose_percent"], params["distance_mm"], local=params["local"]),
        lambda: score_dosimetry(
            reference_dose,
            submitted_dose,
            dose_percent=params["dose_percent"],
            distance_mm=params["distance_mm"],
            lower_cutoff_percent=params["lower_cutoff_percent"],
            local=params["local"],
        ),
    )
    criterion = protocol.gamma_criterion()
    for m in score.measurements:
        extra: dict[str, Any] = {}
        if m.metric == GAMMA_METRIC:
            extra = {"criteria": [criterion_json(criterion)], "protocol": f"{protocol.id}@{protocol.version}"}
        session.add(
            DoseResult(
                submission_id=submission_id,
                scoring_run_id=run_id,
                metric=m.metric,
                value=m.value,
                unit=m.unit,
                parameters={**m.parameters, **extra},
            )
        )
    return {"pass_rate_percent": score.pass_rate_percent, "warnings": list(score.warnings)}


def score_by_protocol(submitted: LoadedSubmission, protocol: Protocol) -> PlanScore:
    """:func:`qa_checks.planning.score_plan` with the protocol's criteria for each target (its own prescription;
    organ limits once, with the prescription target), composites and prescription-by-size rule; each step a task
    run of its own inside a Prefect flow run (:func:`flows.part_tasks.run_plan_step`).

    Raises:
        LookupError: the protocol has no planning section.
        PlanScoringError: the plan cannot be scored (see :func:`qa_checks.planning.score_plan`).
    """
    if protocol.planning is None:
        raise LookupError(f"protocol {protocol.id!r} has no planning section: a plan cannot be scored")
    fractions = submitted.plan.number_of_fractions if submitted.plan is not None else None

    def criteria_for(rx: TargetPrescription, ptv_cc: float, primary: bool) -> tuple[Criterion, ...]:
        return protocol.planning_criteria(
            fractions=fractions or 0,
            ptv_volume_cc=ptv_cc,
            prescription_gy=rx.dose_gy,
            target=rx.structure,
            include_oars=primary,
        )

    def dose_by_size(diameter_mm: float) -> float | None:
        schedules = protocol.fractionations_for_diameter(diameter_mm)
        return schedules[0].dose_gy if len(schedules) == 1 else None

    return score_plan(
        submitted,
        targets=[protocol.planning.prescription.target],
        criteria_for=criteria_for,
        composites=protocol.composite_structures(),
        dose_by_size=dose_by_size,
        run_each=run_plan_step,
    )


def _store_planning(
    session: Session, submission_id: int, run_id: int, storage: str, reference_dir: Path, protocol: Protocol
) -> dict[str, Any]:
    """Plan indices, DVH metrics and organ limits of every target and organ the protocol names (see
    :func:`qa_checks.planning.score_plan`); each criterion is stored beside the result it judges."""
    submitted = read_submission(storage, sum_beams=True)
    score = score_by_protocol(submitted, protocol)
    by_key: dict[tuple[str, str], list[Criterion]] = {}
    for c in score.criteria:
        by_key.setdefault(c.key, []).append(c)
    measured = {m.key for m in score.measurements}
    protocol_label = f"{protocol.id}@{protocol.version}"
    rows = [(m.structure, m.metric, m.value, m.unit, dict(m.parameters)) for m in score.measurements]
    rows += [
        (c.structure, c.metric, None, c.unit, {"reason": f"no {c.structure} in the submission to measure"})
        for key, cs in by_key.items()
        if key not in measured
        for c in cs[:1]
    ]
    for structure, metric, value, unit, params in rows:
        judged = by_key.get((structure, metric), [])
        if judged:
            params = {**params, "criteria": [criterion_json(c) for c in judged], "protocol": protocol_label}
        session.add(
            PlanResult(
                submission_id=submission_id,
                scoring_run_id=run_id,
                structure=structure,
                metric=metric,
                value=value,
                unit=unit,
                parameters=params,
            )
        )
    return {
        "fractions": score.fractions,
        "prescriptions": [
            {"target": rx.structure, "dose_gy": rx.dose_gy, "source": rx.source, "submitted_name": rx.submitted_name}
            for rx in score.prescriptions
        ],
        "name_mapping": dict(score.name_mapping),
        "warnings": list(score.warnings),
    }


SCORERS = {
    QAStage.OUTLINING_BENCHMARK: _store_outlining,
    QAStage.PLANNING_BENCHMARK: _store_planning,
    QAStage.COMPLEX_TREATMENT_DOSIMETRY_CHECK: _store_dosimetry,
}


def store_results(
    session: Session, run: ScoringRun, *, stage: QAStage, storage: str, reference_dir: Path, protocol: Protocol
) -> dict[str, Any]:
    """Score the stored submission files at ``storage`` for ``stage`` against the reference in ``reference_dir``
    and ``protocol``, adding the results to ``run``; returns the scorer's details (names, warnings). The caller
    commits.

    Raises:
        QAChecksError: the files cannot be scored (e.g. a target not on the dose grid).
        LookupError: the stage has no scorer, or the protocol lacks the stage's section.
    """
    if stage not in SCORERS:
        raise LookupError(f"stage {stage.value} has no scorer")
    assert run.id is not None
    return SCORERS[stage](session, run.submission_id, run.id, storage, reference_dir, protocol)


def score_stage(submission_id: int, *, actor: str, database_url: str, data_dir: str | None = None) -> int:
    """Score a validated submission by its case's stage; returns the number of results stored.

    Does nothing (returning the count already stored) when the submission is past validation: re-running a flow
    never scores twice.
    """
    with Session(engine_for(database_url)) as session:
        sub, case = load_submission_and_case(session, submission_id)
        table = RESULT_TABLES.get(case.stage)
        if table is None:
            raise LookupError(f"case {case.case_code}@{case.version}: stage {case.stage.value} has no scorer")
        if sub.status is not SubmissionStatus.VALIDATED:
            return _count(session, table, submission_id)
        protocol = resolve_protocol(case.protocol_id, case.protocol_version, data_dir=data_dir_or_default(data_dir))
        run = start_run(
            session,
            submission_id=submission_id,
            case_id=case.id or 0,
            protocol_id=protocol.id,
            protocol_version=protocol.version,
            trigger=ScoringTrigger.INITIAL,
            actor=actor,
        )
        try:
            details = store_results(
                session,
                run,
                stage=case.stage,
                storage=sub.storage_path,
                reference_dir=Path(case.reference_path),
                protocol=protocol,
            )
        except QAChecksError as err:  # the files are valid DICOM but cannot be scored (e.g. a target not on the grid)
            session.rollback()
            sub, case = load_submission_and_case(session, submission_id)
            set_status(session, sub, SubmissionStatus.REJECTED, actor=actor, reason=str(err))
            session.commit()
            return 0
        session.flush()
        crash_point("score:results-written")
        before = sub.status
        set_status(session, sub, SubmissionStatus.SCORED, actor=actor, details={**details, "scoring_run_id": run.id})
        session.commit()
        crash_point("score:committed")
        submission_logger(session, submission_id).info("scored (%s -> scored): %s", before.value, details)
        return _count(session, table, submission_id)
