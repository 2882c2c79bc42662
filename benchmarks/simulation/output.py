"""Writing simulated submissions: the submission folder (the case's CT, the centre's RT objects) and the oracle's
expected outcome.

A centre contours the supplied benchmark CT, so a simulated outlining submission is the case's CT series copied
unchanged (same frame of reference and SOP instances) plus the centre's own RT Structure Set
(:func:`simulate_submission`). A simulated plan submission (:func:`simulate_plan_submission`) is the case's CT and
reference structures with the centre's RTPLAN and RTDOSE, the dose being the case's analytic reference dose with
:class:`~benchmarks.simulation.plans.PlanDeviation` s applied.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cases import CT_DIR_NAME, BuiltCase, write_plan_and_dose
from benchmarks.dicom_writer import read_ct_series_info, write_rtstruct
from benchmarks.dose_model import ModelDose
from benchmarks.protocols import load_protocol
from benchmarks.simulation.common import SimulationError
from benchmarks.simulation.contours import Deviation, apply_deviations
from benchmarks.simulation.effects import ExpectedEffect, apply_plan_deviations
from benchmarks.simulation.gamma_bounds import expected_gamma_outcome
from benchmarks.simulation.oracle import oracle_measurements, plan_oracle
from benchmarks.simulation.plans import PlanCheck, PlanDeviation, plan_check_of
from qa_checks.protocol import Evaluation, OutcomeLevel, evaluate

__all__ = [
    "SimulatedPlanSubmission",
    "SimulatedSubmission",
    "simulate_plan_submission",
    "simulate_submission",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatedSubmission:
    """A simulated centre submission and the outcome a correct pipeline should reach.

    Attributes:
        directory: submission directory (``CT/`` copied from the case + the centre's RT Structure Set).
        provider: the submitting provider (centre).
        case_id: the benchmark case.
        deviations: deviations applied, in order.
        expected_outcome: the oracle's outcome under the case's protocol.
        expected_reason: the oracle's reasons joined with ``"; "`` (or a per-protocol statement).
        rtstruct_path: the centre's RT Structure Set.
        ct_dir: the copied CT series.
        seed: the seed used (UIDs and random deviations).
        structure_names: submitted ROI name -> TG-263 name it stands for.
        measurements: the oracle's measurements, ``(structure, metric) -> value``.
        evaluation: the oracle's full protocol evaluation.
    """

    directory: Path
    provider: str
    case_id: str
    deviations: tuple[Deviation, ...]
    expected_outcome: OutcomeLevel
    expected_reason: str
    rtstruct_path: Path
    ct_dir: Path
    seed: int
    structure_names: dict[str, str] = field(default_factory=dict)
    measurements: dict[tuple[str, str], float] = field(default_factory=dict)
    evaluation: Evaluation | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (for sidecar files and demos)."""
        return {
            "directory": str(self.directory),
            "provider": self.provider,
            "case_id": self.case_id,
            "seed": self.seed,
            "deviations": [str(d) for d in self.deviations],
            "expected_outcome": self.expected_outcome.value,
            "expected_reason": self.expected_reason,
            "rtstruct_path": str(self.rtstruct_path),
            "structure_names": dict(self.structure_names),
            "measurements": [
                {"structure": s, "metric": m, "value": v} for (s, m), v in sorted(self.measurements.items())
            ],
        }


def _safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "centre"


def _prepare_output_dir(out: Path, *, overwrite: bool, ours: re.Pattern[str]) -> Path:
    """Empty ``out`` for a new simulated submission.

    A previous simulated submission (a ``CT/`` folder and files whose names match ``ours``) is replaced; any other
    content is refused unless ``overwrite``, so a mistyped ``--out`` never deletes someone's files.
    """
    if out.exists():
        if not out.is_dir():
            raise SimulationError(f"{out}: output path exists and is not a directory")
        entries = list(out.iterdir())
        foreign = [e.name for e in entries if not (e.name == CT_DIR_NAME and e.is_dir()) and not ours.match(e.name)]
        if foreign and not overwrite:
            raise SimulationError(
                f"{out}: output directory holds files other than a simulated submission "
                f"({', '.join(sorted(foreign))}); pass overwrite=True to replace them"
            )
        if entries:
            shutil.rmtree(out)
    return out


def simulate_submission(
    case: BuiltCase,
    *,
    provider: str,
    deviations: Sequence[Deviation],
    seed: int,
    out_dir: Path | str,
    overwrite: bool = False,
) -> SimulatedSubmission:
    """Write a simulated submission of ``provider`` for ``case`` into ``out_dir`` and compute its oracle outcome.

    Layout: ``out_dir/CT/`` (the case's CT files, copied byte for byte) and ``out_dir/RTSTRUCT_<provider>.dcm``
    (new SOP instance and series UIDs, same study and frame of reference, seeded by case, provider and
    ``seed``).

    Args:
        case: a built case (see :func:`benchmarks.cases.build_case`).
        provider: provider (centre) name; also the (3006,0002) StructureSetLabel (first 16 characters).
        deviations: applied in order to the reference masks.
        seed: seeds the UIDs and random deviations (``jitter_mm``); same inputs, same files.
        out_dir: submission directory. It must be missing, empty, or hold a previous simulated submission
            (only ``CT/`` and ``RTSTRUCT_*.dcm``), which is replaced; anything else needs ``overwrite``.
        overwrite: replace whatever ``out_dir`` holds.

    Raises:
        SimulationError: bad deviation, or ``out_dir`` holds other files and ``overwrite`` is false.
    """
    if not provider.strip():
        raise SimulationError(f"provider must be non-empty, got {provider!r}")
    out = _prepare_output_dir(Path(out_dir), overwrite=overwrite, ours=re.compile(r"^RTSTRUCT_.+\.dcm$"))
    deviations = tuple(deviations)
    rng = np.random.default_rng(seed)
    phantom = case.phantom()
    spacing = phantom.spacing_mm
    submitted = apply_deviations(phantom.masks, phantom.interpreted_types, deviations, spacing_mm=spacing, rng=rng)

    ct_out = out / CT_DIR_NAME
    ct_out.mkdir(parents=True, exist_ok=True)
    for path in sorted(case.ct_dir.glob("*.dcm")):
        shutil.copyfile(path, ct_out / path.name)
    ct_info = read_ct_series_info(ct_out)
    rs_path = out / f"RTSTRUCT_{_safe_file_part(provider)}.dcm"
    uid_seed = f"rtqa-submission/{case.spec.case_id}/{case.spec.version}/{provider}/{seed}"
    write_rtstruct(
        {s.name: s.mask for s in submitted},
        ct_info,
        rs_path,
        interpreted_types={s.name: s.interpreted_type for s in submitted},
        colors={s.name: phantom.colors[s.canonical] for s in submitted if s.canonical in phantom.colors},
        label=provider[:16],
        structure_set_name=f"{case.spec.case_id} {provider}"[:64],
        uid_seed=uid_seed,
        series_number=100,
        series_description=f"{provider} structures"[:64],
        manufacturer=f"{provider} planning system"[:64],
        institution_name=provider[:64],
    )

    protocol = load_protocol(case.spec.protocol_id)
    criteria = protocol.outlining_criteria()
    if not criteria:
        raise SimulationError(f"protocol {protocol.id!r} of case {case.spec.case_id!r} has no outlining criteria")
    measurements = oracle_measurements(submitted, phantom.masks, {c.key for c in criteria}, spacing_mm=spacing)
    evaluation = evaluate(criteria, measurements, present_structures={s.canonical for s in submitted})
    reason = (
        "; ".join(evaluation.reasons)
        if evaluation.reasons
        else f"all {len(criteria)} outlining criteria of {protocol.id} met at the per-protocol level"
    )
    logger.info(
        "simulated %s submission of %s with %s: expected %s",
        provider,
        case.spec.case_id,
        [str(d) for d in deviations],
        evaluation.outcome.value,
    )
    return SimulatedSubmission(
        directory=out,
        provider=provider,
        case_id=case.spec.case_id,
        deviations=deviations,
        expected_outcome=evaluation.outcome,
        expected_reason=reason,
        rtstruct_path=rs_path,
        ct_dir=ct_out,
        seed=seed,
        structure_names={s.name: s.canonical for s in submitted},
        measurements=measurements,
        evaluation=evaluation,
    )


@dataclass(frozen=True, eq=False)
class SimulatedPlanSubmission:
    """A simulated centre plan submission (planning benchmark or TPS check) and its expected effects.

    Attributes:
        directory: submission directory: ``CT/`` and ``RTSTRUCT.dcm`` copied from the case, and the centre's
            ``RTPLAN_<provider>.dcm`` and ``RTDOSE_<provider>.dcm``.
        provider, case_id, seed: as given.
        deviations: the deviations applied.
        rtplan_path, rtdose_path: the centre's plan and dose.
        reference: the reference dose model; ``submitted``: the centre's dose model (as written).
        expected_effects: what each deviation should do to the measurements.
        expected_gamma_outcome: the gamma outcome under the protocol's gamma section when it follows from the
            deviations alone (see :func:`expected_gamma_outcome`), else ``None``.
        expected_gamma_reason: why (or why no outcome is predicted).
        check: what the submission is scored as (see :data:`PlanCheck`).
        expected_outcome: the oracle's outcome under the case's protocol (see :func:`plan_oracle`); ``None`` for a
            TPS check the deviations' closed forms do not decide.
        expected_reason: the oracle's reasons joined with ``"; "`` (or a per-protocol statement).
        measurements: the oracle's measurements, ``(structure, metric) -> value``.
        evaluation: the oracle's full protocol evaluation.
        borderline: criterion ids the oracle found within the RTDOSE storage tolerance of a level (see
            :attr:`PlanOracle.borderline`).
        gamma_pass_rate_bounds_percent: (lower, upper) bounds on the gamma pass rate (TPS check), else ``None``.
    """

    directory: Path
    provider: str
    case_id: str
    seed: int
    deviations: tuple[PlanDeviation, ...]
    rtplan_path: Path
    rtdose_path: Path
    reference: ModelDose
    submitted: ModelDose
    expected_effects: tuple[ExpectedEffect, ...]
    expected_gamma_outcome: OutcomeLevel | None = None
    expected_gamma_reason: str = ""
    check: PlanCheck = "planning"
    expected_outcome: OutcomeLevel | None = None
    expected_reason: str = ""
    measurements: dict[tuple[str, str], float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    borderline: tuple[str, ...] = ()
    gamma_pass_rate_bounds_percent: tuple[float, float] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            "directory": str(self.directory),
            "provider": self.provider,
            "case_id": self.case_id,
            "seed": self.seed,
            "deviations": [str(d) for d in self.deviations],
            "rtplan_path": str(self.rtplan_path),
            "rtdose_path": str(self.rtdose_path),
            "expected_gamma_outcome": self.expected_gamma_outcome.value if self.expected_gamma_outcome else None,
            "expected_gamma_reason": self.expected_gamma_reason,
            "check": self.check,
            "expected_outcome": self.expected_outcome.value if self.expected_outcome else None,
            "expected_reason": self.expected_reason,
            "borderline": list(self.borderline),
            "gamma_pass_rate_bounds_percent": (
                list(self.gamma_pass_rate_bounds_percent) if self.gamma_pass_rate_bounds_percent else None
            ),
            "measurements": [
                {"structure": s, "metric": m, "value": v} for (s, m), v in sorted(self.measurements.items())
            ],
            "expected_effects": [
                {
                    "deviation": e.deviation,
                    "structure": e.structure,
                    "metric": e.metric,
                    "reference": e.reference,
                    "expected": e.expected,
                    "tolerance": e.tolerance,
                    "measured": e.measured,
                    "basis": e.basis,
                }
                for e in self.expected_effects
            ],
        }


def simulate_plan_submission(
    case: BuiltCase,
    *,
    provider: str,
    deviations: Sequence[PlanDeviation],
    seed: int,
    out_dir: Path | str,
    overwrite: bool = False,
    check: PlanCheck | None = None,
) -> SimulatedPlanSubmission:
    """Write a simulated plan submission of ``provider`` for the planning case ``case`` into ``out_dir``.

    The centre plans on the case's CT and reference structures (copied byte for byte), so its RTPLAN references
    the case's RTSTRUCT; its RTPLAN and RTDOSE get new UIDs seeded by case, provider and ``seed``, and the dose
    is the reference dose model with ``deviations`` applied (see :func:`apply_plan_deviations`).

    The oracle outcome (``expected_outcome``) scores the deviated dose on the modelled grid with the case's
    protocol (see :func:`plan_oracle`): as a TPS check (gamma against the reference dose) when ``check`` is
    ``"tps_check"``, as a planning benchmark when it is ``"planning"``; by default a TPS check when any
    deviation is a dose deviation (``dose_scale_percent``, ``dose_shift_mm``, ``dose_noise_percent``), else a
    planning benchmark.

    Raises:
        SimulationError: the case has no plan, bad deviation, or ``out_dir`` holds other files and ``overwrite``
            is false.
    """
    if case.spec.plan is None:
        raise SimulationError(f"case {case.spec.case_id!r} is not a planning case (no reference plan)")
    if not provider.strip():
        raise SimulationError(f"provider must be non-empty, got {provider!r}")
    out = _prepare_output_dir(
        Path(out_dir), overwrite=overwrite, ours=re.compile(r"^(RTSTRUCT\.dcm|RTPLAN_.+\.dcm|RTDOSE_.+\.dcm)$")
    )
    deviations = tuple(deviations)
    rng = np.random.default_rng(seed)
    phantom = case.phantom()
    reference, submitted, effects = apply_plan_deviations(case.spec.plan, phantom, deviations, rng=rng)

    ct_out = out / CT_DIR_NAME
    ct_out.mkdir(parents=True, exist_ok=True)
    for path in sorted(case.ct_dir.glob("*.dcm")):
        shutil.copyfile(path, ct_out / path.name)
    rs_path = out / "RTSTRUCT.dcm"
    shutil.copyfile(case.rtstruct_path, rs_path)
    ct_info = read_ct_series_info(ct_out)
    part = _safe_file_part(provider)
    staging = out / ".staging"
    plan_tmp, dose_tmp = write_plan_and_dose(
        case.spec.plan,
        phantom,
        submitted,
        ct_info,
        rs_path,
        staging,
        uid_seed=f"rtqa-plan-submission/{case.spec.case_id}/{case.spec.version}/{provider}/{seed}",
        label=provider[:16],
        plan_name=f"{case.spec.case_id} {provider}",
        manufacturer=f"{provider} planning system"[:64],
    )
    plan_path = plan_tmp.replace(out / f"RTPLAN_{part}.dcm")
    dose_path = dose_tmp.replace(out / f"RTDOSE_{part}.dcm")
    staging.rmdir()
    protocol = load_protocol(case.spec.protocol_id)
    gamma_outcome, gamma_reason = expected_gamma_outcome(deviations, protocol.gamma)
    chosen: PlanCheck = check or plan_check_of(deviations)
    oracle = plan_oracle(protocol, case.spec.plan, reference, submitted, check=chosen, deviations=deviations)
    logger.info(
        "simulated %s plan submission of %s with %s: expected %s (%s)",
        provider,
        case.spec.case_id,
        [str(d) for d in deviations],
        oracle.outcome.value if oracle.outcome else "no outcome (not decided)",
        chosen,
    )
    return SimulatedPlanSubmission(
        directory=out,
        provider=provider,
        case_id=case.spec.case_id,
        seed=seed,
        deviations=deviations,
        rtplan_path=plan_path,
        rtdose_path=dose_path,
        reference=reference,
        submitted=submitted,
        expected_effects=effects,
        expected_gamma_outcome=gamma_outcome,
        expected_gamma_reason=gamma_reason,
        check=chosen,
        expected_outcome=oracle.outcome,
        expected_reason=oracle.reason,
        measurements=oracle.measurements,
        evaluation=oracle.evaluation,
        borderline=oracle.borderline,
        gamma_pass_rate_bounds_percent=(
            (oracle.gamma_bounds.lower_percent, oracle.gamma_bounds.upper_percent) if oracle.gamma_bounds else None
        ),
    )
