"""Time scoring one clinical-size submission end to end, from DICOM files, as ``flows/scoring.py`` does.

Run with ``python perf/bench_submission.py`` (options: ``--repeat N``, ``--data DIR`` to build the DICOM data once
and reuse it, ``--top N`` profile lines). The data (see ``perf/submission_case.py``): CT 150 × 512 × 512 at
2.0 × 0.977 × 0.977 mm, 20 structures, a 54 Gy / 3 fraction lung SABR plan with its dose at about 2 mm, and a
TPS-check dose on a 2.5 mm grid offset from the reference grid. Building it is timed apart and not counted.

Stages, each run ``--repeat`` times in a fresh subprocess (2 threads for BLAS / OpenMP) after one profiled run:

* outlining: ``load_submission`` of the submission (CT + RTSTRUCT) and of the reference case, then
  ``score_outlining`` on the protocol's outlining structures (``uk-lung-sabr``: 7). Target <= 5 s.
* planning: ``load_submission(sum_beams=True)`` of the plan submission (CT, RTSTRUCT, RTPLAN, RTDOSE) and
  ``score_plan`` with the protocol's criteria, built by the same ``criteria_for`` / ``dose_by_size`` as
  ``flows.scoring._store_planning``.
* TPS check: ``load_submission`` of the TPS dose and of the reference case's RTDOSE
  (``flows.scoring.reference_dose_files``), then ``score_dosimetry`` with the protocol's gamma parameters
  (3 % / 2 mm, global, 10 % cutoff). Planning + TPS check: target <= 20 s.

Phases are exclusive times of wrapped library functions (a phase called inside another is not counted twice);
"other" is the rest of the stage. Peak memory is the subprocess's maximum resident set (``VmHWM``), which
includes the interpreter and imports. The first run of each stage is profiled with cProfile and not timed.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

THREADS = 2
STAGES = ("outlining", "planning", "tps")
PHASES: tuple[tuple[str, str, str], ...] = (
    ("qa_checks.dicom_io", "_read_dataset", "load: read files (pydicom)"),
    ("qa_checks.dicom_io", "_ct_from_datasets", "load: CT volume"),
    ("qa_checks.dicom_io", "_rtstruct_from_dataset", "load: RTSTRUCT"),
    ("qa_checks.dicom_io", "_rtplan_from_dataset", "load: RTPLAN"),
    ("qa_checks.dicom_io", "_submission_dose", "load: RTDOSE"),
    ("qa_checks.dicom_io", "_check_structure_set_references_ct", "load: cross-checks"),
    *((m, "rasterise", "rasterise") for m in ("outlining", "planning", "dvh", "plan_indices", "target_geometry")),
    ("qa_checks.grid_coverage", "rasterise", "rasterise"),
    ("qa_checks.outlining", "map_structure_names", "name matching"),
    ("qa_checks.planning", "map_structure_names", "name matching"),
    ("qa_checks.outlining", "overlap_metrics", "overlap metrics"),
    ("qa_checks.outlining", "surface_metrics", "surface distances"),
    ("qa_checks.planning", "resolve_targets", "prescriptions"),
    ("qa_checks.planning", "compute_target_indices", "plan indices"),
    ("qa_checks.planning", "compute_dvh", "DVH"),
    ("qa_checks.plan_indices", "compute_dvh", "DVH"),
    ("qa_checks.planning", "structure_grid_coverage", "grid coverage"),
    ("qa_checks.dosimetry", "gamma_3d", "gamma"),
)
"""(module, function, phase): functions timed by wrapping the module attribute (short module names are in
``qa_checks``)."""


class PhaseClock:
    """Exclusive time per phase of wrapped functions: a wrapped call inside another is subtracted from it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self._inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[phase] += elapsed - self._inner.pop()
                if self._inner:
                    self._inner[-1] += elapsed

        return timed

    def install(self) -> None:
        for module_name, attribute, phase in PHASES:
            module = importlib.import_module(module_name if "." in module_name else f"qa_checks.{module_name}")
            setattr(module, attribute, self.wrap(phase, getattr(module, attribute)))


def _stage(name: str, data: Path) -> Callable[[], str]:
    """The work of one stage, as a function returning a one-line summary of its result."""
    from benchmarks.cases import reference_files
    from benchmarks.protocols import load_protocol
    from flows.scoring import reference_dose_files, score_by_protocol
    from qa_checks.dicom_io import load_submission
    from qa_checks.dosimetry import score_dosimetry
    from qa_checks.outlining import score_outlining

    protocol = load_protocol("uk-lung-sabr")
    reference_dir = data / "reference"

    def outlining() -> str:
        submitted = load_submission(data / "outlining")
        reference = load_submission(reference_files(reference_dir))
        assert submitted.structure_set is not None and reference.structure_set is not None and reference.ct is not None
        structures = [c.structure for c in protocol.outlining_criteria()]
        score = score_outlining(reference.structure_set, submitted.structure_set, reference.ct, structures=structures)
        return ", ".join(f"{s.structure} Dice {s.measurements()['dice'][0]:.3f}" for s in score.scores)

    def planning() -> str:
        submitted = load_submission(data / "planning", sum_beams=True)
        score = score_by_protocol(submitted, protocol)
        return (
            f"{len(score.measurements)} measurements, {len(score.criteria)} criteria, "
            f"outcome {score.evaluation.outcome}, {len(score.warnings)} warnings"
        )

    def tps() -> str:
        submitted = load_submission(data / "tps", sum_beams=True)
        reference = load_submission(reference_dose_files(reference_dir))
        assert submitted.dose is not None and reference.dose is not None
        params = protocol.gamma_parameters()
        score = score_dosimetry(reference.dose, submitted.dose, **params)
        return f"gamma {params['dose_percent']}%/{params['distance_mm']} mm pass rate {score.pass_rate_percent:.2f}%"

    return {"outlining": outlining, "planning": planning, "tps": tps}[name]


def _profile_lines(profile: cProfile.Profile, top: int) -> list[str]:
    stats = pstats.Stats(profile)
    rows = []
    for (path, line, function), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = "/".join(Path(path).parts[-2:]) if path != "~" else "builtin"
        rows.append((own, cumulative, calls, f"{where}:{line}({function})"))
    rows.sort(reverse=True)
    return [f"{own:7.2f} s own {cum:7.2f} s cum {calls:8d} calls  {name}" for own, cum, calls, name in rows[:top]]


def _peak_rss_mb() -> float:
    """Peak resident set of this process in MB: ``VmHWM`` of /proc/self/status, which starts again at exec (Linux
    keeps ``ru_maxrss`` across exec, so a child would report the parent's peak from building the data)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(stage: str, data: Path, repeat: int, top: int) -> None:
    work = _stage(stage, data)
    profile = cProfile.Profile()
    profile.enable()
    summary = work()
    profile.disable()
    clock = PhaseClock()
    clock.install()
    runs = []
    for _ in range(repeat):
        clock.seconds.clear()
        start = time.perf_counter()
        work()
        total = time.perf_counter() - start
        runs.append({"total_s": total, "phases": dict(clock.seconds)})
    peak_mb = _peak_rss_mb()
    out = {"runs": runs, "peak_rss_mb": peak_mb, "summary": summary, "profile": _profile_lines(profile, top)}
    print(json.dumps(out))


def _run_stage(stage: str, data: Path, repeat: int, top: int) -> dict[str, Any]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(THREADS)
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", stage, "--data", str(data)]
    command += ["--repeat", str(repeat), "--top", str(top)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{stage} worker failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, load average {load}"


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s  (range {min(values):.2f}-{max(values):.2f} s)"


def _report(stage: str, result: dict[str, Any]) -> list[float]:
    totals = [r["total_s"] for r in result["runs"]]
    print(f"\n== {stage}: {_spread(totals)}, peak RSS {result['peak_rss_mb']:.0f} MB")
    print(f"   result: {result['summary']}")
    phases = sorted({p for r in result["runs"] for p in r["phases"]})
    by_phase = {p: [r["phases"].get(p, 0.0) for r in result["runs"]] for p in phases}
    by_phase["other"] = [r["total_s"] - sum(r["phases"].values()) for r in result["runs"]]
    for phase, values in sorted(by_phase.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"   {phase:28s} {_spread(values)}")
    print("   profile (first run, cProfile, by own time):")
    for line in result["profile"]:
        print(f"     {line}")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per stage (default 3)")
    parser.add_argument("--data", type=Path, help="folder for the DICOM data, built if incomplete, kept")
    parser.add_argument("--top", type=int, default=12, help="profile lines per stage (default 12)")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.data, args.repeat, args.top)
        return

    with tempfile.TemporaryDirectory(prefix="rtqa-bench-submission-") as scratch:
        data = args.data or Path(scratch)
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from submission_case import DONE, build

        if not (data / DONE).is_file():
            start = time.perf_counter()
            description = build(data)
            print(f"data built in {time.perf_counter() - start:.1f} s (not counted) in {data}")
        else:
            description = dict(line.split(": ", 1) for line in (data / DONE).read_text().splitlines())
            print(f"data reused from {data}")
        for key, value in description.items():
            print(f"  {key}: {value}")
        print(f"machine: {_machine()}; {THREADS} threads per stage")
        totals = {stage: _report(stage, _run_stage(stage, data, args.repeat, args.top)) for stage in STAGES}
    combined = [p + t for p, t in zip(totals["planning"], totals["tps"], strict=True)]
    print(f"\noutlining stage: {_spread(totals['outlining'])}; target <= 5 s")
    print(f"planning + TPS check: {_spread(combined)}; target <= 20 s")


if __name__ == "__main__":
    main()
