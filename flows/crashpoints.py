"""Fault injection for crash-recovery checks: ``RTQA_CRASH_AT=<point>`` makes the process kill itself with SIGKILL
(as ``kill -9`` would) when it reaches that point of a submission's steps.

Unset (always, in service), :func:`crash_point` only reads the environment and returns. The points, in the order a
submission passes them (:data:`CRASH_POINTS`), sit where a crash leaves a different state behind: part-way through
copying the files, with the folder stored but no row, and before and after each step's commit. Nothing else in the
product reads ``RTQA_CRASH_AT``; ``tests/flows/test_crash_recovery.py`` uses it to show that running the same
submission again after a crash at any point ends as a run without one.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_POINTS", "ENV", "crash_point"]

ENV = "RTQA_CRASH_AT"
"""The environment variable naming the point to crash at."""

CRASH_POINTS = (
    "ingest:copying",
    "ingest:stored",
    "ingest:committed",
    "validate:before-commit",
    "validate:committed",
    "score:results-written",
    "score:committed",
    "decide:before-commit",
    "decide:committed",
    "credential:before-commit",
    "credential:committed",
)
"""Every point :func:`crash_point` is called with."""


def crash_point(name: str) -> None:
    """Kill this process at once (SIGKILL: no cleanup, no rollback, no ``finally``) when ``RTQA_CRASH_AT`` names
    ``name``; otherwise do nothing."""
    assert name in CRASH_POINTS, name
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
