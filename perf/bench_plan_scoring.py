"""Time scoring a clinical-size plan with :func:`qa_checks.planning.score_plan`.

Run with ``python perf/bench_plan_scoring.py`` (optionally ``--repeat N``). The structure set is the 20-structure
thorax-like set of ``perf/bench_rasterise.py`` on a 512 × 512 × 150 CT grid (2.0 × 0.977 × 0.977 mm) with a
spherical PTV (radius 20 mm) added; the dose is on a 2 mm grid over the whole CT (150 × 250 × 250), a
spherically symmetric SABR-like fall-off around the PTV with a 30 % bath. Criteria: the PTV's coverage, R100%,
R50%, D2cm%, and a maximum-dose (D0.035cc) and mean-dose limit on each of the 19 other structures; ``Lungs`` is
a composite. Target: well under 20 s on two cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_rasterise import build_case

from qa_checks.dicom_io import LoadedSubmission
from qa_checks.geometry import DoseGrid
from qa_checks.plan import DoseReference, Plan
from qa_checks.planning import TargetPrescription, score_plan
from qa_checks.protocol import Criterion
from qa_checks.structures import Contour, Structure, StructureSet

RX_GY = 54.0
PTV_RADIUS_MM = 20.0
PTV_CENTRE_ZYX_MM = (10.0, 5.0, 60.0)


def sphere(number: int, name: str, centre: tuple[float, float, float], radius: float, z_mm: np.ndarray) -> Structure:
    cz, cy, cx = centre
    t = np.linspace(0.0, 2 * np.pi, 200, endpoint=False)
    contours = []
    for z in z_mm[np.abs(z_mm - cz) < radius]:
        r = float(np.sqrt(radius**2 - (z - cz) ** 2))
        points = np.stack([cx + r * np.cos(t), cy + r * np.sin(t), np.full(t.size, z)], 1)
        contours.append(Contour(points, "CLOSED_PLANAR"))
    return Structure(number, name, "PTV", tuple(contours))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions (best is reported)")
    args = parser.parse_args()

    volume, structures = build_case(np.random.default_rng(20240601))
    ptv = sphere(21, "PTV", PTV_CENTRE_ZYX_MM, PTV_RADIUS_MM, volume.z_mm)
    structure_set = StructureSet((*structures, ptv), path="bench")
    z = volume.z_mm
    y = np.arange(volume.y_mm[0], volume.y_mm[-1], 2.0)
    x = np.arange(volume.x_mm[0], volume.x_mm[-1], 2.0)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    cz, cy, cx = PTV_CENTRE_ZYX_MM
    d = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) - PTV_RADIUS_MM
    falloff = 0.3 * np.exp(-np.maximum(d, 0.0) / 35.0) + 0.9 * np.exp(-np.maximum(d - 1, 0) / 4)
    relative = np.where(d <= 1.0, 1.2, falloff)
    dose = DoseGrid(RX_GY * np.minimum(relative, 1.2), z, y, x, path="bench")
    plan = Plan("1", dose_references=(DoseReference(1, "VOLUME", None, "TARGET", 21, RX_GY),), number_of_fractions=3)
    loaded = LoadedSubmission(ct=None, structure_set=structure_set, plan=plan, dose=dose)
    organs = [s.name for s in structures if s.name not in ("Lung_L", "Lung_R")] + ["Lungs"]

    def criteria_for(rx: TargetPrescription, ptv_cc: float, primary: bool) -> list[Criterion]:
        out = [
            Criterion("coverage", "PTV", "V100%", ">=", 95.0, 90.0, "%"),
            Criterion("r100", "PTV", "R100%", "<=", 1.2, 1.5, "1"),
            Criterion("r50", "PTV", "R50%", "<=", 5.0, 6.0, "1"),
            Criterion("d2cm", "PTV", "D2cm%", "<=", 60.0, 70.0, "%"),
        ]
        for organ in organs:
            out.append(Criterion(f"max_{organ}", organ, "D0.035cc", "<=", 60.0, 70.0, "Gy"))
            out.append(Criterion(f"mean_{organ}", organ, "Dmean", "<=", 20.0, 30.0, "Gy"))
        return out

    print(f"CT grid {volume.shape}, dose grid {dose.shape} at {dose.spacing_mm} mm, {len(structure_set)} structures")
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        score = score_plan(
            loaded, targets=["PTV"], criteria_for=criteria_for, composites={"Lungs": ("Lung_L", "Lung_R")}
        )
        times.append(time.perf_counter() - start)
    ptv_values = {m.metric: m.value for m in score.measurements if m.structure == "PTV"}
    print(f"score_plan: best {min(times):.2f} s, worst {max(times):.2f} s over {args.repeat} runs")
    print(f"{len(score.measurements)} measurements, {len(score.criteria)} criteria, outcome {score.evaluation.outcome}")
    print({k: round(v, 3) for k, v in ptv_values.items() if v is not None})


if __name__ == "__main__":
    main()
