"""Overlap metrics between two voxelised structures.

Both masks are boolean arrays indexed (z, y, x) on the same grid. When both masks are empty the overlap is
undefined and the metrics return ``nan`` (not 1.0 or 0.0): the caller must decide what "both missing" means for
its report, rather than have a perfect score invented for it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["dice", "jaccard"]


def _counts(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> tuple[int, int, int]:
    """(|reference|, |evaluated|, |reference ∩ evaluated|) in voxels."""
    for name, mask in (("reference", reference), ("evaluated", evaluated)):
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            kind = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
            raise TypeError(f"{name} must be a boolean numpy array (z, y, x); got {kind}")
    if reference.shape != evaluated.shape:
        raise ValueError(
            f"reference has shape {reference.shape} but evaluated has shape {evaluated.shape}; "
            f"rasterise both on the same grid"
        )
    a = int(np.count_nonzero(reference))
    b = int(np.count_nonzero(evaluated))
    both = int(np.count_nonzero(reference & evaluated))
    return a, b, both


def dice(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> float:
    """Dice similarity coefficient 2|A∩B| / (|A| + |B|) of two boolean (z, y, x) masks.

    Returns ``nan`` when both masks are empty; 0.0 when exactly one is.

    Raises:
        ValueError: the shapes differ (both are named).
        TypeError: a mask is not a boolean array.
    """
    a, b, both = _counts(reference, evaluated)
    if a + b == 0:
        return float("nan")
    return 2.0 * both / (a + b)


def jaccard(reference: npt.NDArray[np.bool_], evaluated: npt.NDArray[np.bool_]) -> float:
    """Jaccard index |A∩B| / |A∪B| of two boolean (z, y, x) masks; ``nan`` when both are empty.

    Raises:
        ValueError: the shapes differ (both are named).
        TypeError: a mask is not a boolean array.
    """
    a, b, both = _counts(reference, evaluated)
    union = a + b - both
    if union == 0:
        return float("nan")
    return both / union
