"""Protocols staff add or version without a code change, kept in the data directory beside the shipped ones.

A protocol is identified by its id and version. Shipped protocols live in the package
(``benchmarks/protocols/<id>.yaml``); protocols added with ``rtqa protocols add FILE`` are validated and stored as
``<data dir>/protocols/<id>/<version>.yaml`` (never overwritten: a changed file needs a new version). Scoring
uses the version a case was registered with, so a new version never silently rescores old cases.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from benchmarks.protocols import PROTOCOL_DIR, Protocol, ProtocolError, load_protocol, parse_protocol
from benchmarks.yaml_files import read_yaml

__all__ = ["ProtocolStoreError", "add_protocol", "added_protocols", "read_protocol_file", "resolve_protocol"]


class ProtocolStoreError(ValueError):
    """A protocol cannot be added or found; the message says what to do."""


def _store_dir(data_dir: Path) -> Path:
    return data_dir / "protocols"


def read_protocol_file(path: Path) -> Protocol:
    """Read and validate a protocol file of any name.

    Raises:
        ProtocolError: unreadable file, invalid YAML or invalid content (naming the file, field and value).
    """
    data = read_yaml(path, error=ProtocolError, what="protocol file")
    return parse_protocol(data, source=str(path))


def resolve_protocol(protocol_id: str, version: str | None, *, data_dir: Path) -> Protocol:
    """The protocol ``protocol_id`` at ``version`` (None: the shipped one, else the newest added).

    Looks in the data directory first (added versions), then the package.

    Raises:
        ProtocolError: no such protocol or version (naming the versions that exist).
    """
    stored = _store_dir(data_dir) / protocol_id
    if version is not None and (stored / f"{version}.yaml").is_file():
        return read_protocol_file(stored / f"{version}.yaml")
    shipped_path = PROTOCOL_DIR / f"{protocol_id}.yaml"
    if shipped_path.is_file():
        shipped = load_protocol(protocol_id)
        if version is None or shipped.version == version:
            return shipped
    added = sorted(p.stem for p in stored.glob("*.yaml")) if stored.is_dir() else []
    if version is None and added:
        return read_protocol_file(stored / f"{added[-1]}.yaml")
    have = ([load_protocol(protocol_id).version] if shipped_path.is_file() else []) + added
    if not have:
        return load_protocol(protocol_id)  # raises, listing the known ids
    raise ProtocolError(
        f"protocol {protocol_id!r} has no version {version!r} (versions: {', '.join(have)}); "
        "add it with `rtqa protocols add FILE`"
    )


def add_protocol(path: Path, *, data_dir: Path) -> tuple[Protocol, Path, bool]:
    """Validate a protocol file and store it as ``<data dir>/protocols/<id>/<version>.yaml``.

    Returns the protocol, where it is stored, and whether it was new (False: the identical file was already
    there). Written through a temporary file and a rename: never half-written.

    Raises:
        ProtocolError: invalid file.
        ProtocolStoreError: the version exists with other content, or is the shipped version of that id.
    """
    protocol = read_protocol_file(path)
    data = path.read_bytes()
    shipped = PROTOCOL_DIR / f"{protocol.id}.yaml"
    if shipped.is_file() and load_protocol(protocol.id).version == protocol.version and shipped.read_bytes() != data:
        raise ProtocolStoreError(
            f"{path}: protocol {protocol.id!r} version {protocol.version!r} is the shipped version with other "
            "content; give the changed protocol a new version"
        )
    target = _store_dir(data_dir) / protocol.id / f"{protocol.version}.yaml"
    if target.exists():
        if hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest():
            return protocol, target, False
        raise ProtocolStoreError(
            f"{path}: protocol {protocol.id!r} version {protocol.version!r} already exists with other content "
            f"({target}); give the changed protocol a new version"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".incoming-{uuid.uuid4().hex}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return protocol, target, True


def added_protocols(data_dir: Path) -> list[Protocol]:
    """Every protocol version added to the data directory, by id then version."""
    root = _store_dir(data_dir)
    if not root.is_dir():
        return []
    return [read_protocol_file(p) for p in sorted(root.glob("*/*.yaml"))]
