"""Simulated centre submissions for benchmark cases, with an oracle outcome (see :mod:`benchmarks.simulator`).

Modules, by concern:

* :mod:`~benchmarks.simulation.common`: the error class and shared types.
* :mod:`~benchmarks.simulation.contours`: contouring deviations applied to reference masks in mm.
* :mod:`~benchmarks.simulation.plans`: planning and TPS-check deviation kinds and the planning deviations applied
  to the analytic dose model.
* :mod:`~benchmarks.simulation.doses`: TPS-check deviations applied to dose values.
* :mod:`~benchmarks.simulation.effects`: applying plan deviations and each one's expected effect.
* :mod:`~benchmarks.simulation.oracle`: expected outcomes (contour, planning and TPS-check oracles).
* :mod:`~benchmarks.simulation.output`: writing the submission folder.
"""
