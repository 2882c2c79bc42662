"""Reading the library's YAML data files (protocols, questionnaires) with errors that name the file and the place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_yaml"]


def read_yaml(path: Path, *, error: type[ValueError], what: str) -> Any:
    """The parsed content of ``path``.

    Raises:
        error: ``"{path}: cannot read {what}: ..."`` when the file cannot be read, or ``"{path}: invalid YAML at
            line L, column C: ..."`` when it is not YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{path}: invalid YAML{where}: {problem}") from None
