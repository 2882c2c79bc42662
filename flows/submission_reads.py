"""Reading a stored submission once per run of its steps instead of once per step.

Validation reads and checks the submission's files (:func:`qa_checks.dicom_io.load_submission`), then scoring
reads them again: the tasks pass ids and paths, not the loaded objects (a Prefect task run may be on another
worker). Within :func:`reading_once` (the credentialing flow's body, the submission runner's and the batch's steps
for one submission) :func:`read_submission` keeps what it read and gives it back when asked for the same files
again, as long as every file is unchanged: same set of files, and each with the same size, modification time and
inode. Outside that context it reads every time, so nothing is held after the steps end.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from qa_checks.dicom_io import LoadedSubmission, load_submission

__all__ = ["file_fingerprint", "read_submission", "reading_once"]

Fingerprint = tuple[tuple[str, int, int, int], ...]

_memo: ContextVar[dict[tuple[object, ...], tuple[Fingerprint, LoadedSubmission]] | None] = ContextVar(
    "rtqa_submission_reads", default=None
)


def file_fingerprint(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Fingerprint:
    """Every file under the folder ``source`` (or in the list ``source``): path, size, modification time (ns) and
    inode, sorted by path. Two equal fingerprints mean no file was added, removed, rewritten or replaced."""
    if isinstance(source, str | os.PathLike):
        root = Path(source)
        paths = [Path(d, name) for d, _, names in os.walk(root) for name in names] if root.is_dir() else [root]
    else:
        paths = [Path(p) for p in source]
    rows = []
    for path in paths:
        st = path.stat()
        rows.append((str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(rows))


def _key(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], sum_beams: bool) -> tuple[object, ...]:
    if isinstance(source, str | os.PathLike):
        return (str(Path(source).resolve()), sum_beams)
    return (tuple(str(Path(p).resolve()) for p in source), sum_beams)


def read_submission(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, sum_beams: bool = False
) -> LoadedSubmission:
    """:func:`qa_checks.dicom_io.load_submission` of ``source`` (a folder or a list of files), read once within
    :func:`reading_once` while its files are unchanged (see the module docstring). A read that raises is not kept.

    Raises:
        the errors of :func:`qa_checks.dicom_io.load_submission`.
    """
    memo = _memo.get()
    if memo is None:
        return load_submission(source, sum_beams=sum_beams)
    if not isinstance(source, str | os.PathLike):
        source = list(source)
    key = _key(source, sum_beams)
    fingerprint = file_fingerprint(source)
    kept = memo.get(key)
    if kept is not None and kept[0] == fingerprint:
        return kept[1]
    loaded = load_submission(source, sum_beams=sum_beams)
    memo[key] = (fingerprint, loaded)
    return loaded


@contextmanager
def reading_once() -> Iterator[None]:
    """Within this context :func:`read_submission` reads each submission once (nested contexts share the outer
    one's reads); what was read is dropped when the outermost context ends."""
    if _memo.get() is not None:
        yield
        return
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)
