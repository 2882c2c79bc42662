"""Shared pieces of the submission simulator: its error class, mask types and the kind parser."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = ["Mask", "SimulationError", "Spacing", "parse_kind"]

Mask = NDArray[np.bool_]
"""A (z, y, x) boolean mask."""

Spacing = tuple[float, float, float]
"""Voxel spacing (z, y, x) in mm."""


class SimulationError(ValueError):
    """Invalid deviation or simulation request; the message names the deviation and the bad value."""


_Kind = TypeVar("_Kind", bound=StrEnum)


def parse_kind(kinds: type[_Kind], value: str, problem: str) -> _Kind:
    """``value`` as a member of ``kinds``; otherwise a SimulationError "<problem> <value>; known kinds: ..."."""
    try:
        return kinds(value)
    except ValueError:
        known = ", ".join(k.value for k in kinds)
        raise SimulationError(f"{problem} {value!r}; known kinds: {known}") from None
