"""Phase classes of reference points on an evenly spaced evaluated grid, and their trilinear weights.

Along each axis, a reference coordinate sits at some fraction of the evaluated cell that holds it (:class:`Lattice`).
Points with the same (z, y, x) fractions -- a *phase class* -- see the same trilinear weights for a given search
position. For one shell, :class:`ShellAxis` gives along one axis, for each fraction, the cell nodes the shell's
positions draw on and each node's weight per position; :class:`Stencil` multiplies the three axes' weights into
the weight matrix of a class (trilinear weights are separable). Used by :mod:`qa_checks.gamma_shared`; arrays are
indexed (z, y, x), coordinates in mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from qa_checks.gamma_search import Axes, EvaluatedBlock, IndexArray

__all__ = ["FRACTION_TOLERANCE", "Lattice", "ShellAxis", "Stencil"]

FloatArray = npt.NDArray[np.float64]

FRACTION_TOLERANCE: Final = 1e-9
"""Fractional positions (in evaluated voxels) closer than this belong to the same phase class."""


@dataclass(frozen=True)
class Lattice:
    """Where the cropped reference coordinates sit in an evenly spaced evaluated block, axis by axis (z, y, x).

    Attributes:
        spacing_mm: evaluated spacing in mm.
        node: for each cropped reference coordinate, the block index of the lower node of its cell.
        phase: for each cropped reference coordinate, the index of its fraction in ``fractions``.
        fractions: the distinct fractional positions in [0, 1) within a cell (to ``FRACTION_TOLERANCE``).
    """

    spacing_mm: tuple[float, float, float]
    node: tuple[IndexArray, IndexArray, IndexArray]
    phase: tuple[IndexArray, IndexArray, IndexArray]
    fractions: tuple[FloatArray, FloatArray, FloatArray]

    @classmethod
    def of(cls, ref_crop: Axes, block: EvaluatedBlock) -> Lattice | None:
        """None when the evaluated block is not evenly spaced along some axis."""
        spacings, nodes, phases, fractions = [], [], [], []
        for ref_axis, eval_axis, (start, stop) in zip(ref_crop, block.eval_axes, block.crops, strict=True):
            block_axis = eval_axis[start:stop]
            steps = np.diff(block_axis)
            spacing = float(steps.mean())
            if not np.allclose(steps, spacing, rtol=1e-9, atol=0.0):
                return None
            u = (ref_axis - block_axis[0]) / spacing
            node = np.floor(u + FRACTION_TOLERANCE)
            fraction = np.clip(u - node, 0.0, None)
            order = np.argsort(fraction, kind="stable")
            starts_new = np.concatenate([[True], np.diff(fraction[order]) > FRACTION_TOLERANCE])
            phase = np.empty(fraction.size, dtype=np.intp)
            phase[order] = np.cumsum(starts_new) - 1
            counts = np.bincount(phase)
            spacings.append(spacing)
            nodes.append(node.astype(np.intp))
            phases.append(phase)
            fractions.append(np.bincount(phase, weights=fraction) / counts)
        return cls(
            spacing_mm=(spacings[0], spacings[1], spacings[2]),
            node=(nodes[0], nodes[1], nodes[2]),
            phase=(phases[0], phases[1], phases[2]),
            fractions=(fractions[0], fractions[1], fractions[2]),
        )


@dataclass(frozen=True)
class ShellAxis:
    """Along one axis, for one shell: for each fraction (row of ``weights``), the first cell node the shell's
    positions draw on (``low``, relative to the point's node), how many nodes (``width``), and each node's
    trilinear weight per position (``weights``: fractions x nodes x positions, zero past ``width``)."""

    low: IndexArray
    width: IndexArray
    weights: npt.NDArray[np.float32]

    @classmethod
    def build(cls, fractions: FloatArray, offsets_mm: FloatArray, spacing_mm: float) -> ShellAxis:
        u = fractions[:, None] + offsets_mm[None, :] / spacing_mm
        cell = np.floor(u)
        upper = (u - cell).astype(np.float32)
        low = cell.min(axis=1)
        width = (cell.max(axis=1) - low + 2).astype(np.intp)
        node = (cell - low[:, None]).astype(np.intp)
        weights = np.zeros((u.shape[0], int(width.max()), u.shape[1]), dtype=np.float32)
        rows, positions = np.arange(u.shape[0])[:, None], np.arange(u.shape[1])[None, :]
        weights[rows, node, positions] = 1.0 - upper
        weights[rows, node + 1, positions] += upper
        return cls(low=low.astype(np.intp), width=width, weights=weights)


@dataclass(frozen=True)
class Stencil:
    """The stencil of the classes of one (z, y, x) number of nodes, for one shell: node offsets in the flattened
    block from the stencil's first node, and each axis's trilinear weights per fraction (fractions x nodes along
    the axis x positions)."""

    shape: tuple[int, int, int]
    node_offsets: npt.NDArray[np.int64]
    weights: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]

    def class_weights(
        self, phase: tuple[IndexArray, IndexArray, IndexArray], positions: slice
    ) -> npt.NDArray[np.float32]:
        """(classes, nodes + 1, positions) weights of the classes of the given (z, y, x) phases, at the given
        positions; the last row is -1 (it subtracts the reference dose stacked below the node doses)."""
        wz, wy, wx = (w[p, :, positions] for w, p in zip(self.weights, phase, strict=True))
        n_classes, n_positions = wz.shape[0], wz.shape[2]
        n_nodes = self.node_offsets.size
        weights = np.empty((n_classes, n_nodes + 1, n_positions), dtype=np.float32)
        nodes = weights[:, :n_nodes].reshape(n_classes, *self.shape, n_positions)  # a view
        np.multiply((wz[:, :, None, :] * wy[:, None, :, :])[:, :, :, None, :], wx[:, None, None, :, :], out=nodes)
        weights[:, n_nodes] = -1.0
        return weights
