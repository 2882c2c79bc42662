"""Uploads into submission folders: streamed to disk, zip archives checked before extraction, stray files removed.

Nothing here touches the database. :func:`upload_folder` gives a temporary folder under the data directory that is
removed whatever happens; the caller hands the unpacked folder to :func:`flows.credentialing.store_submission`.
Every name in a message is relative to the upload (the zip entry or the uploaded file name), never a server path.
"""

from __future__ import annotations

import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import pydicom

__all__ = [
    "CHUNK_BYTES",
    "IGNORED_DIRECTORIES",
    "UnsafeUploadError",
    "UploadLimits",
    "UploadTooLargeError",
    "check_archive",
    "extract_archive",
    "is_dicom_file",
    "remove_stray_files",
    "safe_relative_path",
    "stream_to_file",
    "upload_folder",
]

CHUNK_BYTES = 1 << 20
"""Bytes read and written at a time while streaming an upload or extracting an entry."""

IGNORED_DIRECTORIES = frozenset({"__MACOSX"})
"""Folders that archivers add beside the real files (macOS resource forks); removed with everything in them."""

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeUploadError(ValueError):
    """An upload cannot be unpacked safely or holds nothing usable (the message names the entry); nothing is kept."""


class UploadTooLargeError(ValueError):
    """An upload exceeds a size, count or compression-ratio limit (the message names the entry and the limit)."""


@dataclass(frozen=True)
class UploadLimits:
    """Limits on one upload (see :class:`models.settings.Settings`)."""

    max_upload_bytes: int
    """Largest upload, in bytes: the zip file, or all uploaded files together."""
    max_archive_files: int
    """Most entries (files and folders) in a zip."""
    max_uncompressed_bytes: int
    """Largest total uncompressed size of a zip's entries, in bytes."""
    max_compression_ratio: float
    """Largest uncompressed / compressed size of one entry, and of the archive as a whole."""


@contextmanager
def upload_folder(uploads_dir: Path) -> Iterator[Path]:
    """A new empty folder under ``uploads_dir`` (created if needed), removed with its contents on exit."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    folder = uploads_dir / f".upload-{uuid.uuid4().hex}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def safe_relative_path(name: str) -> PurePosixPath:
    """An uploaded name as a relative path that stays inside the upload folder.

    Backslashes count as separators (Windows archivers); empty and ``.`` parts are dropped.

    Raises:
        UnsafeUploadError: the name is absolute (``/x``, ``\\x``, ``C:x``), climbs out with ``..``, or is empty.
    """
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise UnsafeUploadError(f"{name!r}: absolute paths are not allowed in an upload; use names relative to it")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeUploadError(f"{name!r}: '..' in a name would leave the upload folder; rename the entry")
    if not parts:
        raise UnsafeUploadError(f"{name!r}: an empty file name; give every file a name")
    return PurePosixPath(*parts)


def stream_to_file(source: IO[bytes], target: Path, *, name: str, budget_bytes: int, limit_bytes: int) -> int:
    """Copy ``source`` to ``target`` in chunks of :data:`CHUNK_BYTES`; returns the bytes written.

    Raises:
        UploadTooLargeError: more than ``budget_bytes`` would be written (``limit_bytes`` is the configured limit,
            named in the message).
    """
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
            written += len(chunk)
            if written > budget_bytes:
                raise UploadTooLargeError(
                    f"{name}: the upload is larger than the limit of {limit_bytes} bytes (RTQA_MAX_UPLOAD_BYTES); "
                    "send the submission in parts or ask the QA team"
                )
            out.write(chunk)
    return written


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def check_archive(archive: zipfile.ZipFile, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    """Check a zip's directory before anything is extracted; returns the file entries to extract.

    Refused: absolute names, names with ``..``, symbolic links, encrypted entries, two entries with one name, more
    than ``max_archive_files`` entries, a total uncompressed size over ``max_uncompressed_bytes``, and any entry (or
    the archive) expanding by more than ``max_compression_ratio``.

    Raises:
        UnsafeUploadError, UploadTooLargeError: naming the entry and the rule.
    """
    entries = archive.infolist()
    if len(entries) > limits.max_archive_files:
        raise UploadTooLargeError(
            f"the archive holds {len(entries)} entries, more than the limit of {limits.max_archive_files} "
            "(RTQA_MAX_ARCHIVE_FILES); send the submission in parts"
        )
    files: list[zipfile.ZipInfo] = []
    seen: set[PurePosixPath] = set()
    total = compressed = 0
    for info in entries:
        relative = safe_relative_path(info.filename)
        if _is_symlink(info):
            raise UnsafeUploadError(f"{info.filename!r}: symbolic links are not allowed in an upload; zip the file")
        if info.flag_bits & 0x1:
            raise UnsafeUploadError(f"{info.filename!r}: encrypted entries cannot be read; zip without a password")
        if info.is_dir():
            continue
        if relative in seen:
            raise UnsafeUploadError(f"{info.filename!r}: the archive holds two entries with this name")
        seen.add(relative)
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise UploadTooLargeError(
                f"{info.filename!r}: expands {ratio:.0f}-fold ({info.compress_size} -> {info.file_size} bytes), more "
                f"than the limit of {limits.max_compression_ratio:g} (RTQA_MAX_COMPRESSION_RATIO)"
            )
        total += info.file_size
        compressed += info.compress_size
        files.append(info)
    if total > limits.max_uncompressed_bytes:
        raise UploadTooLargeError(
            f"the archive expands to {total} bytes, more than the limit of {limits.max_uncompressed_bytes} "
            "(RTQA_MAX_UNCOMPRESSED_BYTES); send the submission in parts"
        )
    if total / max(compressed, 1) > limits.max_compression_ratio:
        raise UploadTooLargeError(
            f"the archive expands {total / max(compressed, 1):.0f}-fold, more than the limit of "
            f"{limits.max_compression_ratio:g} (RTQA_MAX_COMPRESSION_RATIO)"
        )
    return files


def extract_archive(zip_path: Path, destination: Path, limits: UploadLimits) -> int:
    """Check (:func:`check_archive`) and extract a zip into ``destination``; returns the files extracted.

    Entries are copied in chunks; an entry that yields more bytes than its header declares is refused.

    Raises:
        UnsafeUploadError: not a zip, or an entry refused by :func:`check_archive` or unreadable.
        UploadTooLargeError: a limit is exceeded.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise UnsafeUploadError("the archive is not a readable zip file; send a .zip or the files themselves") from None
    with archive:
        files = check_archive(archive, limits)
        for info in files:
            target = destination / safe_relative_path(info.filename)
            try:
                with archive.open(info) as source:
                    stream_to_file(
                        source,
                        target,
                        name=info.filename,
                        budget_bytes=info.file_size,
                        limit_bytes=limits.max_uncompressed_bytes,
                    )
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise UnsafeUploadError(f"{info.filename!r}: cannot be extracted ({err}); re-create the zip") from None
    return len(files)


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file by the rule :func:`qa_checks.dicom_io.load_submission` applies.

    The ``DICM`` prefix after the 128-byte preamble, or (for files without one) a dataset carrying (0008,0016)
    *SOPClassUID* and (0008,0060) *Modality*.
    """
    with path.open("rb") as fh:
        head = fh.read(132)
    if len(head) == 132 and head[128:] == b"DICM":
        return True
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # pydicom raises many error types on arbitrary bytes
        return False
    return "SOPClassUID" in ds and "Modality" in ds


def remove_stray_files(folder: Path) -> list[str]:
    """Delete what is not part of a DICOM submission from ``folder``; returns a warning per file removed.

    Removed: hidden files and folders (``.DS_Store``, ``._x``), :data:`IGNORED_DIRECTORIES`, a DICOMDIR (the media
    index, not data), and any other file that is not DICOM (``notes.txt``). Warnings name files relative to
    ``folder``, in path order.
    """
    warnings: list[str] = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        if not path.exists() or path.is_dir():
            continue
        relative = path.relative_to(folder)
        name = relative.as_posix()
        if any(part in IGNORED_DIRECTORIES or part.startswith(".") for part in relative.parts):
            why = "a hidden or archiver file"
        elif relative.name.upper() == "DICOMDIR":
            why = "a DICOMDIR (media index; the files themselves are read)"
        elif not is_dicom_file(path):
            why = "not a DICOM file"
        else:
            continue
        path.unlink()
        warnings.append(f"{name}: {why}; ignored")
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return warnings
