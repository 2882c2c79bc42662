"""Time ``qa_checks.gamma.gamma_3d`` against ``pymedphys.gamma`` (0.41) on a SABR-like dose.

Run with ``python perf/bench_gamma.py`` (full: 150 x 200 x 200 voxels (z, y, x) at 2 mm) or
``python perf/bench_gamma.py --quick`` (75 x 100 x 100). The doses are those of :mod:`perf.gamma_case`: by default
(``--dose vmat``) a realistic TPS-check dose (about 356 000 points above the 10 % threshold); ``--dose compact`` a
compact one (about 31 000 points, where fixed costs dominate). Both implementations get the same parameters: global
gamma, 10 % low-dose threshold, normalisation to the maximum reference dose, search step distance / 10 (pymedphys
``interp_fraction=10``), at 3 %/2 mm and 2 %/1 mm.

Threads. Every run is a subprocess pinned to the same 2 CPUs, with BLAS and OpenMP limited to 2 threads and numba
to 2 (``NUMBA_NUM_THREADS``). Ours runs with ``--threads`` threads (default 2) and with 1. pymedphys's trilinear
interpolation is compiled by numba with ``parallel=True`` (``prange``), so it uses numba's threads, all CPUs by
default; the rest of it is single-threaded NumPy. It runs with 2 numba threads and with 1 (``numba.set_num_threads``).
Three ratios are printed: with the same number of threads on each side (2 against 2), single-threaded (1 against
1), and of CPU time (all threads, 2-thread runs).

Cases: *same grid* (the evaluated dose on the reference grid) and *non-aligned* (the TPS check: recalculated on a
2.5 mm grid off the reference lattice). For each case and criterion, ours and pymedphys run in one subprocess on
the same arrays, interleaved: each repeat times ours (the median of 3 calls, with ``--threads`` threads and with
1), then pymedphys (2 numba threads, then 1). Ratios are taken within a repeat and their range over the repeats is
printed; the load average is printed with each criterion (the machine may be shared). Memory: the ``tracemalloc``
peak of one call of ours (a separate, untimed call), against the size of the two grids; and the process's peak
resident memory (``ru_maxrss``, interpreter and arrays included) once the data are made, after three calls of ours
(before pymedphys runs) and at the end. pymedphys's numba JIT is warmed up on a tiny grid before timing.

Targets: same grid >= 20x faster and peak memory <= 1.5 GB; non-aligned >= 50x faster at 3 %/2 mm and at 2 %/1 mm,
pass rates within 0.1 percentage point, tracemalloc peak <= 2x the two grids.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.gamma_case import (
    DOSE_MODELS,
    FULL_SHAPE_ZYX,
    NON_ALIGNED_OFFSET_ZYX_MM,
    NON_ALIGNED_SPACING_MM,
    QUICK_SHAPE_ZYX,
    SPACING_MM,
    non_aligned_case,
    same_grid_case,
)

CRITERIA = ((3.0, 2.0), (2.0, 1.0))
"""(dose %, distance mm) pairs to time."""
CPUS = 2
"""CPUs every run is pinned to; BLAS, OpenMP and numba thread pools are limited to this."""
PEER_THREADS = (2, 1)
"""numba threads of pymedphys's interpolation."""
OURS_CALLS = 3
"""Calls of ours per timed sample (their median is the sample)."""
SPEED_TARGETS = {"same-grid": 20.0, "non-aligned": 50.0}
"""Required pymedphys / ours time ratio per case."""
PASS_RATE_TOLERANCE_PP = 0.1
"""Required agreement of the pass rates, in percentage points."""
NON_ALIGNED_MEMORY_FACTOR = 2.0
"""Non-aligned: the tracemalloc peak of one call of ours may be at most this many times the two grids."""

Grids = tuple[
    tuple[npt.NDArray[np.float64], ...],
    npt.NDArray[np.float64],
    tuple[npt.NDArray[np.float64], ...],
    npt.NDArray[np.float64],
]


def _timed(call: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, CPU s of the process, result) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    result = call()
    return time.perf_counter() - start, time.process_time() - cpu, result


def _ours(grids: Grids, criterion: tuple[float, float], threads: int) -> Callable[[], Any]:
    from qa_checks.gamma import gamma_3d
    from qa_checks.geometry import DoseGrid

    ref_axes, reference, eval_axes, evaluated = grids
    ref_grid = DoseGrid(reference, ref_axes[0], ref_axes[1], ref_axes[2])
    eval_grid = DoseGrid(evaluated, eval_axes[0], eval_axes[1], eval_axes[2])
    return lambda: gamma_3d(
        ref_grid,
        eval_grid,
        dose_percent=criterion[0],
        distance_mm=criterion[1],
        lower_cutoff_percent=10.0,
        threads=threads,
    )


def _peer(grids: Grids, criterion: tuple[float, float]) -> Callable[[], Any]:
    import pymedphys

    ref_axes, reference, eval_axes, evaluated = grids
    small = tuple(axis[:6] for axis in ref_axes)
    pymedphys.gamma(small, reference[:6, :6, :6], small, reference[:6, :6, :6], 3, 2, lower_percent_dose_cutoff=0)
    return lambda: pymedphys.gamma(
        ref_axes,
        reference,
        eval_axes,
        evaluated,
        criterion[0],
        criterion[1],
        lower_percent_dose_cutoff=10,
        interp_fraction=10,
        local_gamma=False,
        random_subset=None,
    )


def _ours_sample(call: Callable[[], Any]) -> tuple[float, float, Any]:
    runs = [_timed(call) for _ in range(OURS_CALLS)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[-1][2]


def _peer_pass_rate(gamma: npt.NDArray[np.float64]) -> tuple[float, int]:
    valid = gamma[~np.isnan(gamma)]
    return 100.0 * float(np.mean(valid <= 1)), int(valid.size)


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """ours and pymedphys, interleaved, on one case (``args.worker``: ``same-grid`` or ``non-aligned``)."""
    import tracemalloc

    import numba

    if args.worker == "non-aligned":
        grids = non_aligned_case(tuple(args.shape), args.dose)
    else:
        (z, y, x), (reference, evaluated) = same_grid_case(tuple(args.shape), args.dose)
        grids = ((z, y, x), reference, (z, y, x), evaluated)
    criterion = (args.criterion[0], args.criterion[1])
    rss_data_mb = _rss_mb()
    ours = {threads: _ours(grids, criterion, threads) for threads in (args.threads, 1)}
    for call in ours.values():
        call()  # warm-up (first-touch page faults)
    tracemalloc.start()
    ours[args.threads]()
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_ours_mb = _rss_mb()
    peer = _peer(grids, criterion)
    samples: dict[str, list[list[float]]] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for threads, call in ours.items():
            wall, cpu, result = _ours_sample(call)
            samples.setdefault(f"ours_{threads}", []).append([wall, cpu])
        for threads in PEER_THREADS:
            numba.set_num_threads(threads)
            wall, cpu, gamma = _timed(peer)
            samples.setdefault(f"peer_{threads}", []).append([wall, cpu])
        loads.append(os.getloadavg()[0])
    peer_rate, peer_n = _peer_pass_rate(gamma)
    return {
        "samples": samples,
        "loads": loads,
        "ours_pass_rate_percent": result.pass_rate_percent,
        "ours_n_evaluated": result.n_evaluated,
        "peer_pass_rate_percent": peer_rate,
        "peer_n_evaluated": peer_n,
        "ours_tracemalloc_peak_mb": peak_bytes / 2**20,
        "grids_mb": (grids[1].nbytes + grids[3].nbytes) / 2**20,
        "eval_shape": list(grids[3].shape),
        "rss_mb": [rss_data_mb, rss_ours_mb, _rss_mb()],
    }


def _subprocess(
    worker: str, args: argparse.Namespace, shape: tuple[int, int, int], criterion: tuple[float, float]
) -> dict[str, Any]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(CPUS)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        worker,
        "--shape",
        *(str(n) for n in shape),
        "--dose",
        args.dose,
        "--criterion",
        *(str(v) for v in criterion),
        "--repeat",
        str(args.repeat),
        "--threads",
        str(args.threads),
    ]
    cpus = sorted(os.sched_getaffinity(0))[:CPUS] if hasattr(os, "sched_getaffinity") else []
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True, preexec_fn=preexec)
    output: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return output


def _summary(samples: list[list[float]]) -> str:
    walls = [s[0] for s in samples]
    cpus = [s[1] for s in samples]
    return f"{statistics.median(walls):.3f} s ({min(walls):.3f}-{max(walls):.3f}), CPU {statistics.median(cpus):.3f} s"


def _ratios(peer: list[list[float]], ours: list[list[float]], column: int) -> str:
    """Median and range over the repeats of peer / ours (column 0: wall, 1: CPU), paired by repeat."""
    values = [p[column] / o[column] for p, o in zip(peer, ours, strict=True)]
    return f"{statistics.median(values):.0f}x ({min(values):.0f}-{max(values):.0f})"


def _targets(case: str, out: dict[str, Any], threads: int) -> None:
    """One line: each target met or not (speed: the median wall-clock and CPU ratios, same number of threads)."""
    samples = out["samples"]
    ours, peer = samples[f"ours_{threads}"], samples[f"peer_{PEER_THREADS[0]}"]
    wall = statistics.median(p[0] / o[0] for p, o in zip(peer, ours, strict=True))
    cpu = statistics.median(p[1] / o[1] for p, o in zip(peer, ours, strict=True))
    target = SPEED_TARGETS[case]
    diff = abs(out["ours_pass_rate_percent"] - out["peer_pass_rate_percent"])
    verdicts = [
        f"speed >= {target:.0f}x: wall {'met' if wall >= target else 'NOT met'} ({wall:.0f}x), "
        f"CPU {'met' if cpu >= target else 'NOT met'} ({cpu:.0f}x)",
        f"pass rates within {PASS_RATE_TOLERANCE_PP} pp: {'met' if diff <= PASS_RATE_TOLERANCE_PP else 'NOT met'}",
    ]
    if case == "non-aligned":
        factor = out["ours_tracemalloc_peak_mb"] / out["grids_mb"]
        met = factor <= NON_ALIGNED_MEMORY_FACTOR
        verdicts.append(
            f"peak <= {NON_ALIGNED_MEMORY_FACTOR:.0f}x the grids: {'met' if met else 'NOT met'} ({factor:.2f}x)"
        )
    print(f"{'':>4}targets: " + "; ".join(verdicts))


def _report(samples: dict[str, list[list[float]]], threads: int) -> None:
    for threads_ours in (threads, 1):
        print(f"{'':>4}ours, {threads_ours} thread(s): {_summary(samples[f'ours_{threads_ours}'])}")
    for threads_peer in PEER_THREADS:
        print(f"{'':>4}pymedphys, {threads_peer} numba thread(s): {_summary(samples[f'peer_{threads_peer}'])}")
    ours_n, peer_n = samples[f"ours_{threads}"], samples[f"peer_{PEER_THREADS[0]}"]
    print(
        f"{'':>4}ratio, {threads} vs {PEER_THREADS[0]} threads: wall {_ratios(peer_n, ours_n, 0)}, "
        f"CPU {_ratios(peer_n, ours_n, 1)}; single-threaded (1 vs 1): wall "
        f"{_ratios(samples['peer_1'], samples['ours_1'], 0)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SHAPE_ZYX} grid instead of {FULL_SHAPE_ZYX}")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per implementation (default 3)")
    parser.add_argument("--threads", type=int, default=CPUS, help=f"threads of ours (default {CPUS}); also run on 1")
    parser.add_argument(
        "--case",
        choices=("all", "same-grid", "non-aligned"),
        default="all",
        help="evaluated dose on the reference grid, on a non-aligned 2.5 mm grid, or both (default)",
    )
    parser.add_argument(
        "--dose",
        choices=DOSE_MODELS,
        default=DOSE_MODELS[0],
        help="reference dose: realistic VMAT-like bath (default) or the compact spheroid (see perf/gamma_case.py)",
    )
    parser.add_argument("--worker", choices=("same-grid", "non-aligned"), help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--criterion", type=float, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return

    shape = QUICK_SHAPE_ZYX if args.quick else FULL_SHAPE_ZYX
    print(
        f"{args.dose} dose, reference (z, y, x) {shape} at {SPACING_MM} mm; runs pinned to {CPUS} CPUs; "
        f"{args.repeat} repeats (ours: median of {OURS_CALLS} calls each); times: median (range) over the repeats"
    )
    for case in ("same-grid", "non-aligned"):
        if args.case not in ("all", case):
            continue
        if case == "same-grid":
            print("same grid: the evaluated dose on the reference grid (both in one process, interleaved)")
        else:
            print(
                f"non-aligned: evaluated at {NON_ALIGNED_SPACING_MM} mm, origin offset {NON_ALIGNED_OFFSET_ZYX_MM} "
                f"mm (both in one process, interleaved)"
            )
        for criterion in CRITERIA:
            out = _subprocess(case, args, shape, criterion)
            ours_rate, peer_rate = out["ours_pass_rate_percent"], out["peer_pass_rate_percent"]
            rss_data, rss_ours, rss_all = out["rss_mb"]
            print(
                f"  {criterion[0]:.0f}%/{criterion[1]:.0f} mm: pass rate ours {ours_rate:.3f} %, pymedphys "
                f"{peer_rate:.3f} % (diff {ours_rate - peer_rate:+.3f} pp; {out['ours_n_evaluated']} / "
                f"{out['peer_n_evaluated']} points; evaluated grid {out['eval_shape']}); load average "
                f"{min(out['loads']):.1f}-{max(out['loads']):.1f}"
            )
            print(
                f"{'':>4}memory: tracemalloc peak of one call of ours {out['ours_tracemalloc_peak_mb']:.1f} MiB "
                f"(grids {out['grids_mb']:.1f} MiB); process peak RSS {rss_data:.0f} MB with the data, "
                f"{rss_ours:.0f} MB after ours (before pymedphys), {rss_all:.0f} MB at the end"
            )
            _report(out["samples"], args.threads)
            _targets(case, out, args.threads)


if __name__ == "__main__":
    main()
