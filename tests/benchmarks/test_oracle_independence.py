"""The simulator's oracle shares no metric code with the scorer (qa_checks), so end-to-end tests can catch a
definition error in the scorer.

Every module of benchmarks/simulation/ is parsed with ``ast``: it may import from qa_checks only the data classes
and protocol evaluation of :data:`ALLOWED`, never a metric module (gamma, DVH, plan indices, contours, surface
distances, ...). At run time no name in those modules may come from a forbidden qa_checks module either (which
would catch a metric function re-exported through another package).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

SIMULATION_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "simulation"

ALLOWED = frozenset({"qa_checks.protocol", "qa_checks.geometry", "qa_checks.errors"})
"""qa_checks modules the oracle may import: outcome evaluation from values, grids and errors (no metric code)."""

MODULES = sorted(p.stem for p in SIMULATION_DIR.glob("*.py"))


def forbidden_imports(source: str) -> list[str]:
    """The qa_checks modules ``source`` imports that are not in :data:`ALLOWED` (``from qa_checks import dvh``
    counts as importing ``qa_checks.dvh``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names = [node.module]
            if node.module == "qa_checks":
                names = [f"qa_checks.{alias.name}" for alias in node.names]
        else:
            continue
        found += [n for n in names if (n == "qa_checks" or n.startswith("qa_checks.")) and n not in ALLOWED]
    return found


class TestForbiddenImports:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("from qa_checks.gamma import gamma_3d", ["qa_checks.gamma"]),
            ("import qa_checks.dvh as dvh", ["qa_checks.dvh"]),
            ("from qa_checks import plan_indices, protocol", ["qa_checks.plan_indices"]),
            ("import qa_checks", ["qa_checks"]),
            ("def f():\n    from qa_checks.contours import dice\n", ["qa_checks.contours"]),
            ("from qa_checks.protocol import evaluate\nfrom qa_checks.geometry import DoseGrid", []),
            ("from benchmarks.protocols import Protocol", []),
        ],
    )
    def test_checker(self, source: str, expected: list[str]) -> None:
        assert forbidden_imports(source) == expected

    def test_the_oracle_modules_exist(self) -> None:
        assert {"oracle", "definitions", "gamma_bounds"} <= set(MODULES)

    @pytest.mark.parametrize("module", MODULES)
    def test_no_qa_checks_metric_module(self, module: str) -> None:
        source = (SIMULATION_DIR / f"{module}.py").read_text(encoding="utf-8")
        assert forbidden_imports(source) == [], f"benchmarks/simulation/{module}.py imports scorer metric code"

    @pytest.mark.parametrize("module", MODULES)
    def test_no_scorer_function_reachable_by_name(self, module: str) -> None:
        loaded = importlib.import_module(f"benchmarks.simulation.{module}")
        for name, value in vars(loaded).items():
            origin = getattr(value, "__module__", None) if inspect.isfunction(value) or inspect.isclass(value) else None
            if origin and origin.startswith("qa_checks"):
                assert origin in ALLOWED, f"benchmarks.simulation.{module}.{name} comes from {origin}"
