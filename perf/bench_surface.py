"""Time surface metrics on a body-sized 512 × 512 × 150 mask pair against DeepMind's ``surface-distance``.

Run with ``python perf/bench_surface.py`` (optionally ``--repeat N``). The masks are two elliptic-cylinder bodies
on a (2.0, 0.977, 0.977) mm (z, y, x) grid: the evaluated body is 1.5 % wider, 1 % shorter in y, shifted by one
voxel and loses a 10 mm "couch" notch on 30 slices. Both implementations run in this process on the same arrays;
the script prints each one's best time, the speed-up and every metric from both with their difference. Target:
at least 5× faster with the same values. ``surface-distance`` is the optional ``peers`` dependency.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import numpy.typing as npt

from qa_checks.contours import surface_metrics

SHAPE_ZYX = (150, 512, 512)
SPACING_ZYX_MM = (2.0, 0.977, 0.977)
TOLERANCE_MM = 2.0


def build_masks() -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    _, ny, nx = SHAPE_ZYX
    _, dy, dx = SPACING_ZYX_MM
    y = (np.arange(ny) - ny / 2) * dy
    x = (np.arange(nx) - nx / 2) * dx
    yy, xx = np.meshgrid(y, x, indexing="ij")
    reference_slice = (xx / 230.0) ** 2 + (yy / 160.0) ** 2 <= 1.0
    evaluated_slice = ((xx - dx) / (230.0 * 1.015)) ** 2 + ((yy - dy) / (160.0 * 0.99)) ** 2 <= 1.0
    reference = np.zeros(SHAPE_ZYX, dtype=np.bool_)
    evaluated = np.zeros(SHAPE_ZYX, dtype=np.bool_)
    reference[5:145] = reference_slice
    evaluated[6:145] = evaluated_slice
    evaluated[60:90, (yy[:, 0] > 150.0), :] = False  # a flattened posterior edge on 30 slices
    return reference, evaluated


def peer_metrics(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> dict[str, float]:
    import surface_distance as sd

    d = sd.compute_surface_distances(reference, evaluated, SPACING_ZYX_MM)
    mean_ref, mean_ev = sd.compute_average_surface_distance(d)
    a_ref, a_ev = float(d["surfel_areas_gt"].sum()), float(d["surfel_areas_pred"].sum())
    return {
        "hausdorff_mm": float(sd.compute_robust_hausdorff(d, 100)),
        "hd95_mm": float(sd.compute_robust_hausdorff(d, 95)),
        "mean_surface_distance_mm": float((mean_ref * a_ref + mean_ev * a_ev) / (a_ref + a_ev)),
        "surface_dice": float(sd.compute_surface_dice_at_tolerance(d, TOLERANCE_MM)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions of ours (best is reported)")
    parser.add_argument("--peer-repeat", type=int, default=1, help="timed repetitions of the peer")
    args = parser.parse_args()

    reference, evaluated = build_masks()
    print(f"grid {SHAPE_ZYX} (z, y, x), spacing {SPACING_ZYX_MM} mm, {reference.sum()} / {evaluated.sum()} voxels")

    ours_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ours = surface_metrics(reference, evaluated, spacing_mm=SPACING_ZYX_MM, tolerance_mm=TOLERANCE_MM)
        ours_times.append(time.perf_counter() - start)
    print(f"ours  (all metrics incl. added path length): best {min(ours_times):.2f} s over {args.repeat} runs")

    try:
        import surface_distance  # noqa: F401
    except ImportError:
        print("surface-distance is not installed (pip install '.[peers]'): no comparison")
        return
    if not hasattr(np, "NaN"):  # surface-distance 0.1 refers to np.NaN / np.Inf, removed in NumPy 2
        np.NaN = np.nan  # type: ignore[attr-defined]
        np.Inf = np.inf  # type: ignore[attr-defined]
    peer_times = []
    for _ in range(args.peer_repeat):
        start = time.perf_counter()
        peer = peer_metrics(reference, evaluated)
        peer_times.append(time.perf_counter() - start)
    print(f"peer  (surface-distance 0.1): best {min(peer_times):.2f} s over {args.peer_repeat} runs")
    print(f"speed-up: {min(peer_times) / min(ours_times):.1f}x")
    for name, value in peer.items():
        mine = getattr(ours, name)
        print(f"  {name:26s} ours {mine:.9g}  peer {value:.9g}  difference {mine - value:.3g}")
    print(f"  {'added_path_length_mm':26s} ours {ours.added_path_length_mm:.9g} (no peer equivalent)")


if __name__ == "__main__":
    main()
