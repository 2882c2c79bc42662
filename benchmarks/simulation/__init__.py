"""Simulated centre submissions for benchmark cases, with an oracle outcome (see :mod:`benchmarks.simulator`).

Modules, by concern:

* :mod:`~benchmarks.simulation.common`: the error class and shared types.
* :mod:`~benchmarks.simulation.contours`: contouring deviations applied to reference masks in mm.
* :mod:`~benchmarks.simulation.plans`: planning and TPS-check deviation kinds and the planning deviations applied
  to the analytic dose model.
* :mod:`~benchmarks.simulation.doses`: TPS-check deviations applied to dose values.
* :mod:`~benchmarks.simulation.effects`: applying plan deviations and each one's expected effect.
* :mod:`~benchmarks.simulation.oracle`: expected outcomes (contour, planning and TPS-check oracles).
* :mod:`~benchmarks.simulation.definitions`: the oracle's own plan metric definitions (voxel counting).
* :mod:`~benchmarks.simulation.gamma_bounds`: the TPS-check oracle's bounds on the gamma pass rate.

No module here imports a metric module of :mod:`qa_checks` (only :mod:`qa_checks.protocol`,
:mod:`qa_checks.geometry` and :mod:`qa_checks.errors`): the oracle is independent of the scorer it checks
(enforced by ``tests/benchmarks/test_oracle_independence.py``).
* :mod:`~benchmarks.simulation.output`: writing the submission folder.
"""
