"""Time ``qa_checks.gamma.gamma_3d`` against ``pymedphys.gamma`` (0.41) on a SABR-like dose.

Run with ``python perf/bench_gamma.py`` (full: 150 x 200 x 200 voxels (z, y, x) at 2 mm) or
``python perf/bench_gamma.py --quick`` (75 x 100 x 100). The reference dose is a steep fall-off spheroid (a
SABR-like 60 Gy target of about 30 mm diameter) with a low-dose bath: by default (``--dose vmat``) a VMAT-like bath
spreading about 100 mm through the axial plane, so that about 356 000 points lie above the 10% threshold as in a
realistic TPS check; ``--dose compact`` gives the earlier compact bath (about 31 000 points, where fixed costs
dominate). See :func:`sabr_like_dose`. The evaluated dose is the same dose shifted 1 mm in y, scaled by 1.02 and
with Gaussian noise of 1% of the prescription (seeded). Both implementations get
the same parameters: global gamma, 10% low-dose threshold, normalisation to the maximum reference dose, search
step distance / 10 (pymedphys ``interp_fraction=10``), at 3%/2 mm and 2%/1 mm.

Second case, *non-aligned* (the TPS check, where the centre recalculates on its own grid): the same reference;
the evaluated dose computed on a 2.5 mm grid (120 x 160 x 160 for the full size) whose origin is off the
reference lattice by (0.5, 0.7, 1.1) mm (z, y, x), with the same 1 mm shift, 2% scale and 1% noise. Ours and
pymedphys run one after the other in one subprocess on the same arrays. Peak memory of our call is measured with
``tracemalloc`` (in a separate, untimed call) and compared with the size of the two grids.

For the same-grid case, each implementation runs in its own subprocess pinned to the same 2 cores (BLAS,
OpenMP and numba limited to 2 threads), so that its peak resident memory (``resource.getrusage`` max RSS, which
includes the Python interpreter and the input arrays) can be measured separately. pymedphys's numba JIT is
warmed up on a tiny grid before timing. Times are the median (and minimum) of ``--repeat`` runs in the same
process; the machine may be shared, so the median is the figure to quote. For the non-aligned case the CPU times
of both (all threads) and their ratio are printed too, as they suffer less from other jobs on the machine.
Targets: same grid >= 20x faster and peak memory <= 1.5 GB; non-aligned >= 50x faster, pass rates within
0.1 percentage point, tracemalloc peak <= 2x the two grids.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

FULL_SHAPE_ZYX = (150, 200, 200)
QUICK_SHAPE_ZYX = (75, 100, 100)
SPACING_MM = 2.0
CRITERIA = ((3.0, 2.0), (2.0, 1.0))
"""(dose %, distance mm) pairs to time."""
THREADS = 2
NON_ALIGNED_SPACING_MM = 2.5
NON_ALIGNED_OFFSET_ZYX_MM = (0.5, 0.7, 1.1)
DOSE_MODELS = ("vmat", "compact")
"""Reference dose shapes of :func:`sabr_like_dose`; the first is the default."""


def sabr_like_dose(
    shape_zyx: tuple[int, int, int],
    spacing_mm: float,
    *,
    shift_zyx_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    origin_shift_zyx_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    noise_fraction: float = 0.0,
    rng: np.random.Generator | None = None,
    prescription_gy: float = 60.0,
    dose_model: str = "vmat",
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(z_mm, y_mm, x_mm, dose_gy (z, y, x)): a spheroidal target with a steep sigmoid edge and a low-dose bath,
    centred at ``shift_zyx_mm``, on a grid centred on ``origin_shift_zyx_mm``.

    The target is the spheroid of semi-axes (15, 18, 13.5) mm (z, y, x), with a sigmoid edge of 2.5 mm. Dose in
    units of ``prescription_gy``: ``core * sigmoid + bath * exp(-d / lambda)``, ``d`` the distance outside the
    target along the spheroid's radius (bath = its surface value inside). ``dose_model``:

    * ``"vmat"`` (the realistic TPS-check dose): core 0.8, bath 0.3 at the target surface (as
      :mod:`benchmarks.dose_model`), fall-off ``lambda`` 35 mm along z and 100 mm in the axial (y, x) plane, the
      plane of a coplanar VMAT arc, which spreads low dose through the body; the 10 % isodose of the maximum then
      encloses about 2.8 litres (a few hundred thousand 2 mm voxels).
    * ``"compact"``: core 0.75, bath 0.25, ``lambda`` 25 mm in every direction; the 10 % isodose encloses about
      0.25 litre (about 31 000 voxels), so fixed costs dominate a gamma calculation.
    """
    if dose_model not in DOSE_MODELS:
        raise ValueError(f"dose_model must be one of {DOSE_MODELS}; got {dose_model!r}")
    axes = [
        (np.arange(n, dtype=np.float64) - (n - 1) / 2) * spacing_mm + o
        for n, o in zip(shape_zyx, origin_shift_zyx_mm, strict=True)
    ]
    z, y, x = np.meshgrid(*(a - s for a, s in zip(axes, shift_zyx_mm, strict=True)), indexing="ij", sparse=True)
    radius_mm = np.sqrt(z**2 + (y / 1.2) ** 2 + (x / 0.9) ** 2)
    core = 1.0 / (1.0 + np.exp((radius_mm - 15.0) / 2.5))
    outside_mm = np.maximum(radius_mm - 15.0, 0.0)
    if dose_model == "compact":
        relative = 0.75 * core + 0.25 * np.exp(-outside_mm / 25.0)
    else:
        # fall-off length along the direction (z, y, x) / |(z, y, x)|: 1 / lambda² = cos² / 35² + sin² / 100²
        cos2 = z**2 / np.maximum(z**2 + y**2 + x**2, 1e-12)
        inv_length = np.sqrt(cos2 / 35.0**2 + (1.0 - cos2) / 100.0**2)
        relative = 0.8 * core + 0.3 * np.exp(-outside_mm * inv_length)
    dose: npt.NDArray[np.float64] = prescription_gy * scale * relative
    if noise_fraction:
        if rng is None:
            raise ValueError("noise needs an rng")
        dose = np.clip(dose + rng.normal(0.0, noise_fraction * prescription_gy, dose.shape), 0.0, None)
    return axes[0], axes[1], axes[2], dose


def _case(shape_zyx: tuple[int, int, int], dose_model: str) -> tuple[tuple[npt.NDArray[np.float64], ...], ...]:
    rng = np.random.default_rng(20261123)
    z, y, x, reference = sabr_like_dose(shape_zyx, SPACING_MM, dose_model=dose_model)
    _, _, _, evaluated = sabr_like_dose(
        shape_zyx,
        SPACING_MM,
        shift_zyx_mm=(0.0, 1.0, 0.0),
        scale=1.02,
        noise_fraction=0.01,
        rng=rng,
        dose_model=dose_model,
    )
    return (z, y, x), (reference, evaluated)


def _non_aligned_case(
    shape_zyx: tuple[int, int, int], dose_model: str
) -> tuple[
    tuple[npt.NDArray[np.float64], ...],
    npt.NDArray[np.float64],
    tuple[npt.NDArray[np.float64], ...],
    npt.NDArray[np.float64],
]:
    """(reference axes, reference dose, evaluated axes, evaluated dose): the evaluated dose on the 2.5 mm grid."""
    (z, y, x), (reference, _) = _case(shape_zyx, dose_model)
    eval_shape = tuple(round((n - 1) * SPACING_MM / NON_ALIGNED_SPACING_MM) + 1 for n in shape_zyx)
    rng = np.random.default_rng(20261123)
    ez, ey, ex, evaluated = sabr_like_dose(
        eval_shape,  # type: ignore[arg-type]
        NON_ALIGNED_SPACING_MM,
        origin_shift_zyx_mm=NON_ALIGNED_OFFSET_ZYX_MM,
        shift_zyx_mm=(0.0, 1.0, 0.0),
        scale=1.02,
        noise_fraction=0.01,
        rng=rng,
        dose_model=dose_model,
    )
    return (z, y, x), reference, (ez, ey, ex), evaluated


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pymedphys_pass_rate(gamma: npt.NDArray[np.float64]) -> tuple[float, int]:
    valid = gamma[~np.isnan(gamma)]
    return 100.0 * float(np.mean(valid <= 1)), int(valid.size)


def _non_aligned_worker(
    shape_zyx: tuple[int, int, int], dose_model: str, dose_percent: float, distance_mm: float, repeat: int
) -> None:
    """Run ours, then pymedphys, ``repeat`` times each on the non-aligned case; print one JSON line."""
    import tracemalloc

    import pymedphys

    from qa_checks.gamma import GammaResult, gamma_3d
    from qa_checks.geometry import DoseGrid

    ref_axes, reference, eval_axes, evaluated = _non_aligned_case(shape_zyx, dose_model)
    ref_grid = DoseGrid(reference, ref_axes[0], ref_axes[1], ref_axes[2])
    eval_grid = DoseGrid(evaluated, eval_axes[0], eval_axes[1], eval_axes[2])

    def ours() -> GammaResult:
        return gamma_3d(
            ref_grid, eval_grid, dose_percent=dose_percent, distance_mm=distance_mm, lower_cutoff_percent=10
        )

    ours()  # warm-up (first-touch page faults)
    tracemalloc.start()
    ours()
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ours_wall, ours_cpu = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = ours()
        ours_wall.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - cpu)

    small = tuple(axis[:6] for axis in ref_axes)
    pymedphys.gamma(small, reference[:6, :6, :6], small, reference[:6, :6, :6], 3, 2, lower_percent_dose_cutoff=0)
    peer_wall, peer_cpu = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        gamma = pymedphys.gamma(
            ref_axes,
            reference,
            eval_axes,
            evaluated,
            dose_percent,
            distance_mm,
            lower_percent_dose_cutoff=10,
            interp_fraction=10,
            local_gamma=False,
            random_subset=None,
        )
        peer_wall.append(time.perf_counter() - start)
        peer_cpu.append(time.process_time() - cpu)
    peer_rate, peer_n = _pymedphys_pass_rate(gamma)
    print(
        json.dumps(
            {
                "ours_times_s": ours_wall,
                "ours_cpu_s": ours_cpu,
                "ours_pass_rate_percent": result.pass_rate_percent,
                "ours_n_evaluated": result.n_evaluated,
                "ours_tracemalloc_peak_mb": peak_bytes / 2**20,
                "grids_mb": (reference.nbytes + evaluated.nbytes) / 2**20,
                "peer_times_s": peer_wall,
                "peer_cpu_s": peer_cpu,
                "peer_pass_rate_percent": peer_rate,
                "peer_n_evaluated": peer_n,
                "eval_shape": list(evaluated.shape),
            }
        )
    )


def _worker(
    implementation: str,
    shape_zyx: tuple[int, int, int],
    dose_model: str,
    dose_percent: float,
    distance_mm: float,
    repeat: int,
) -> None:
    """Run one implementation ``repeat`` times and print a JSON line with timings, pass rate and memory."""
    (z, y, x), (reference, evaluated) = _case(shape_zyx, dose_model)
    rss_before_mb = _rss_mb()
    times = []
    if implementation == "ours":
        from qa_checks.gamma import gamma_3d
        from qa_checks.geometry import DoseGrid

        ref_grid = DoseGrid(reference, z, y, x)
        eval_grid = DoseGrid(evaluated, z, y, x)
        rss_before_mb = _rss_mb()
        for _ in range(repeat):
            start = time.perf_counter()
            result = gamma_3d(
                ref_grid, eval_grid, dose_percent=dose_percent, distance_mm=distance_mm, lower_cutoff_percent=10.0
            )
            times.append(time.perf_counter() - start)
        pass_rate, n_evaluated = result.pass_rate_percent, result.n_evaluated
    else:
        import pymedphys

        small = (z[:6], y[:6], x[:6])
        pymedphys.gamma(small, reference[:6, :6, :6], small, evaluated[:6, :6, :6], 3, 2, lower_percent_dose_cutoff=0)
        rss_before_mb = _rss_mb()
        for _ in range(repeat):
            start = time.perf_counter()
            gamma = pymedphys.gamma(
                (z, y, x),
                reference,
                (z, y, x),
                evaluated,
                dose_percent,
                distance_mm,
                lower_percent_dose_cutoff=10,
                interp_fraction=10,
                local_gamma=False,
                random_subset=None,
            )
            times.append(time.perf_counter() - start)
        pass_rate, n_evaluated = _pymedphys_pass_rate(gamma)
    print(
        json.dumps(
            {
                "times_s": times,
                "pass_rate_percent": pass_rate,
                "n_evaluated": n_evaluated,
                "rss_before_mb": rss_before_mb,
                "peak_rss_mb": _rss_mb(),
            }
        )
    )


def _run(
    implementation: str,
    shape_zyx: tuple[int, int, int],
    dose_model: str,
    criterion: tuple[float, float],
    repeat: int,
) -> dict[str, object]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(THREADS)
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        implementation,
        "--shape",
        *(str(n) for n in shape_zyx),
        "--dose",
        dose_model,
        "--criterion",
        *(str(v) for v in criterion),
        "--repeat",
        str(repeat),
    ]
    cpus = sorted(os.sched_getaffinity(0))[:THREADS] if hasattr(os, "sched_getaffinity") else []
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True, preexec_fn=preexec)
    output: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"use a {QUICK_SHAPE_ZYX} grid instead of {FULL_SHAPE_ZYX}"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per implementation (default 3)")
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
        help="reference dose: realistic VMAT-like bath (default) or the compact spheroid (see sabr_like_dose)",
    )
    parser.add_argument("--worker", choices=("ours", "pymedphys", "non-aligned"), help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--criterion", type=float, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "non-aligned":
        _non_aligned_worker(tuple(args.shape), args.dose, args.criterion[0], args.criterion[1], args.repeat)
        return
    if args.worker:
        _worker(args.worker, tuple(args.shape), args.dose, args.criterion[0], args.criterion[1], args.repeat)
        return

    shape = QUICK_SHAPE_ZYX if args.quick else FULL_SHAPE_ZYX
    if args.case in ("all", "same-grid"):
        _same_grid(shape, args.dose, args.repeat)
    if args.case in ("all", "non-aligned"):
        _non_aligned(shape, args.dose, args.repeat)


def _same_grid(shape: tuple[int, int, int], dose_model: str, repeat: int) -> None:
    print(
        f"same grid, {dose_model} dose: (z, y, x) {shape} at {SPACING_MM} mm; {THREADS} cores; "
        f"median of {repeat} runs (min)"
    )
    header = (
        f"{'criterion':>10} {'ours s':>14} {'pymedphys s':>16} {'ratio':>7} {'ours %':>8} {'pmp %':>8} "
        f"{'diff pp':>8} {'ours MB':>8} {'pmp MB':>8}"
    )
    print(header)
    for criterion in CRITERIA:
        ours = _run("ours", shape, dose_model, criterion, repeat)
        peer = _run("pymedphys", shape, dose_model, criterion, repeat)
        ours_times = list(ours["times_s"])  # type: ignore[call-overload]
        peer_times = list(peer["times_s"])  # type: ignore[call-overload]
        ours_s, peer_s = statistics.median(ours_times), statistics.median(peer_times)
        ours_rate, peer_rate = float(ours["pass_rate_percent"]), float(peer["pass_rate_percent"])  # type: ignore[arg-type]
        print(
            f"{criterion[0]:>4.0f}%/{criterion[1]:.0f}mm "
            f"{ours_s:>7.3f} ({min(ours_times):.3f}) {peer_s:>8.2f} ({min(peer_times):.2f}) {peer_s / ours_s:>6.1f}x "
            f"{ours_rate:>8.3f} {peer_rate:>8.3f} {ours_rate - peer_rate:>+8.3f} "
            f"{float(ours['peak_rss_mb']):>8.0f} {float(peer['peak_rss_mb']):>8.0f}"  # type: ignore[arg-type]
        )
        print(
            f"{'':>10} points evaluated: ours {ours['n_evaluated']}, pymedphys {peer['n_evaluated']}; "
            f"RSS before the timed runs: ours {float(ours['rss_before_mb']):.0f} MB, "  # type: ignore[arg-type]
            f"pymedphys {float(peer['rss_before_mb']):.0f} MB"  # type: ignore[arg-type]
        )


def _non_aligned(shape: tuple[int, int, int], dose_model: str, repeat: int) -> None:
    print(
        f"non-aligned, {dose_model} dose: reference (z, y, x) {shape} at {SPACING_MM} mm, "
        f"evaluated at {NON_ALIGNED_SPACING_MM} mm with "
        f"origin offset {NON_ALIGNED_OFFSET_ZYX_MM} mm; both in one process; {THREADS} cores; "
        f"median of {repeat} runs (min)"
    )
    print(
        f"{'criterion':>10} {'ours s':>14} {'ours cpu s':>11} {'pymedphys s':>16} {'ratio':>7} {'ours %':>8} "
        f"{'pmp %':>8} {'diff pp':>8} {'peak MB':>8} {'grids MB':>8}"
    )
    for criterion in CRITERIA:
        out = _run("non-aligned", shape, dose_model, criterion, repeat)
        ours_times = list(out["ours_times_s"])  # type: ignore[call-overload]
        peer_times = list(out["peer_times_s"])  # type: ignore[call-overload]
        ours_cpu = statistics.median(out["ours_cpu_s"])  # type: ignore[arg-type]
        peer_cpu = statistics.median(out["peer_cpu_s"])  # type: ignore[arg-type]
        ours_s, peer_s = statistics.median(ours_times), statistics.median(peer_times)
        ours_rate = float(out["ours_pass_rate_percent"])  # type: ignore[arg-type]
        peer_rate = float(out["peer_pass_rate_percent"])  # type: ignore[arg-type]
        print(
            f"{criterion[0]:>4.0f}%/{criterion[1]:.0f}mm "
            f"{ours_s:>7.3f} ({min(ours_times):.3f}) {ours_cpu:>11.3f} {peer_s:>8.2f} ({min(peer_times):.2f}) "
            f"{peer_s / ours_s:>6.1f}x {ours_rate:>8.3f} {peer_rate:>8.3f} {ours_rate - peer_rate:>+8.3f} "
            f"{float(out['ours_tracemalloc_peak_mb']):>8.1f} {float(out['grids_mb']):>8.1f}"  # type: ignore[arg-type]
        )
        print(
            f"{'':>10} points evaluated: ours {out['ours_n_evaluated']}, pymedphys {out['peer_n_evaluated']}; "
            f"evaluated grid {out['eval_shape']}; peak = tracemalloc peak of one gamma_3d call; "
            f"CPU time: pymedphys {peer_cpu:.2f} s, ratio {peer_cpu / ours_cpu:.0f}x"
        )


if __name__ == "__main__":
    main()
