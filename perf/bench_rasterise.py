"""Time rasterising a 20-structure set onto a 512 × 512 × 150 CT grid.

Run with ``python perf/bench_rasterise.py`` (optionally ``--repeat N``). The structures are synthetic
ellipses/rings drawn on every CT plane they span, sized like a thorax case: a body outline on every slice, two
lungs with a hole each, organs at risk and small targets. Target: all 20 in <= 5 s on two cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import numpy.typing as npt

from qa_checks.geometry import ImageVolume
from qa_checks.rasterise import rasterise
from qa_checks.structures import Contour, Structure

SHAPE_ZYX = (150, 512, 512)
SPACING_ZYX_MM = (2.0, 0.977, 0.977)


def _ellipse(cx: float, cy: float, z: float, ax: float, ay: float, n: int) -> npt.NDArray[np.float64]:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t), np.full(n, z)], axis=1)


def build_case(rng: np.random.Generator) -> tuple[ImageVolume, list[Structure]]:
    nz, ny, nx = SHAPE_ZYX
    dz, dy, dx = SPACING_ZYX_MM
    z = ((np.arange(nz) - nz / 2) * dz).astype(np.float64)
    y = ((np.arange(ny) - ny / 2) * dy).astype(np.float64)
    x = ((np.arange(nx) - nx / 2) * dx).astype(np.float64)
    volume = ImageVolume(np.zeros(SHAPE_ZYX, dtype=np.float32), z, y, x)

    structures = []
    # body: every slice, a 1000-point outline of the whole field
    body = [Contour(_ellipse(0.0, 0.0, zk, 230.0, 160.0, 1000), "CLOSED_PLANAR") for zk in z]
    structures.append(Structure(1, "Body", "EXTERNAL", tuple(body)))
    # lungs with a hole (a vessel) on each slice: even-odd rule
    for number, cx in ((2, -90.0), (3, 90.0)):
        contours = []
        for zk in z[20:130]:
            contours.append(Contour(_ellipse(cx, 0.0, zk, 70.0, 100.0, 400), "CLOSED_PLANAR"))
            contours.append(Contour(_ellipse(cx, 10.0, zk, 10.0, 10.0, 60), "CLOSED_PLANAR"))
        structures.append(Structure(number, f"Lung_{'L' if cx > 0 else 'R'}", "ORGAN", tuple(contours)))
    # 17 further organs and targets of random size and extent
    for number in range(4, 21):
        cx, cy = rng.uniform(-120, 120), rng.uniform(-80, 80)
        ax, ay = rng.uniform(5, 50), rng.uniform(5, 50)
        first = int(rng.integers(0, nz - 20))
        last = min(nz, first + int(rng.integers(5, 80)))
        contours = [Contour(_ellipse(cx, cy, zk, ax, ay, 200), "CLOSED_PLANAR") for zk in z[first:last]]
        structures.append(Structure(number, f"S{number}", "ORGAN", tuple(contours)))
    return volume, structures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    parser.add_argument("--fractional", action="store_true", help="also time fractional occupancy, supersample 2")
    args = parser.parse_args()

    volume, structures = build_case(np.random.default_rng(20240601))
    n_contours = sum(len(s.contours) for s in structures)
    print(f"grid {volume.shape} (z, y, x), {len(structures)} structures, {n_contours} contours")
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        voxels = sum(int(rasterise(s, volume).sum()) for s in structures)
        times.append(time.perf_counter() - start)
    print(f"boolean masks: best {min(times):.2f} s, worst {max(times):.2f} s over {args.repeat} runs ({voxels} voxels)")
    if args.fractional:
        start = time.perf_counter()
        for s in structures[1:]:
            rasterise(s, volume, fractional=True, supersample=2)
        print(f"fractional (supersample 2, 19 structures without the body): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
