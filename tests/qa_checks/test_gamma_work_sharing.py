"""3D gamma: how the search shares out its work does not change the map.

The shared-weight interpolation (phase classes), the per-point interpolation, the split of a shell into entries
and tasks, the layout of the products and the number of threads are ways of computing the same numbers. Each test
forces one of them against the default on a non-trivial case (shifted, scaled and noisy recalculations, on the same
and on non-aligned grids); results computed from the same floating-point operations are compared exactly, the
others to ``GAMMA_ATOL`` (float32 sums in another order).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from qa_checks import gamma_search, gamma_shared
from qa_checks.gamma import gamma_3d
from qa_checks.gamma_per_point import PerPointSearch
from qa_checks.geometry import DoseGrid
from tests.qa_checks.test_gamma import GAMMA_ATOL, recalculated_grid, sabr_like_grid

GRID_PAIRS = [(3.0, 2.0), (3.0, 2.5), (2.0, 3.0), (2.5, 3.0), (2.0, 2.5), (2.5, 2.0)]
"""(reference, evaluated) spacings in mm of the non-aligned grid pairs tested."""


def _case(
    reference_mm: float, evaluated_mm: float, seed: int, shape: tuple[int, int, int] = (10, 12, 12)
) -> tuple[DoseGrid, DoseGrid]:
    reference = sabr_like_grid(shape, reference_mm)
    evaluated = recalculated_grid(
        reference, evaluated_mm, (0.37, -0.61, 0.23), scale=1.02, noise_fraction=0.01, rng=np.random.default_rng(seed)
    )
    return reference, evaluated


@pytest.mark.parametrize(("reference_mm", "evaluated_mm"), GRID_PAIRS)
def test_shared_weights_serve_every_interior_point(
    reference_mm: float, evaluated_mm: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On evenly spaced grids every point whose search stays inside the evaluated grid can share its trilinear
    # weights with the other points of its phase class. Forced to do so down to classes of one point, the
    # per-point interpolation must not be needed, and the map must not change.
    reference, evaluated = _case(reference_mm, evaluated_mm, 2)
    expected = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("per-point interpolation used for an interior point")

    monkeypatch.setattr(gamma_shared, "MIN_SHARED_POINTS", 1)
    monkeypatch.setattr(gamma_search, "HANDOVER_POINTS_PER_CLASS", 0)  # no hand-over in the last shells
    monkeypatch.setattr(PerPointSearch, "shell_tasks", refuse)
    result = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0)
    np.testing.assert_allclose(result.gamma, expected.gamma, atol=GAMMA_ATOL, rtol=0)
    assert result.mean_gamma > 0.1  # not a trivial map


def test_every_point_by_per_point_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    # No phase class shared: every point interpolated on its own gives the same map.
    reference, evaluated = _case(2.0, 2.5, 4)
    expected = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0)
    monkeypatch.setattr(gamma_shared, "MIN_SHARED_POINTS", 10**9)
    result = gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0)
    np.testing.assert_allclose(result.gamma, expected.gamma, atol=GAMMA_ATOL, rtol=0)
    assert result.n_passed == expected.n_passed


@pytest.mark.parametrize(
    ("reference_mm", "evaluated_mm", "per_class"),
    [(2.0, 2.0, 200), (2.0, 2.5, 5), (3.0, 2.0, 40)],  # 1, 125 and 8 phase classes
)
def test_hand_over_to_per_point_interpolation_mid_search(
    reference_mm: float, evaluated_mm: float, per_class: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The points still searching with shared weights handed over to per-point interpolation after some shells
    # (when fewer than ``per_class`` per class are left) give the same map as shared weights to the end.
    reference, evaluated = _case(reference_mm, evaluated_mm, 8, shape=(16, 20, 20))
    monkeypatch.setattr(gamma_search, "HANDOVER_POINTS_PER_CLASS", 0)
    expected = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0)

    handed: list[tuple[int, int]] = []  # (points still searching, points searched with shared weights)
    hand_over = gamma_shared.SharedSearch.hand_over

    def recording(self: gamma_shared.SharedSearch, gamma2: np.ndarray) -> np.ndarray:
        searching = hand_over(self, gamma2)
        handed.append((searching.size, self._ids.size))
        return searching

    monkeypatch.setattr(gamma_shared.SharedSearch, "hand_over", recording)
    monkeypatch.setattr(gamma_search, "HANDOVER_POINTS_PER_CLASS", per_class)
    result = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0)
    assert len(handed) == 1
    assert 0 < handed[0][0] < handed[0][1]  # after the first shells, with points left to search
    np.testing.assert_allclose(result.gamma, expected.gamma, atol=GAMMA_ATOL, rtol=0)
    assert result.n_passed == expected.n_passed
    assert result.mean_gamma > 0.1


@pytest.mark.parametrize("evaluated_mm", [2.0, 2.5])
def test_map_does_not_depend_on_how_a_shell_is_split_into_tasks(
    evaluated_mm: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entries of at most 3 to 7 points (classes in several pieces, padded entries) and tasks of a few entries,
    # against the default: the same map (the tasks update disjoint points).
    reference, evaluated = _case(2.0, evaluated_mm, 3, shape=(16, 20, 20))
    expected = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0, lower_cutoff_percent=0.0)

    submitted: list[int] = []
    run = gamma_search.TaskRunner.run

    def counting_run(self: gamma_search.TaskRunner, tasks: list[Callable[[], None]]) -> None:
        submitted.append(len(tasks))
        run(self, tasks)

    monkeypatch.setattr(gamma_search.TaskRunner, "run", counting_run)
    monkeypatch.setattr(gamma_shared, "ENTRY_POINTS_RANGE", (3, 7))
    monkeypatch.setattr(gamma_shared, "TASK_ELEMENTS", 2048)
    result = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0, lower_cutoff_percent=0.0)
    assert max(submitted) > 50  # the work of a shell was split
    np.testing.assert_allclose(result.gamma, expected.gamma, atol=GAMMA_ATOL, rtol=0)
    assert result.n_passed == expected.n_passed


@pytest.mark.parametrize("ratio", [0, 10**9])
def test_map_does_not_depend_on_the_layout_of_the_products(ratio: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Products laid out (points x positions) for every shell, or (positions x points) for every shell.
    reference, evaluated = _case(3.0, 2.5, 5)
    expected = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0)
    monkeypatch.setattr(gamma_shared, "POINTS_MAJOR_RATIO", ratio)
    result = gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0)
    np.testing.assert_allclose(result.gamma, expected.gamma, atol=GAMMA_ATOL, rtol=0)
    assert result.n_passed == expected.n_passed


@pytest.mark.parametrize(("reference_mm", "evaluated_mm"), [(2.0, 2.0), (2.0, 2.5), (2.0, 2.34)])
@pytest.mark.parametrize("local", [False, True])
def test_map_does_not_depend_on_the_number_of_threads(reference_mm: float, evaluated_mm: float, local: bool) -> None:
    # The same tasks, run on 1, 2 or 3 threads: exactly the same numbers.
    reference, evaluated = _case(reference_mm, evaluated_mm, 6, shape=(16, 20, 20))
    results = [
        gamma_3d(reference, evaluated, dose_percent=2.0, distance_mm=1.0, local=local, threads=threads)
        for threads in (1, 2, 3)
    ]
    for result in results[1:]:
        np.testing.assert_array_equal(result.gamma, results[0].gamma)
        assert result.n_passed == results[0].n_passed
    assert results[0].mean_gamma > 0.1


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_count(threads: object) -> None:
    reference, evaluated = _case(2.0, 2.5, 7)
    with pytest.raises(ValueError, match=r"threads must be a whole number >= 1; got"):
        gamma_3d(reference, evaluated, dose_percent=3.0, distance_mm=2.0, threads=threads)  # type: ignore[arg-type]


def test_a_failing_task_is_reported() -> None:
    # An error in a task reaches the caller once the other tasks have run, whichever thread ran it.
    def fail() -> None:
        raise RuntimeError("task failed")

    done: list[int] = []
    with gamma_search.TaskRunner(2) as runner, pytest.raises(RuntimeError, match="task failed"):
        runner.run([lambda: done.append(1), fail, lambda: done.append(2)])
    assert sorted(done) == [1, 2]


def test_a_worker_that_has_not_started_is_not_waited_for() -> None:
    # The only worker is busy: the calling thread runs every task itself and returns without waiting for it, and a
    # task started on the busy worker runs on the thread that asks for its result.
    release = threading.Event()
    done: list[int] = []
    with gamma_search.TaskRunner(2) as runner:
        busy = runner.start(lambda: release.wait(10.0))
        queued = runner.start(lambda: threading.get_ident())
        start = time.perf_counter()
        runner.run([lambda: done.append(1), lambda: done.append(2), lambda: done.append(3)])
        caller_ran_it = queued() == threading.get_ident()
        elapsed = time.perf_counter() - start
        release.set()
        assert busy()
    assert sorted(done) == [1, 2, 3]
    assert caller_ran_it
    assert elapsed < 5.0
