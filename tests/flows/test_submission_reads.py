"""A stored submission is read once within `reading_once`, again when a file changes, and every time outside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import flows.submission_reads as reads
from flows.submission_reads import file_fingerprint, read_submission, reading_once
from qa_checks.errors import NotDicomError


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, bool]]:
    """Replace the DICOM reader with one that records its calls and returns a new object each time."""
    calls: list[tuple[Any, bool]] = []

    def fake(source: Any, *, sum_beams: bool = False) -> Any:
        calls.append((source, sum_beams))
        if not isinstance(source, list) and Path(source, "broken").exists():
            raise NotDicomError("broken")
        return object()

    monkeypatch.setattr(reads, "load_submission", fake)
    return calls


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "sub" / "CT").mkdir(parents=True)
    (tmp_path / "sub" / "CT" / "CT_1.dcm").write_bytes(b"one")
    (tmp_path / "sub" / "RTSTRUCT.dcm").write_bytes(b"two")
    return tmp_path / "sub"


def test_read_every_time_outside_the_context(counted: list[tuple[Any, bool]], folder: Path) -> None:
    first, second = read_submission(folder), read_submission(folder)
    assert first is not second and len(counted) == 2


def test_read_once_within_the_context(counted: list[tuple[Any, bool]], folder: Path) -> None:
    with reading_once():
        first = read_submission(str(folder))
        with reading_once():  # nested: the outer context's reads
            assert read_submission(folder / "CT" / "..") is first
        beams = read_submission(folder, sum_beams=True)  # another reading of the same files
        assert beams is not first
        files = [folder / "RTSTRUCT.dcm"]
        assert read_submission(files) is read_submission(iter(files))
    assert len(counted) == 3
    assert read_submission(folder) is not first and len(counted) == 4  # dropped when the context ended


@pytest.mark.parametrize("change", ["rewrite", "add", "remove", "replace", "touch"])
def test_a_changed_file_is_read_again(counted: list[tuple[Any, bool]], folder: Path, change: str) -> None:
    path = folder / "CT" / "CT_1.dcm"
    with reading_once():
        first = read_submission(folder)
        if change == "rewrite":
            path.write_bytes(b"ONE!")
        elif change == "add":
            (folder / "CT" / "CT_2.dcm").write_bytes(b"three")
        elif change == "remove":
            path.unlink()
        elif change == "replace":  # same size and time, another file (inode)
            stat = path.stat()
            keep = folder / "keep"
            keep.write_bytes(b"one")
            os.replace(keep, path)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        else:
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        again = read_submission(folder)
        assert again is not first and len(counted) == 2
        assert read_submission(folder) is again and len(counted) == 2


def test_a_failed_read_is_not_kept(counted: list[tuple[Any, bool]], folder: Path) -> None:
    (folder / "broken").write_bytes(b"")
    with reading_once():
        for _ in range(2):
            with pytest.raises(NotDicomError):
                read_submission(folder)
    assert len(counted) == 2


def test_fingerprint_names_every_file(folder: Path) -> None:
    rows = file_fingerprint(folder)
    assert [Path(r[0]).name for r in rows] == ["CT_1.dcm", "RTSTRUCT.dcm"]
    assert [r[1] for r in rows] == [3, 3]
    assert file_fingerprint([folder / "RTSTRUCT.dcm"]) == rows[1:]
