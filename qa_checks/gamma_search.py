"""The search behind :func:`qa_checks.gamma.gamma_3d`: gamma² at reference points, shell by shell.

The definitions (search positions, trilinear interpolation of the evaluated dose, stopping rule, positions
outside the evaluated grid) are those of the :mod:`qa_checks.gamma` module docstring; this module only
computes them. Arrays are indexed (z, y, x); coordinates are in mm; doses in Gy.

How the work is shared
    Every reference point is searched on spherical shells of increasing radius until ``d / DTA >= gamma``.
    Shells are processed for all points still searching at once, by one of two interpolation schemes that give
    the same positions and the same interpolated doses (to float32 rounding):

    *Shared weights* (the fast path). Along each axis, a reference coordinate sits at some fraction of the
    evaluated cell that holds it. Points with the same (z, y, x) fractions -- a *phase class* -- see the same
    trilinear weights for a given search position, so a shell is interpolated for all of them by one matrix
    product: (positions x stencil nodes) weights times (stencil nodes x points) evaluated doses gathered once per
    point. On the same grid (any origin) there is one class; a 2 mm reference against a 2.5 mm evaluated grid
    has 5 fractions per axis (the lattices coincide every 10 mm), so 125 classes; 3 mm against 2 mm has 8. The
    weight matrix of a class is built from per-axis weight tables (trilinear weights are separable), computed
    once per shell and fraction. Needs an evenly spaced evaluated grid.

    *Per-point weights* (everything else: uneven evaluated spacing, classes of a single point, i.e. grid pairs
    whose fractions do not repeat, and points whose search region reaches the evaluated grid's edge). Per-axis
    index and weight tables for every reference coordinate and shell offset, eight gathers and seven linear
    interpolations per point and position.

    Matrix products are kept small enough that OpenBLAS runs them single-threaded (its threading costs more
    than it saves at these sizes, and stalls on a loaded machine). A shell is split into independent tasks
    (phase classes, chunks of points), each updating its own points; running them on a pool of two threads gave
    no measurable gain on a 2-core machine, so they run one after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["search_gamma2", "shell_distances_mm", "shell_offsets_mm"]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
Axes = tuple[FloatArray, FloatArray, FloatArray]

_CHUNK_ELEMENTS: Final = 1 << 18
"""Points x shell positions handled at once by the per-point scheme (bounds temporaries to a few MB each)."""

_RADIUS_TOLERANCE_MM: Final = 1e-9
"""Rounding allowance when comparing a shell radius with the maximum search distance."""

_REACH_TOLERANCE_MM: Final = 1e-6
"""Added to the search limit when deciding which evaluated nodes a point's search can reach (> the rounding of
shell radii and offsets)."""

_BLAS_SINGLE_THREAD_WORK: Final = 1 << 18
"""Largest matrix product (rows x inner x columns) issued at once; OpenBLAS stays single-threaded up to 2**18."""

_FRACTION_TOLERANCE: Final = 1e-9
"""Fractional positions (in evaluated voxels) closer than this belong to the same phase class."""

_MIN_SHARED_POINTS: Final = 2
"""A phase class uses shared weights only if it has at least this many points (grid pairs whose fractions never
repeat, e.g. an evaluated spacing of 2.34 mm, are interpolated point by point)."""

_DENSE_CLASS_KEYS: Final = 1 << 16
"""Phase classes are counted with a dense table (rather than by sorting) when there are at most this many possible
(z, y, x) phase combinations (125 for 2 mm against 2.5 mm)."""

_ENTRY_POINTS: Final = 256
"""Points of one phase class handled together in a batched matrix product (one matrix of the batch)."""

_LARGE_CLASS_POINTS: Final = 256
"""A phase class with at least this many points searching is handled on its own, with one weight matrix."""

_GATHER_ELEMENTS: Final = 1 << 20
"""Largest batch of gathered node doses (entries x stencil nodes x points), in elements."""

_PRODUCT_ELEMENTS: Final = 1 << 20
"""Largest batched matrix product result (entries x positions x points), in elements."""

_TASK_POINTS: Final = 8192
"""A large phase class is split into tasks of at most this many points (bounds the node doses gathered at once)."""

_CORNERS: Final = tuple((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1))
"""The 8 corners of a cell, as (z, y, x) steps from its lower corner."""


# --- search positions --------------------------------------------------------------------------------------------


def shell_distances_mm(distance_mm: float, step_mm: float, limit_mm: float) -> Iterator[float]:
    """Shell radii 0, s, 2s, ... up to ``limit_mm``, with ``distance_mm`` forced in (pymedphys ``gamma_loop``)."""
    distance = 0.0
    forced = [distance_mm]
    # the limit is inclusive; the tolerance keeps a radius reached by summing steps (4.000000000000001) in
    while distance <= limit_mm + _RADIUS_TOLERANCE_MM:
        yield distance
        distance += step_mm
        if forced and distance >= forced[0]:
            distance = forced.pop(0)


def shell_offsets_mm(distance: float, step_mm: float) -> Axes:
    """(z, y, x) offsets in mm of the search positions on the shell of radius ``distance``.

    Same construction as pymedphys ``calculate_coordinates_shell_3d``, whose first, second and third coordinates
    are applied to array axes 0, 1, 2, i.e. (z, y, x); the rings are at constant x.
    """
    n_rings = int(np.ceil(np.pi * distance / step_mm)) + 1
    elevation = np.linspace(0.0, np.pi, n_rings)
    ring_radius = distance * np.sin(elevation)
    n_in_ring = np.ceil(2 * np.pi * ring_radius / step_mm).astype(np.int64) + 1
    ring = np.repeat(np.arange(n_rings), n_in_ring)
    # position of each point within its ring, and the ring's azimuth step (np.linspace(0, 2π, n + 1)[:-1])
    within = np.arange(ring.size) - np.repeat(np.cumsum(n_in_ring) - n_in_ring, n_in_ring)
    azimuth = within * (2 * np.pi / n_in_ring[ring])
    phi = elevation[ring]
    return distance * np.sin(phi) * np.cos(azimuth), distance * np.sin(phi) * np.sin(azimuth), distance * np.cos(phi)


# --- inputs of the search ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Points:
    """The reference points to evaluate: indices into the cropped reference axes, dose, and 1 / ΔD."""

    index: tuple[IndexArray, IndexArray, IndexArray]
    axes_mm: Axes
    dose_gy: npt.NDArray[np.float32]
    inv_criterion: npt.NDArray[np.float32]
    uniform_inv_criterion: float | None
    """The value shared by every point of ``inv_criterion`` under global normalisation (None for local)."""

    def inv_criterion2(self, index: IndexArray) -> FloatArray | np.float64:
        """(1 / ΔD)² of the given points, float64 (a scalar under global normalisation: a NumPy float64, so that
        products with float32 arrays are float64, as with the per-point array)."""
        if self.uniform_inv_criterion is not None:
            return np.float64(self.uniform_inv_criterion) ** 2
        squared: FloatArray = self.inv_criterion[index].astype(np.float64) ** 2
        return squared


@dataclass(frozen=True)
class _Block:
    """The part of the evaluated grid within reach of the points: values (float32, flattened (z, y, x)), its
    (z, y, x) shape and flat strides, its index ranges in the full grid, and the full evaluated axes."""

    values: npt.NDArray[np.float32]
    shape: tuple[int, int, int]
    strides: tuple[int, int, int]
    crops: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    eval_axes: Axes


def search_gamma2(
    ref_axes: Axes,
    ref_dose: FloatArray,
    mask: npt.NDArray[np.bool_],
    eval_axes: Axes,
    eval_dose: FloatArray,
    *,
    dose_criterion_fraction: float,
    norm_gy: float | None,
    distance_mm: float,
    step_mm: float,
    limit_mm: float,
) -> FloatArray:
    """gamma² at every masked reference point, in ``mask`` order (inf where no evaluated dose is within reach).

    Args:
        ref_axes: (z, y, x) increasing reference coordinates in mm, of ``ref_dose``'s axes.
        ref_dose: reference dose in Gy, (z, y, x).
        mask: which reference voxels to evaluate (at least one).
        eval_axes: (z, y, x) increasing evaluated coordinates in mm.
        eval_dose: evaluated dose in Gy, (z, y, x).
        dose_criterion_fraction: dose criterion as a fraction (0.03 for 3%).
        norm_gy: global normalisation dose in Gy; None for local normalisation (criterion relative to Dr(r)).
        distance_mm: distance to agreement in mm.
        step_mm: search step in mm.
        limit_mm: largest shell radius searched, in mm.
    """
    iz, iy, ix = np.nonzero(mask)
    starts = (int(iz.min()), int(iy.min()), int(ix.min()))
    stops = (int(iz.max()) + 1, int(iy.max()) + 1, int(ix.max()) + 1)
    ref_crop = (ref_axes[0][starts[0] : stops[0]], ref_axes[1][starts[1] : stops[1]], ref_axes[2][starts[2] : stops[2]])
    dose_gy = ref_dose[mask]
    criterion_gy = dose_criterion_fraction * (dose_gy if norm_gy is None else np.full(dose_gy.size, norm_gy))
    points = _Points(
        index=((iz - starts[0]).astype(np.intp), (iy - starts[1]).astype(np.intp), (ix - starts[2]).astype(np.intp)),
        axes_mm=ref_crop,
        dose_gy=dose_gy.astype(np.float32),
        inv_criterion=(1.0 / criterion_gy).astype(np.float32),
        uniform_inv_criterion=None if norm_gy is None else float(np.float32(1.0 / (dose_criterion_fraction * norm_gy))),
    )
    crop_z, crop_y, crop_x = (
        _crop_range(ref_axis, eval_axis, limit_mm) for ref_axis, eval_axis in zip(ref_crop, eval_axes, strict=True)
    )
    values = np.ascontiguousarray(
        eval_dose[crop_z[0] : crop_z[1], crop_y[0] : crop_y[1], crop_x[0] : crop_x[1]], dtype=np.float32
    )
    nz, ny, nx = values.shape
    block = _Block(
        values=values.ravel(),
        shape=(nz, ny, nx),
        strides=(ny * nx, nx, 1),
        crops=(crop_z, crop_y, crop_x),
        eval_axes=eval_axes,
    )

    gamma2 = np.full(dose_gy.size, np.inf, dtype=np.float64)
    lattice = _Lattice.of(ref_crop, block)
    shared, per_point = (
        (None, np.arange(dose_gy.size)) if lattice is None else _shared_points(points, block, lattice, limit_mm)
    )
    interpolator = _PerPoint(points, block)
    _search(gamma2, shared, per_point, interpolator, distance_mm=distance_mm, step_mm=step_mm, limit_mm=limit_mm)
    return gamma2


def _run(tasks: list[Callable[[], None]]) -> None:
    """Run the independent tasks of a shell (each updates its own points)."""
    for task in tasks:
        task()


def _search(
    gamma2: FloatArray,
    shared: _Shared | None,
    per_point: IndexArray,
    interpolator: _PerPoint,
    *,
    distance_mm: float,
    step_mm: float,
    limit_mm: float,
) -> None:
    """The shells, in increasing radius, for the points still searching (updates ``gamma2`` in place)."""
    for distance in shell_distances_mm(distance_mm, step_mm, limit_mm):
        term = (distance / distance_mm) ** 2
        per_point = per_point[gamma2[per_point] > term]
        if shared is not None:
            shared.keep_searching(gamma2, term)
        if per_point.size == 0 and (shared is None or shared.active.size == 0):
            break
        offsets = shell_offsets_mm(distance, step_mm)
        tasks = shared.shell_tasks(gamma2, offsets, term) if shared is not None and shared.active.size else []
        if per_point.size:
            tasks += interpolator.shell_tasks(gamma2, per_point, offsets, term)
        _run(tasks)


def _crop_range(points_mm: FloatArray, eval_axis: FloatArray, reach_mm: float) -> tuple[int, int]:
    """Index range [start, stop) of the evaluated axis that search positions can reach (plus one neighbour)."""
    lo = float(points_mm.min()) - reach_mm
    hi = float(points_mm.max()) + reach_mm
    start = max(int(np.searchsorted(eval_axis, lo, side="right")) - 2, 0)
    stop = min(int(np.searchsorted(eval_axis, hi, side="left")) + 2, eval_axis.size)
    if stop - start < 2:
        start, stop = (0, 2) if stop <= 2 else (eval_axis.size - 2, eval_axis.size)
    return start, stop


# --- shared weights: phase classes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lattice:
    """Where the cropped reference coordinates sit in an evenly spaced evaluated block, axis by axis (z, y, x).

    Attributes:
        spacing_mm: evaluated spacing in mm.
        node: for each cropped reference coordinate, the block index of the lower node of its cell.
        phase: for each cropped reference coordinate, the index of its fraction in ``fractions``.
        fractions: the distinct fractional positions in [0, 1) within a cell (to ``_FRACTION_TOLERANCE``).
    """

    spacing_mm: tuple[float, float, float]
    node: tuple[IndexArray, IndexArray, IndexArray]
    phase: tuple[IndexArray, IndexArray, IndexArray]
    fractions: tuple[FloatArray, FloatArray, FloatArray]

    @classmethod
    def of(cls, ref_crop: Axes, block: _Block) -> _Lattice | None:
        """None when the evaluated block is not evenly spaced along some axis."""
        spacings, nodes, phases, fractions = [], [], [], []
        for ref_axis, eval_axis, (start, stop) in zip(ref_crop, block.eval_axes, block.crops, strict=True):
            block_axis = eval_axis[start:stop]
            steps = np.diff(block_axis)
            spacing = float(steps.mean())
            if not np.allclose(steps, spacing, rtol=1e-9, atol=0.0):
                return None
            u = (ref_axis - block_axis[0]) / spacing
            node = np.floor(u + _FRACTION_TOLERANCE)
            fraction = np.clip(u - node, 0.0, None)
            order = np.argsort(fraction, kind="stable")
            starts_new = np.concatenate([[True], np.diff(fraction[order]) > _FRACTION_TOLERANCE])
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
class _ShellAxis:
    """Along one axis, for one shell: for each fraction (row of ``weights``), the first cell node the shell's
    positions draw on (``low``, relative to the point's node), how many nodes (``width``), and each node's
    trilinear weight per position (``weights``: fractions x nodes x positions, zero past ``width``)."""

    low: IndexArray
    width: IndexArray
    weights: npt.NDArray[np.float32]

    @classmethod
    def build(cls, fractions: FloatArray, offsets_mm: FloatArray, spacing_mm: float) -> _ShellAxis:
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


class _Shared:
    """The points searched with shared weights: interior points of phase classes with enough points.

    ``active`` (the points still searching) is kept sorted by class, so that each class is a contiguous run.
    A class with many points searching (``_LARGE_CLASS_POINTS``, e.g. the only class on the same grid) gets one
    weight matrix per shell and is processed in chunks of points. The others are processed in batches of
    *entries* (runs of at most ``_ENTRY_POINTS`` points of one class) whose classes need the same number of
    stencil nodes along each axis: one gather of node doses for the batch, then for each slice of shell positions
    one batched matrix product (entries x points x nodes) @ (entries x nodes x positions).
    """

    def __init__(
        self,
        points: _Points,
        block: _Block,
        lattice: _Lattice,
        class_phase: tuple[IndexArray, IndexArray, IndexArray],
        label: IndexArray,
        active: IndexArray,
    ):
        """``class_phase``: the (z, y, x) phase of each class; ``label``: the class of each point (-1 for points
        not shared); ``active``: the shared points, sorted by class."""
        self._points = points
        self._block = block
        self._lattice = lattice
        self._label = label
        self.active = active
        self._phase = class_phase
        self._n_classes = class_phase[0].size
        self._offsets: dict[tuple[int, int, int], npt.NDArray[np.int64]] = {}
        # flat block index of each point's lower cell node, summed axis by axis over the reference coordinates
        base = np.zeros(points.dose_gy.size, dtype=np.int64)
        for node, index, stride in zip(lattice.node, points.index, block.strides, strict=True):
            base += (node.astype(np.int64) * stride)[index]
        self._base = base

    def _node_offsets(self, shape: tuple[int, int, int]) -> npt.NDArray[np.int64]:
        """Flat block offsets of a (z, y, x) box of nodes of the given shape from its first node."""
        if shape not in self._offsets:
            strides = self._block.strides
            kz, ky, kx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
            self._offsets[shape] = (kz * strides[0] + ky * strides[1] + kx * strides[2]).ravel().astype(np.int64)
        return self._offsets[shape]

    def keep_searching(self, gamma2: FloatArray, term: float) -> None:
        """Keep only the points whose gamma² so far exceeds ``term`` (the next shell can still improve it)."""
        self.active = self.active[gamma2[self.active] > term]

    def shell_tasks(self, gamma2: FloatArray, offsets_mm: Axes, term: float) -> list[Callable[[], None]]:
        """Independent tasks that update ``gamma2`` of the active points with the shell of the given offsets at
        ``term = (d / DTA)²``."""
        lattice = self._lattice
        axes = [
            _ShellAxis.build(fractions, offsets, spacing)
            for fractions, offsets, spacing in zip(lattice.fractions, offsets_mm, lattice.spacing_mm, strict=True)
        ]
        counts = np.bincount(self._label[self.active], minlength=self._n_classes)
        starts = np.cumsum(counts) - counts
        tasks: list[Callable[[], None]] = []
        for large in np.flatnonzero(counts >= _LARGE_CLASS_POINTS).tolist():
            phase = (int(self._phase[0][large]), int(self._phase[1][large]), int(self._phase[2][large]))
            for first in range(starts[large], starts[large] + counts[large], _TASK_POINTS):
                members = self.active[first : min(first + _TASK_POINTS, starts[large] + counts[large])]
                tasks.append(partial(self._class_shell, gamma2, members, phase, axes, term))
            counts[large] = 0
        present = np.flatnonzero(counts)
        if present.size == 0:
            return tasks
        n_entries = -(-counts[present] // _ENTRY_POINTS)
        entry_class = np.repeat(present, n_entries)
        entry_rank = np.arange(entry_class.size) - np.repeat(np.cumsum(n_entries) - n_entries, n_entries)
        entry_start = starts[entry_class] + entry_rank * _ENTRY_POINTS
        entry_count = np.minimum(counts[entry_class] - entry_rank * _ENTRY_POINTS, _ENTRY_POINTS)
        entry_phase = [p[entry_class] for p in self._phase]
        widths = [axis.width[p] for axis, p in zip(axes, entry_phase, strict=True)]
        largest = 1 + max(int(w.max()) for w in widths)
        keys = (widths[0] * largest + widths[1]) * largest + widths[2]
        for key in np.unique(keys).tolist():
            shape = (key // (largest * largest), key // largest % largest, key % largest)
            chosen = np.flatnonzero(keys == key)
            chosen = chosen[np.argsort(-entry_count[chosen], kind="stable")]
            n_columns = shape[0] * shape[1] * shape[2] + 1
            first = 0
            while first < chosen.size:
                width = int(entry_count[chosen[first]])
                size = max(1, _GATHER_ELEMENTS // (n_columns * width))
                batch = chosen[first : first + size]
                first += size
                tasks.append(
                    partial(
                        self._batch,
                        gamma2,
                        (shape[0], shape[1], shape[2]),
                        entry_start[batch],
                        entry_count[batch],
                        (entry_phase[0][batch], entry_phase[1][batch], entry_phase[2][batch]),
                        axes,
                        term,
                    )
                )
        return tasks

    def _class_shell(
        self,
        gamma2: FloatArray,
        members: IndexArray,
        phase: tuple[int, int, int],
        axes: list[_ShellAxis],
        term: float,
    ) -> None:
        """One shell for some points of one large class (e.g. the only class on the same grid): one weight matrix,
        points in chunks of up to 4096."""
        points, block = self._points, self._block
        shape = (int(axes[0].width[phase[0]]), int(axes[1].width[phase[1]]), int(axes[2].width[phase[2]]))
        node_offsets = self._node_offsets(shape)
        n_nodes = node_offsets.size
        n_positions = axes[0].weights.shape[2]
        wz, wy, wx = (axis.weights[p, :n, :] for axis, p, n in zip(axes, phase, shape, strict=True))
        # (positions, nodes + 1); the last column subtracts the reference dose stacked below the node doses
        weights = np.empty((n_positions, n_nodes + 1), dtype=np.float32)
        weights[:, :n_nodes] = (
            (wz[:, None, None, :] * wy[None, :, None, :] * wx[None, None, :, :]).reshape(n_nodes, -1).T
        )
        weights[:, n_nodes] = -1.0
        strides = block.strides
        shift = (
            int(axes[0].low[phase[0]]) * strides[0]
            + int(axes[1].low[phase[1]]) * strides[1]
            + int(axes[2].low[phase[2]])
        )
        n_columns = n_nodes + 1
        chunk = min(int(np.clip(_BLAS_SINGLE_THREAD_WORK // (n_positions * n_columns), 64, 4096)), members.size)
        rows = max(1, _BLAS_SINGLE_THREAD_WORK // (n_columns * chunk))
        # the members in n_chunks chunks of ``chunk`` points, padded with the last member (its result is written
        # twice, identically): one gather, then one batched product per slice of positions, each matrix of the
        # batch small enough for single-threaded BLAS
        n_chunks = -(-members.size // chunk)
        index = members[np.minimum(np.arange(n_chunks * chunk), members.size - 1)].reshape(n_chunks, chunk)
        stacked = np.empty((n_chunks, n_columns, chunk), dtype=np.float32)
        flat = (self._base[index] + shift)[:, None, :] + node_offsets[None, :, None]
        np.take(block.values, flat, out=stacked[:, :n_nodes])
        stacked[:, n_nodes] = points.dose_gy[index]
        smallest = np.full((n_chunks, chunk), np.inf, dtype=np.float32)
        for row in range(0, n_positions, rows):
            difference = np.matmul(weights[row : row + rows], stacked)  # (chunks, positions, points): De - Dr
            np.square(difference, out=difference)
            np.minimum(smallest, difference.min(axis=1), out=smallest)
        inv_criterion2 = points.inv_criterion2(index)
        gamma2[index] = np.minimum(gamma2[index], term + smallest * inv_criterion2)

    def _batch(
        self,
        gamma2: FloatArray,
        shape: tuple[int, int, int],
        start: IndexArray,
        count: IndexArray,
        phase: tuple[IndexArray, IndexArray, IndexArray],
        axes: list[_ShellAxis],
        term: float,
    ) -> None:
        """One shell for a batch of entries (``start``/``count`` into ``active``; ``phase`` of each entry's class)
        whose stencils have the given (z, y, x) node ``shape``."""
        points, block = self._points, self._block
        n_entries, width = start.size, int(count.max())
        # padded with each entry's last point (its result is written twice, identically)
        index = self.active[start[:, None] + np.minimum(np.arange(width)[None, :], count[:, None] - 1)]
        strides = block.strides
        shift = axes[0].low[phase[0]] * strides[0] + axes[1].low[phase[1]] * strides[1] + axes[2].low[phase[2]]
        node_offsets = self._node_offsets(shape)
        n_nodes = node_offsets.size
        stacked = np.empty((n_entries, n_nodes + 1, width), dtype=np.float32)
        flat = (self._base[index] + shift[:, None])[:, None, :] + node_offsets[None, :, None]
        np.take(block.values, flat, out=stacked[:, :n_nodes])
        dose = points.dose_gy[index]
        stacked[:, n_nodes] = dose
        inv_criterion2 = points.inv_criterion2(index)
        n_positions = axes[0].weights.shape[2]
        rows = max(
            1, min(_PRODUCT_ELEMENTS // (n_entries * width), _BLAS_SINGLE_THREAD_WORK // ((n_nodes + 1) * width))
        )
        points_first = stacked.transpose(0, 2, 1)
        # entries of one class (a large class split into entries, e.g. on the same grid) share one weight matrix
        one_class = all(bool(np.all(p == p[0])) for p in phase)
        weight_phase = (phase[0][:1], phase[1][:1], phase[2][:1]) if one_class else phase
        n_weights = weight_phase[0].size
        smallest = np.full((n_entries, width), np.inf, dtype=np.float32)
        for row in range(0, n_positions, rows):
            part = slice(row, min(row + rows, n_positions))
            n_rows = part.stop - part.start
            wz = axes[0].weights[weight_phase[0], : shape[0], part]
            wy = axes[1].weights[weight_phase[1], : shape[1], part]
            wx = axes[2].weights[weight_phase[2], : shape[2], part]
            # (entries or 1, nodes + 1, positions); the last row subtracts the reference dose stacked below the
            # node doses
            weights = np.empty((n_weights, n_nodes + 1, n_rows), dtype=np.float32)
            weights[:, n_nodes] = -1.0
            nodes = weights[:, :n_nodes].reshape(n_weights, shape[0], shape[1], shape[2], n_rows)  # a view
            np.multiply((wz[:, :, None, :] * wy[:, None, :, :])[:, :, :, None, :], wx[:, None, None, :, :], out=nodes)
            difference = np.matmul(points_first, weights)  # (entries, points, positions): De(r') - Dr(r)
            np.square(difference, out=difference)
            np.minimum(smallest, difference.min(axis=2), out=smallest)
        gamma2[index] = np.minimum(gamma2[index], term + smallest * inv_criterion2)


def _shared_points(
    points: _Points, block: _Block, lattice: _Lattice, limit_mm: float
) -> tuple[_Shared | None, IndexArray]:
    """The points to search with shared weights (interior points of phase classes with at least
    ``_MIN_SHARED_POINTS`` of them), and the others."""
    # axis by axis (per reference coordinate, then gathered per point): is the whole search region inside the
    # block, and the phase's contribution to the class key (z, y, x) -> (z * n_y + y) * n_x + x
    n_y, n_x = lattice.fractions[1].size, lattice.fractions[2].size
    inside = np.ones(points.dose_gy.size, dtype=bool)
    key = np.zeros(points.dose_gy.size, dtype=np.intp)
    for axis, multiplier in enumerate((n_y * n_x, n_x, 1)):
        # nodes reachable within limit_mm: cells floor(f - reach) .. floor(f + reach) and their upper node (the
        # reach rounded up past the radius tolerance of the last shell)
        node, phase = lattice.node[axis], lattice.phase[axis]
        fraction = lattice.fractions[axis][phase]
        reach = (limit_mm + _REACH_TOLERANCE_MM) / lattice.spacing_mm[axis]
        low = np.floor(fraction - reach).astype(np.intp)
        high = np.floor(fraction + reach).astype(np.intp) + 1
        axis_inside = (node + low >= 0) & (node + high <= block.shape[axis] - 1)
        inside &= axis_inside[points.index[axis]]
        key += (phase * multiplier)[points.index[axis]]
    interior = np.flatnonzero(inside)
    # classes numbered 0, 1, ... in order of (z, y, x) phase, counting only those with interior points
    key = key[interior]
    n_keys = lattice.fractions[0].size * n_y * n_x
    if n_keys <= _DENSE_CLASS_KEYS:
        key_counts = np.bincount(key, minlength=n_keys)
        classes = np.flatnonzero(key_counts)
        number = np.zeros(n_keys, dtype=np.intp)
        number[classes] = np.arange(classes.size)
        class_of_interior, counts = number[key], key_counts[classes]
    else:
        classes, class_of_interior, counts = np.unique(key, return_inverse=True, return_counts=True)
        class_of_interior = class_of_interior.ravel()
    enough = counts[class_of_interior] >= _MIN_SHARED_POINTS
    shared = interior[enough]
    if shared.size == 0:
        return None, np.arange(points.dose_gy.size)
    label = np.full(points.dose_gy.size, -1, dtype=np.intp)
    label[shared] = class_of_interior[enough]
    others = np.ones(points.dose_gy.size, dtype=bool)
    others[shared] = False
    # a stable sort of 16-bit keys is a radix sort (linear time)
    sort_key = label[shared].astype(np.uint16) if classes.size <= 1 << 16 else label[shared]
    shared = shared[np.argsort(sort_key, kind="stable")]
    class_phase = (classes // (n_y * n_x), classes // n_x % n_y, classes % n_x)
    return _Shared(points, block, lattice, class_phase, label, shared), np.flatnonzero(others)


# --- per-point weights -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AxisTables:
    """Per-axis lookup for one shell: for each reference coordinate (row) and shell offset (column), the flat
    index contribution of the lower evaluated neighbour and the weight of the upper one (NaN when outside)."""

    base: npt.NDArray[np.int64]
    weight: npt.NDArray[np.float32]


def _axis_tables(
    ref_axis: FloatArray, offsets: FloatArray, eval_axis: FloatArray, crop: tuple[int, int], stride: int
) -> _AxisTables:
    positions = ref_axis[:, None] + offsets[None, :]
    inside = (positions >= eval_axis[0]) & (positions <= eval_axis[-1])
    # fractional index on the evaluated axis (exact for uneven spacing too), relative to the block
    u = np.interp(positions, eval_axis, np.arange(eval_axis.size, dtype=np.float64)) - crop[0]
    lower = np.clip(np.floor(u), 0, crop[1] - crop[0] - 2)
    weight = (u - lower).astype(np.float32)
    weight[~inside] = np.nan
    return _AxisTables(base=(lower.astype(np.int64) * stride), weight=weight)


class _PerPoint:
    """Per-point trilinear interpolation over the block (the 8 cell corners as shifted views of one padded copy)."""

    def __init__(self, points: _Points, block: _Block) -> None:
        self._points = points
        self._block = block
        self._corners: dict[tuple[int, int, int], npt.NDArray[np.float32]] = {}

    def _corner_views(self) -> dict[tuple[int, int, int], npt.NDArray[np.float32]]:
        if not self._corners:
            block = self._block
            padding = np.zeros(block.strides[0] + block.strides[1] + 2, dtype=np.float32)
            padded = np.concatenate([block.values, padding])
            for a, b, c in _CORNERS:
                offset = a * block.strides[0] + b * block.strides[1] + c
                self._corners[(a, b, c)] = padded[offset : offset + block.values.size]
        return self._corners

    def shell_tasks(
        self, gamma2: FloatArray, subset: IndexArray, offsets: Axes, term: float
    ) -> list[Callable[[], None]]:
        """Independent tasks that update ``gamma2[subset]`` with the shell of the given offsets at
        ``term = (d / DTA)²``."""
        points, block = self._points, self._block
        tables = [
            _axis_tables(ref_axis, off, eval_axis, crop, stride)
            for ref_axis, off, eval_axis, crop, stride in zip(
                points.axes_mm, offsets, block.eval_axes, block.crops, block.strides, strict=True
            )
        ]
        corners = self._corner_views()
        chunk = max(1, _CHUNK_ELEMENTS // offsets[0].size)

        def update(piece: IndexArray) -> None:
            gamma2[piece] = np.fmin(gamma2[piece], term + _min_dose_term(piece, points, tables, corners))

        return [partial(update, subset[i : i + chunk]) for i in range(0, subset.size, chunk)]


def _min_dose_term(
    piece: IndexArray,
    points: _Points,
    tables: list[_AxisTables],
    corners: dict[tuple[int, int, int], npt.NDArray[np.float32]],
) -> FloatArray:
    """min over the shell of (De(r') - Dr(r))² / ΔD² for each point (NaN where the whole shell is outside)."""
    pz, py, px = (index[piece] for index in points.index)
    tz, ty, tx = tables
    flat = tz.base[pz] + ty.base[py] + tx.base[px]
    wz, wy, wx = tz.weight[pz], ty.weight[py], tx.weight[px]

    def lerp_x(a: int, b: int) -> npt.NDArray[np.float32]:
        low: npt.NDArray[np.float32] = corners[(a, b, 0)][flat]
        high: npt.NDArray[np.float32] = corners[(a, b, 1)][flat]
        high -= low
        high *= wx
        high += low
        return high

    c00, c01, c10, c11 = lerp_x(0, 0), lerp_x(0, 1), lerp_x(1, 0), lerp_x(1, 1)
    c01 -= c00
    c01 *= wy
    c01 += c00
    c11 -= c10
    c11 *= wy
    c11 += c10
    c11 -= c01
    c11 *= wz
    c11 += c01
    c11 -= points.dose_gy[piece][:, None]
    c11 *= points.inv_criterion[piece][:, None]
    np.square(c11, out=c11)
    smallest: FloatArray = np.fmin.reduce(c11, axis=1).astype(np.float64)
    return smallest
