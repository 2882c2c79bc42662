"""The search behind :func:`qa_checks.gamma.gamma_3d`: gamma² at reference points, shell by shell.

The definitions (search positions, trilinear interpolation of the evaluated dose, stopping rule, positions
outside the evaluated grid) are those of the :mod:`qa_checks.gamma` module docstring; this module only
computes them. Arrays are indexed (z, y, x); coordinates are in mm; doses in Gy.

How the work is shared
    Every reference point is searched on spherical shells of increasing radius until ``d / DTA >= gamma``.
    Shells are processed for all points still searching at once, by one of two interpolation schemes that give
    the same positions and the same interpolated doses (to float32 rounding): *shared weights*
    (:mod:`qa_checks.gamma_shared`; points grouped in phase classes on an evenly spaced evaluated grid, one
    weight matrix per class and shell) and *per-point weights* (:mod:`qa_checks.gamma_per_point`; uneven
    evaluated spacing, classes of a single point, points whose search reaches the evaluated grid's edge, and the
    last points still searching once fewer than ``HANDOVER_POINTS_PER_CLASS`` per class are left, when building
    a class's weights for a shell would cost more than interpolating its points one by one). A shell whose
    positions are those of the previous one (the radius ``distance_mm`` forced in right after a step that summed
    to it, to rounding) is not searched again.

    A shell is split into independent tasks, each updating its own points; :class:`TaskRunner` runs them on
    ``threads`` threads (NumPy releases the GIL in the gathers, products and reductions that make up a task).
    The result does not depend on the number of threads or on how a shell is split.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from qa_checks.gamma_lattice import Lattice
from qa_checks.gamma_per_point import PerPointSearch
from qa_checks.gamma_shared import SharedSearch, split_points

__all__ = [
    "EvaluatedBlock",
    "SearchPoints",
    "TaskRunner",
    "default_threads",
    "search_gamma2",
    "shell_distances_mm",
    "shell_offsets_mm",
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
Axes = tuple[FloatArray, FloatArray, FloatArray]
_T = TypeVar("_T")

_RADIUS_TOLERANCE_MM: Final = 1e-9
"""Rounding allowance when comparing a shell radius with the maximum search distance."""

HANDOVER_POINTS_PER_CLASS: Final = 2
"""Once the points still searching with shared weights average fewer than this per phase class, they are handed
over to per-point interpolation for the remaining shells (0 never hands over)."""

MAX_DEFAULT_THREADS: Final = 4
"""The default number of threads is the number of CPUs this process may run on, at most this many (the work is
bound by memory bandwidth beyond a few threads)."""


def default_threads() -> int:
    """Threads used by default: the CPUs available to this process, at most ``MAX_DEFAULT_THREADS``."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(available, MAX_DEFAULT_THREADS))


class TaskRunner:
    """Runs lists of independent tasks on ``threads`` threads (the calling thread and ``threads - 1`` workers);
    one thread runs them in order. The calling thread takes tasks too and never waits for a worker that has not
    started: such a worker's share falls to the threads that are running. Use as a context manager (the workers
    stop on exit)."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1; got {threads!r}")
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> TaskRunner:
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="gamma")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def start(self, task: Callable[[], _T]) -> Callable[[], _T]:
        """Start ``task`` on a worker thread (run it at once on one thread); returns a function that waits for it
        and gives its result."""
        if self._pool is None:
            result = task()
            return lambda: result
        future = self._pool.submit(task)

        def wait() -> _T:
            # a worker that has not picked the task up yet (a busy machine) is not waited for: run it here
            return task() if future.cancel() else future.result()

        return wait

    def run(self, tasks: list[Callable[[], None]]) -> None:
        """Run every task; returns when all are done (re-raising the first error)."""
        if self._pool is None or len(tasks) < 2:
            for task in tasks:
                task()
            return
        queue = deque(tasks)
        errors: list[BaseException] = []

        def drain() -> None:
            while True:
                try:
                    task = queue.popleft()
                except IndexError:
                    return
                try:
                    task()
                except BaseException as error:  # the other tasks still run; the first error is raised at the end
                    errors.append(error)

        helpers = [self._pool.submit(drain) for _ in range(min(self.threads - 1, len(tasks) - 1))]
        try:
            drain()
        finally:
            # a helper that has not started by the time the queue is empty has nothing to do: it is cancelled
            # rather than waited for (on a busy machine a worker may get a core only milliseconds later)
            for helper in helpers:
                if not helper.cancel():
                    helper.result()
        if errors:
            raise errors[0]


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
class SearchPoints:
    """The reference points to evaluate: where they are in the cropped reference box, dose, and 1 / ΔD."""

    flat: IndexArray
    """Flat (z, y, x) index of each point in the cropped reference box, increasing."""
    box_shape: tuple[int, int, int]
    axes_mm: Axes
    """(z, y, x) coordinates of the cropped reference box, in mm."""
    dose_gy: npt.NDArray[np.float32]
    inv_criterion: npt.NDArray[np.float32]
    uniform_inv_criterion: float | None
    """The value shared by every point of ``inv_criterion`` under global normalisation (None for local)."""

    def index(self, subset: IndexArray) -> tuple[IndexArray, IndexArray, IndexArray]:
        """(z, y, x) index in the cropped reference box of each point of ``subset``."""
        z, y, x = np.unravel_index(self.flat[subset], self.box_shape)
        return z, y, x


@dataclass(frozen=True)
class EvaluatedBlock:
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
    runner: TaskRunner | None = None,
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
        runner: runs the tasks of a shell (default: one thread).
    """
    # the bounding box of the mask (the whole array when the caller has already cropped to it)
    spans = [np.flatnonzero(mask.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))]
    box = tuple(slice(int(span[0]), int(span[-1]) + 1) for span in spans)
    ref_crop = (ref_axes[0][box[0]], ref_axes[1][box[1]], ref_axes[2][box[2]])
    box_mask = mask[box]
    flat = np.flatnonzero(box_mask)
    dose_gy = ref_dose[box][box_mask]
    if norm_gy is None:
        inv_criterion = (1.0 / (dose_criterion_fraction * dose_gy)).astype(np.float32)
        uniform = None
    else:
        uniform = np.float32(1.0 / (dose_criterion_fraction * norm_gy))
        inv_criterion = np.full(dose_gy.size, uniform, dtype=np.float32)
    points = SearchPoints(
        flat=flat,
        box_shape=(box_mask.shape[0], box_mask.shape[1], box_mask.shape[2]),
        axes_mm=ref_crop,
        dose_gy=dose_gy.astype(np.float32),
        inv_criterion=inv_criterion,
        uniform_inv_criterion=None if uniform is None else float(uniform),
    )
    crop_z, crop_y, crop_x = (
        _crop_range(ref_axis, eval_axis, limit_mm) for ref_axis, eval_axis in zip(ref_crop, eval_axes, strict=True)
    )
    values = np.ascontiguousarray(
        eval_dose[crop_z[0] : crop_z[1], crop_y[0] : crop_y[1], crop_x[0] : crop_x[1]], dtype=np.float32
    )
    nz, ny, nx = values.shape
    block = EvaluatedBlock(
        values=values.ravel(),
        shape=(nz, ny, nx),
        strides=(ny * nx, nx, 1),
        crops=(crop_z, crop_y, crop_x),
        eval_axes=eval_axes,
    )

    gamma2 = np.full(dose_gy.size, np.inf, dtype=np.float64)
    lattice = Lattice.of(ref_crop, block)
    shared, per_point = (
        (None, np.arange(dose_gy.size)) if lattice is None else split_points(points, block, lattice, limit_mm)
    )
    per_point_search = PerPointSearch(points, block)
    if runner is None:
        with TaskRunner(1) as single:
            _search(gamma2, shared, per_point, per_point_search, single, distance_mm, step_mm, limit_mm)
    else:
        _search(gamma2, shared, per_point, per_point_search, runner, distance_mm, step_mm, limit_mm)
    return gamma2


def _search(
    gamma2: FloatArray,
    shared: SharedSearch | None,
    per_point: IndexArray,
    per_point_search: PerPointSearch,
    runner: TaskRunner,
    distance_mm: float,
    step_mm: float,
    limit_mm: float,
) -> None:
    """The shells, in increasing radius, for the points still searching (updates ``gamma2`` in place)."""
    previous: Axes | None = None
    for distance in shell_distances_mm(distance_mm, step_mm, limit_mm):
        offsets = shell_offsets_mm(distance, step_mm)
        if previous is not None and _same_positions(previous, offsets):
            continue  # the radius forced in right after a step that summed to it (0.9999999999999999, then 1.0)
        previous = offsets
        term = (distance / distance_mm) ** 2
        per_point = per_point[gamma2[per_point] > term]
        if shared is not None:
            shared.keep_searching(term)
            if shared.size and shared.size < HANDOVER_POINTS_PER_CLASS * shared.classes_searching:
                # few points left per class: building each class's weights would cost more than interpolating
                # point by point
                per_point = np.union1d(per_point, shared.hand_over(gamma2))
                shared = None
        if per_point.size == 0 and (shared is None or shared.size == 0):
            break
        # per-point tasks first: they cost the most per point
        tasks = per_point_search.shell_tasks(gamma2, per_point, offsets, term) if per_point.size else []
        if shared is not None and shared.size:
            tasks += shared.shell_tasks(offsets, term)
        runner.run(tasks)
    if shared is not None:
        shared.finish(gamma2)


def _same_positions(previous: Axes, offsets: Axes) -> bool:
    """Whether two shells have the same search positions (to ``_RADIUS_TOLERANCE_MM``)."""
    return previous[0].size == offsets[0].size and all(
        bool(np.allclose(a, b, rtol=0.0, atol=_RADIUS_TOLERANCE_MM)) for a, b in zip(previous, offsets, strict=True)
    )


def _crop_range(points_mm: FloatArray, eval_axis: FloatArray, reach_mm: float) -> tuple[int, int]:
    """Index range [start, stop) of the evaluated axis that search positions can reach (plus one neighbour)."""
    lo = float(points_mm.min()) - reach_mm
    hi = float(points_mm.max()) + reach_mm
    start = max(int(np.searchsorted(eval_axis, lo, side="right")) - 2, 0)
    stop = min(int(np.searchsorted(eval_axis, hi, side="left")) + 2, eval_axis.size)
    if stop - start < 2:
        start, stop = (0, 2) if stop <= 2 else (eval_axis.size - 2, eval_axis.size)
    return start, stop
