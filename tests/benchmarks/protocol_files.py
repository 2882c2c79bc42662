"""Helpers for protocol-file tests: write a protocol mapping as YAML, or copy one with a single field replaced."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


def write_protocol(tmp_path: Path, data: Any, name: str = "test-protocol.yaml") -> Path:
    """Write ``data`` as a YAML protocol file in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def replaced(base: dict[str, Any], path_in_data: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with one field (dotted path, ``[i]`` for list items) set to ``value``."""
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(base))
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path_in_data)
    target: Any = data
    for part in parts[:-1]:
        target = target[int(part[1:-1])] if part.startswith("[") else target[part]
    last = parts[-1]
    if last.startswith("["):
        target[int(last[1:-1])] = value
    else:
        target[last] = value
    return data
