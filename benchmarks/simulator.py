"""Simulated centre submissions for benchmark cases, with an oracle outcome.

This module gathers the public names of :mod:`benchmarks.simulation` (one module per concern):

* contouring deviations applied in mm to the reference masks (:mod:`benchmarks.simulation.contours`);
* planning deviations applied to the analytic dose model and TPS-check dose deviations applied to the dose values
  (:mod:`benchmarks.simulation.plans`, :mod:`benchmarks.simulation.doses`), each with its expected effects
  (:mod:`benchmarks.simulation.effects`);
* the oracle: the outcome a correct pipeline should reach (:mod:`benchmarks.simulation.oracle`), measured with its
  own metric definitions (:mod:`benchmarks.simulation.definitions`) and, for TPS checks, bounds on the gamma pass
  rate from the deviations' closed forms (:mod:`benchmarks.simulation.gamma_bounds`); it imports no metric code of
  the scorer (:mod:`qa_checks`), so end-to-end tests comparing the two can catch a definition error in either;
* writing the submission folder (:mod:`benchmarks.simulation.output`).

Conventions: masks are (z, y, x); shifts are given as (dz, dy, dx) in LPS mm (+x patient left, +y posterior,
+z superior).
"""

from __future__ import annotations

from benchmarks.simulation.common import SimulationError
from benchmarks.simulation.contours import (
    JITTER_CORRELATION_MM,
    Deviation,
    DeviationKind,
    SubmittedStructure,
    apply_deviations,
    distance_to_voxels_mm,
    grow_mm,
    parse_deviation,
    shift_mm,
    smooth_mm,
)
from benchmarks.simulation.doses import dose_centroid_mm
from benchmarks.simulation.effects import ExpectedEffect, apply_plan_deviations, target_measurements
from benchmarks.simulation.gamma_bounds import GammaBounds, expected_gamma_outcome, gamma_pass_rate_bounds
from benchmarks.simulation.oracle import (
    STORED_DOSE_LEVELS,
    PlanOracle,
    oracle_measurements,
    plan_measurements,
    plan_oracle,
    planning_oracle,
    storage_tolerance,
    tps_check_oracle,
)
from benchmarks.simulation.output import (
    SimulatedPlanSubmission,
    SimulatedSubmission,
    simulate_plan_submission,
    simulate_submission,
)
from benchmarks.simulation.plans import PlanCheck, PlanDeviation, PlanDeviationKind, plan_check_of

__all__ = [
    "JITTER_CORRELATION_MM",
    "STORED_DOSE_LEVELS",
    "Deviation",
    "DeviationKind",
    "ExpectedEffect",
    "GammaBounds",
    "PlanCheck",
    "PlanDeviation",
    "PlanDeviationKind",
    "PlanOracle",
    "SimulatedPlanSubmission",
    "SimulatedSubmission",
    "SimulationError",
    "SubmittedStructure",
    "apply_deviations",
    "apply_plan_deviations",
    "distance_to_voxels_mm",
    "dose_centroid_mm",
    "expected_gamma_outcome",
    "gamma_pass_rate_bounds",
    "grow_mm",
    "oracle_measurements",
    "parse_deviation",
    "plan_check_of",
    "plan_measurements",
    "plan_oracle",
    "planning_oracle",
    "shift_mm",
    "simulate_plan_submission",
    "simulate_submission",
    "smooth_mm",
    "storage_tolerance",
    "target_measurements",
    "tps_check_oracle",
]
