"""Shared trilinear weights for the gamma search (:mod:`qa_checks.gamma_search`): phase classes.

The points of a phase class (:mod:`qa_checks.gamma_lattice`) see the same trilinear weights for a given search
position, so a shell is interpolated for all of them by matrix products: (positions x stencil nodes) weights times
(stencil nodes x points) evaluated doses, gathered once per point and shell. On the same grid (any origin) there
is one class; a 2 mm reference against a 2.5 mm evaluated grid has 5 fractions per axis (the lattices coincide
every 10 mm), so 125 classes; 3 mm against 2 mm has 8. Needs an evenly spaced evaluated grid, and a point's whole
search region inside the evaluated block (the others are searched point by point, :mod:`qa_checks.gamma_per_point`).

How a shell is shared out
    The points still searching are kept in class order with their gamma² so far, dose and flat node index, and
    compacted after every shell (so a class is a contiguous run). A class is cut into *entries* of at most a few
    hundred to a few thousand points (fewer as a shell has more positions), and the classes whose stencils have
    the same (z, y, x) number of nodes are processed together: their entries, sorted by size, go into tasks of a
    bounded number of points, whose entries differ little in size (the shorter are padded with a repeated point).
    A task gathers the node doses of its points (one gather per stencil node, from a shifted view of the
    evaluated block), then for each slice of the shell's positions builds the weights of its classes (small
    enough to stay in cache) and does one batched product, (entries x positions x nodes) @ (entries x nodes x
    points), or laid out (points x positions) when the entries are much narrower than the shell (NumPy takes
    minima along long rows faster), squares it and takes the minimum over positions. Each product of the batch
    is small enough for OpenBLAS to run it single-threaded, and the tasks of a shell update disjoint points, so
    they can run on several threads. The shell of radius 0 (one position, the point itself) is interpolated point by
    point from each class's fractions instead (eight node doses, seven linear interpolations).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from qa_checks.gamma_lattice import Lattice, ShellAxis, Stencil

if TYPE_CHECKING:
    from qa_checks.gamma_search import Axes, EvaluatedBlock, IndexArray, SearchPoints

__all__ = ["SharedSearch", "split_points"]

FloatArray = npt.NDArray[np.float64]

REACH_TOLERANCE_MM: Final = 1e-6
"""Added to the search limit when deciding which evaluated nodes a point's search can reach (> the rounding of
shell radii and offsets)."""

MIN_SHARED_POINTS: Final = 2
"""A phase class uses shared weights only if it has at least this many points (grid pairs whose fractions never
repeat, e.g. an evaluated spacing of 2.34 mm, are interpolated point by point)."""

DENSE_CLASS_KEYS: Final = 1 << 16
"""Phase classes are counted with a dense table (rather than by sorting) when there are at most this many possible
(z, y, x) phase combinations (125 for 2 mm against 2.5 mm)."""

BLAS_SINGLE_THREAD_WORK: Final = 1 << 18
"""Largest matrix product (rows x inner x columns) issued at once; OpenBLAS stays single-threaded up to 2**18."""

ENTRY_POINTS_RANGE: Final = (64, 4096)
"""Smallest and largest entry (points of one class in one product of a batch)."""

SMALL_GATHER_POINTS: Final = 4096
"""Tasks with fewer points gather their node doses in one call (with an index per node and point)."""

MIN_FILL: Final = 0.85
MIN_PADDING: Final = 4
"""The entries of a task have at least ``MIN_FILL`` of the points of its largest, or ``MIN_PADDING`` fewer (shorter
ones are padded)."""

WEIGHT_ELEMENTS: Final = 1 << 17
"""Bound on the weights of a task's classes built at once (for a slice of the shell's positions), in elements."""

POINTS_MAJOR_RATIO: Final = 4
"""Products are laid out points by positions (minimum along the positions) when a shell has more than this many
times as many positions as an entry has points."""

CENTRE_TASK_POINTS: Final = 1 << 16
"""Points per task of the shell of radius 0."""

TASK_ELEMENTS: Final = 1 << 19
"""Bound on the gathered node doses and on the product results of one task (points x nodes, points x positions
of one slice), in elements (2 MB of float32 each)."""


def split_points(
    points: SearchPoints, block: EvaluatedBlock, lattice: Lattice, limit_mm: float
) -> tuple[SharedSearch | None, IndexArray]:
    """The points to search with shared weights (interior points of phase classes with at least
    ``MIN_SHARED_POINTS`` of them), and the indices of the others."""
    n_points = points.dose_gy.size
    n_y, n_x = lattice.fractions[1].size, lattice.fractions[2].size
    n_keys = lattice.fractions[0].size * n_y * n_x
    # over the reference box, summed axis by axis over its coordinates: the class key (z * n_y + y) * n_x + x,
    # plus n_keys for each axis along which the search region leaves the block; and the flat block index of the
    # lower cell node. Then taken at the points.
    key_type: type[np.signedinteger] = np.int32 if 3 * n_keys < 1 << 31 else np.int64
    key_parts: list[npt.NDArray[np.signedinteger]] = []
    base_parts: list[npt.NDArray[np.int64]] = []
    for axis, multiplier in enumerate((n_y * n_x, n_x, 1)):
        # nodes reachable within limit_mm: cells floor(f - reach) .. floor(f + reach) and their upper node (the
        # reach rounded up past the radius tolerance of the last shell)
        node, phase = lattice.node[axis], lattice.phase[axis]
        fraction = lattice.fractions[axis][phase]
        reach = (limit_mm + REACH_TOLERANCE_MM) / lattice.spacing_mm[axis]
        low = np.floor(fraction - reach).astype(np.intp)
        high = np.floor(fraction + reach).astype(np.intp) + 1
        outside = (node + low < 0) | (node + high > block.shape[axis] - 1)
        shape = [1, 1, 1]
        shape[axis] = node.size
        key_parts.append((phase * multiplier + outside * n_keys).astype(key_type).reshape(shape))
        base_parts.append((node.astype(np.int64) * block.strides[axis]).reshape(shape))
    key = np.take((key_parts[0] + key_parts[1]) + key_parts[2], points.flat)
    np.minimum(key, n_keys, out=key)  # n_keys: the search region leaves the block
    # the distinct keys (increasing), each point's key as an index into them, and their numbers of points
    if n_keys <= DENSE_CLASS_KEYS:
        counts = np.bincount(key, minlength=n_keys + 1)
        keys, inverse = np.arange(n_keys + 1), key
    else:
        keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
    is_class = (counts >= MIN_SHARED_POINTS) & (keys < n_keys)
    n_shared = int(counts[is_class].sum())
    if n_shared == 0:
        return None, np.arange(n_points)
    # every point not searched with shared weights gets the last label; a stable sort puts the others in class
    # order, then these in increasing order (a stable sort of 8- or 16-bit labels is a radix sort)
    label = np.where(is_class, np.arange(keys.size), keys.size)
    if keys.size < 1 << 16:
        label = label.astype(np.uint8 if keys.size < 1 << 8 else np.uint16)
    order = np.argsort(label[inverse], kind="stable")
    shared, others = order[:n_shared], order[n_shared:]
    class_key, counts = keys[is_class], counts[is_class]
    class_phase = (class_key // (n_y * n_x), class_key // n_x % n_y, class_key % n_x)
    # (1 / ΔD)² in float64: one value under global normalisation, else per point
    inv2 = (
        points.inv_criterion[shared].astype(np.float64) ** 2
        if points.uniform_inv_criterion is None
        else np.float64(points.uniform_inv_criterion) ** 2
    )
    search = SharedSearch(
        block,
        lattice,
        class_phase,
        counts,
        ids=shared,
        base=np.take((base_parts[0] + base_parts[1]) + base_parts[2], points.flat[shared]),
        dose=points.dose_gy[shared],
        inv2=inv2,
    )
    return search, others


class SharedSearch:
    """The points searched with shared weights, in class order, with their gamma² so far (see the module
    docstring)."""

    def __init__(
        self,
        block: EvaluatedBlock,
        lattice: Lattice,
        class_phase: tuple[IndexArray, IndexArray, IndexArray],
        counts: IndexArray,
        *,
        ids: IndexArray,
        base: npt.NDArray[np.int64],
        dose: npt.NDArray[np.float32],
        inv2: FloatArray | np.float64,
    ) -> None:
        """``class_phase``: the (z, y, x) phase of each class; ``counts``: its number of points; ``ids``: the
        points (indices into the search's points), in class order; ``base``: flat block index of each one's lower
        cell node; ``dose``: its reference dose; ``inv2``: its (1 / ΔD)², or one value shared by all."""
        self._values = block.values
        self._strides = block.strides
        self._lattice = lattice
        self._phase = class_phase
        self._bounds = np.concatenate([[0], np.cumsum(counts)])  # class c: points bounds[c] to bounds[c + 1]
        self._counts = counts
        self._ids = ids
        self._base = base
        self._dose = dose
        self._inv2 = inv2
        self._gamma2 = np.full(ids.size, np.inf, dtype=np.float64)
        self._active = np.arange(ids.size)
        """The points still searching (increasing, so in class order)."""
        self._offsets: dict[tuple[int, int, int], npt.NDArray[np.int64]] = {}

    @property
    def size(self) -> int:
        """Number of points still searching."""
        return int(self._active.size)

    def keep_searching(self, term: float) -> None:
        """Keep only the points whose gamma² so far exceeds ``term`` (the next shell can still improve it)."""
        kept = np.flatnonzero(self._gamma2[self._active] > term)  # indices: faster than a scattered boolean mask
        if kept.size < self._active.size:
            self._active = self._active[kept]
            self._counts = np.diff(np.searchsorted(self._active, self._bounds))

    @property
    def classes_searching(self) -> int:
        """Number of phase classes with points still searching."""
        return int(np.count_nonzero(self._counts))

    def hand_over(self, gamma2: FloatArray) -> IndexArray:
        """Write every point's gamma² so far into ``gamma2`` and return the points still searching (indices into
        the search's points, increasing); this object searches no more."""
        self.finish(gamma2)
        searching = np.sort(self._ids[self._active])
        self._active = self._active[:0]
        self._counts = np.zeros_like(self._counts)
        return searching

    def finish(self, gamma2: FloatArray) -> None:
        """Write the gamma² of every point into ``gamma2``."""
        gamma2[self._ids] = self._gamma2

    def _node_offsets(self, shape: tuple[int, int, int]) -> npt.NDArray[np.int64]:
        """Flat block offsets of a (z, y, x) box of nodes of the given shape from its first node."""
        if shape not in self._offsets:
            kz, ky, kx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
            strides = self._strides
            self._offsets[shape] = (kz * strides[0] + ky * strides[1] + kx * strides[2]).ravel().astype(np.int64)
        return self._offsets[shape]

    def shell_tasks(self, offsets_mm: Axes, term: float) -> list[Callable[[], None]]:
        """Independent tasks that update the points' gamma² with the shell of the given offsets at
        ``term = (d / DTA)²``."""
        if offsets_mm[0].size == 1 and not any(offsets[0] for offsets in offsets_mm):
            return self._centre_tasks(term)
        lattice = self._lattice
        axes = [
            ShellAxis.build(fractions, offsets, spacing)
            for fractions, offsets, spacing in zip(lattice.fractions, offsets_mm, lattice.spacing_mm, strict=True)
        ]
        present = np.flatnonzero(self._counts)
        starts = (np.cumsum(self._counts) - self._counts)[present]
        counts = self._counts[present]
        phase = [p[present] for p in self._phase]
        widths = [axis.width[p] for axis, p in zip(axes, phase, strict=True)]
        shift = (
            axes[0].low[phase[0]] * self._strides[0] + axes[1].low[phase[1]] * self._strides[1] + axes[2].low[phase[2]]
        ).astype(np.int64)
        largest = 1 + max(int(w.max()) for w in widths)
        keys = (widths[0] * largest + widths[1]) * largest + widths[2]
        tasks: list[tuple[int, Callable[[], None]]] = []
        for key in np.unique(keys).tolist():
            group = np.flatnonzero(keys == key)
            shape = (key // (largest * largest), key // largest % largest, key % largest)
            tasks += self._group_tasks(axes, shape, group, phase, starts, counts, shift, term)
        # the largest first, so that the last tasks of a shell, which may keep the other threads waiting, are small
        return [task for _, task in sorted(tasks, key=lambda cost_task: -cost_task[0])]

    def _centre_tasks(self, term: float) -> list[Callable[[], None]]:
        """Tasks for the shell of radius 0 (the point itself): one trilinear interpolation per point, from its
        class's fractions (seven linear interpolations of the cell's eight nodes), in pieces of
        ``CENTRE_TASK_POINTS`` points."""
        lattice = self._lattice
        active = self._active
        # of each point still searching (in class order)
        fractions = [
            np.repeat(lattice.fractions[axis][self._phase[axis]].astype(np.float32), self._counts) for axis in range(3)
        ]
        strides = self._strides

        def centre(part: slice) -> None:
            where = active[part]
            base = self._base[where]
            fz, fy, fx = (fraction[part] for fraction in fractions)

            def node(z: int, y: int, x: int) -> npt.NDArray[np.float32]:
                values: npt.NDArray[np.float32] = np.take(self._values[z * strides[0] + y * strides[1] + x :], base)
                return values

            def lerp(
                low: npt.NDArray[np.float32], high: npt.NDArray[np.float32], weight: npt.NDArray[np.float32]
            ) -> npt.NDArray[np.float32]:
                high -= low
                high *= weight
                high += low
                return high

            y0 = lerp(lerp(node(0, 0, 0), node(0, 0, 1), fx), lerp(node(0, 1, 0), node(0, 1, 1), fx), fy)
            y1 = lerp(lerp(node(1, 0, 0), node(1, 0, 1), fx), lerp(node(1, 1, 0), node(1, 1, 1), fx), fy)
            difference = lerp(y0, y1, fz)
            difference -= self._dose[where]
            np.square(difference, out=difference)
            inv2 = self._inv2[where] if isinstance(self._inv2, np.ndarray) else self._inv2
            self._gamma2[where] = np.minimum(self._gamma2[where], term + difference * inv2)

        return [partial(centre, slice(i, i + CENTRE_TASK_POINTS)) for i in range(0, active.size, CENTRE_TASK_POINTS)]

    def _group_tasks(
        self,
        axes: list[ShellAxis],
        shape: tuple[int, int, int],
        group: IndexArray,
        phase: list[IndexArray],
        starts: IndexArray,
        counts: IndexArray,
        shift: npt.NDArray[np.int64],
        term: float,
    ) -> list[tuple[int, Callable[[], None]]]:
        """Tasks for the classes ``group`` (indices into ``phase``, ``starts``, ``counts``, ``shift``: each class's
        (z, y, x) phase, run of points and flat offset of its stencil's first node), whose stencils have the given
        (z, y, x) number of nodes; each with its size (points x nodes x positions)."""
        n_positions = axes[0].weights.shape[2]
        n_nodes = shape[0] * shape[1] * shape[2]
        low, high = ENTRY_POINTS_RANGE
        entry_limit = min(max(BLAS_SINGLE_THREAD_WORK // ((n_nodes + 1) * min(n_positions, 64)), low), high)
        # each class in pieces of equal size (to one point) of at most entry_limit points; classes in decreasing
        # size of their largest piece, so that the entries of a task have about the same size
        class_counts = counts[group]
        pieces = -(-class_counts // entry_limit)
        largest_piece = -(-class_counts // pieces)
        order = np.argsort(-largest_piece, kind="stable")
        group, class_counts, pieces = group[order], class_counts[order], pieces[order]
        entry_class = np.repeat(np.arange(group.size), pieces)
        rank = np.arange(entry_class.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        smaller, longer = np.divmod(class_counts, pieces)  # the first ``longer`` pieces have one point more
        smaller, longer = smaller[entry_class], longer[entry_class]
        entry_start = starts[group][entry_class] + rank * smaller + np.minimum(rank, longer)
        entry_count = smaller + (rank < longer)
        stencil = Stencil(
            shape,
            self._node_offsets(shape),
            (axes[0].weights[:, : shape[0]], axes[1].weights[:, : shape[1]], axes[2].weights[:, : shape[2]]),
        )
        group_phase = [p[group] for p in phase]
        group_shift = shift[group]
        tasks: list[tuple[int, Callable[[], None]]] = []
        first = 0
        while first < entry_class.size:
            width = int(entry_count[first])  # about the largest of the task's entries
            rows = _rows(n_positions, n_nodes + 1, width)
            stop = min(first + max(1, TASK_ELEMENTS // (width * max(n_nodes + 1, rows))), entry_class.size)
            # no entry much shorter than the first (the shorter are padded)
            shortest = min(MIN_FILL * width, width - MIN_PADDING)
            stop = first + 1 + int(np.searchsorted(-entry_count[first + 1 : stop], -shortest, side="right"))
            classes = entry_class[first:stop]
            task_classes = np.unique(classes)  # increasing, as ``classes``
            tasks.append(
                (
                    (stop - first) * width * (n_nodes + 1) * n_positions,
                    partial(
                        self._entries,
                        stencil,
                        (group_phase[0][task_classes], group_phase[1][task_classes], group_phase[2][task_classes]),
                        None if task_classes.size == classes.size else np.searchsorted(task_classes, classes),
                        entry_start[first:stop],
                        entry_count[first:stop],
                        group_shift[classes],
                        term,
                    ),
                )
            )
            first = stop
        return tasks

    def _entries(
        self,
        stencil: Stencil,
        phase: tuple[IndexArray, IndexArray, IndexArray],
        entry_class: IndexArray | None,
        start: IndexArray,
        count: IndexArray,
        shift: npt.NDArray[np.int64],
        term: float,
    ) -> None:
        """One shell for a batch of entries (runs ``start``, ``count`` of points, each of one class: class
        ``entry_class`` of the classes of (z, y, x) phases ``phase``, or one entry per class); updates their
        gamma²."""
        n_entries, width = start.size, int(count.max())
        node_offsets = stencil.node_offsets
        n_nodes = node_offsets.size
        column = np.arange(width)
        # positions in the points' arrays; a shorter entry is padded with its last point, whose result is then
        # written twice, identically
        if count.min() < width:
            column = np.minimum(column[None, :], count[:, None] - 1)
        where = self._active[start[:, None] + column]
        first_node = self._base[where]
        first_node += shift[:, None]
        stacked = np.empty((n_nodes + 1, n_entries, width), dtype=np.float32)
        if first_node.size >= SMALL_GATHER_POINTS:
            # one gather per node, from a shifted view (no index array per node)
            for node, offset in enumerate(node_offsets.tolist()):
                np.take(self._values[offset:], first_node, out=stacked[node], mode="clip")
        else:
            np.take(self._values, node_offsets[:, None, None] + first_node, out=stacked[:n_nodes], mode="clip")
        np.take(self._dose, where, out=stacked[n_nodes], mode="clip")
        n_positions = stencil.weights[0].shape[2]
        rows = min(_rows(n_positions, n_nodes + 1, width), max(1, WEIGHT_ELEMENTS // (phase[0].size * (n_nodes + 1))))
        smallest = np.empty((n_entries, width), dtype=np.float32)
        # the minimum over positions is taken across rows of points, (entries, positions, points), unless entries
        # are much narrower than the shell, (entries, points, positions): NumPy reduces short contiguous rows slowly
        positions_first = n_positions <= POINTS_MAJOR_RATIO * width
        columns = stacked.transpose(1, 0, 2) if positions_first else stacked.transpose(1, 2, 0)
        for row in range(0, n_positions, rows):
            part = stencil.class_weights(phase, slice(row, row + rows))  # (classes, nodes + 1, positions)
            if entry_class is not None:
                part = part[entry_class]
            # De(r') - Dr(r)
            difference = np.matmul(part.transpose(0, 2, 1), columns) if positions_first else np.matmul(columns, part)
            np.square(difference, out=difference)
            axis = 1 if positions_first else 2
            if row == 0:
                np.min(difference, axis=axis, out=smallest)
            else:
                np.minimum(smallest, difference.min(axis=axis), out=smallest)
        inv2 = self._inv2[where] if isinstance(self._inv2, np.ndarray) else self._inv2
        self._gamma2[where] = np.minimum(self._gamma2[where], term + smallest * inv2)


def _rows(n_positions: int, n_columns: int, width: int) -> int:
    """Positions per product of (positions x columns) @ (columns x width): at most ``BLAS_SINGLE_THREAD_WORK``
    multiply-adds, the positions cut in equal slices."""
    rows = max(1, BLAS_SINGLE_THREAD_WORK // (n_columns * width))
    return -(-n_positions // -(-n_positions // rows))
