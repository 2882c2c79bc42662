"""The doses timed by ``perf/bench_gamma.py``: a SABR-like reference dose and its recalculations.

*Same grid*: the evaluated dose is the reference dose shifted 1 mm in y, scaled by 1.02 and with Gaussian noise of
1 % of the prescription (seeded), on the reference grid. *Non-aligned* (the TPS check, where the centre
recalculates on its own grid): the same shift, scale and noise, computed on a 2.5 mm grid whose origin is off the
reference lattice by (0.5, 0.7, 1.1) mm (z, y, x).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FULL_SHAPE_ZYX = (150, 200, 200)
QUICK_SHAPE_ZYX = (75, 100, 100)
SPACING_MM = 2.0
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


def same_grid_case(shape_zyx: tuple[int, int, int], dose_model: str) -> tuple[tuple[npt.NDArray[np.float64], ...], ...]:
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


def non_aligned_case(
    shape_zyx: tuple[int, int, int], dose_model: str
) -> tuple[
    tuple[npt.NDArray[np.float64], ...],
    npt.NDArray[np.float64],
    tuple[npt.NDArray[np.float64], ...],
    npt.NDArray[np.float64],
]:
    """(reference axes, reference dose, evaluated axes, evaluated dose): the evaluated dose on the 2.5 mm grid."""
    (z, y, x), (reference, _) = same_grid_case(shape_zyx, dose_model)
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
