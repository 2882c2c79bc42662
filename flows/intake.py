"""Uploads into submission folders: streamed to disk, zip archives checked before extraction, stray files removed.

Nothing here touches the database. :func:`upload_folder` gives a temporary folder under the data directory that is
removed whatever happens; the caller hands the unpacked folder to :func:`flows.credentialing.store_submission`.
Every name in a message is relative to the upload (the zip entry or the uploaded file name), never a server path;
names are checked by :mod:`flows.upload_names`.

A zip is judged before anything in it is extracted, in two steps:

1. its end records (the end of central directory, and the Zip64 one when present) are read directly: more entries
   than ``max_archive_files``, or a central directory larger than that many entries can need
   (:data:`MAX_DIRECTORY_BYTES_PER_ENTRY` each), is refused before the directory is parsed, so a directory of
   millions of entries never reaches memory;
2. the parsed directory (:func:`check_archive`): names, entry types, encryption, compression methods, the count,
   the declared sizes against ``max_uncompressed_bytes`` and the compression ratio of each entry and of the whole.

Extraction then copies each entry in chunks and stops at its declared size; an entry that yields other bytes than
its header declares fails its CRC check and is refused.
"""

from __future__ import annotations

import lzma
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pydicom

from flows.scratch import remove_abandoned, scratch_name
from flows.upload_names import UnsafeUploadError, UploadNames, safe_relative_path, shown_name

__all__ = [
    "CHUNK_BYTES",
    "IGNORED_DIRECTORIES",
    "MAX_DIRECTORY_BYTES_PER_ENTRY",
    "SUPPORTED_COMPRESSION",
    "UnsafeUploadError",
    "UploadLimits",
    "UploadNames",
    "UploadTooLargeError",
    "check_archive",
    "declared_directory",
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

MAX_DIRECTORY_BYTES_PER_ENTRY = 1024
"""Largest central directory allowed per permitted entry, in bytes (a record is 46 bytes plus its name, extra
field and comment; DICOM exports need about 150)."""

SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
"""Zip compression methods that can be extracted (stored, deflate, bzip2, LZMA)."""

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_EXTRACTION_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)
"""What reading a damaged or unusual entry raises (zipfile, zlib, bz2 and lzma errors)."""


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
    """A new empty folder under ``uploads_dir`` (created if needed), removed with its contents on exit; folders that
    killed processes left behind are removed first (:func:`flows.scratch.remove_abandoned`)."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned(uploads_dir, ".upload-")
    folder = uploads_dir / scratch_name(".upload-")
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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


def declared_directory(zip_path: Path) -> tuple[int, int] | None:
    """The entry count and central directory size (bytes) a zip's end records declare, without parsing the
    directory; the larger of the classic and the Zip64 values. None when no end record is found (not a zip)."""
    size = zip_path.stat().st_size
    with zip_path.open("rb") as fh:
        start = max(0, size - _EOCD.size - 0xFFFF)
        fh.seek(start)
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            return None
        entries, directory_bytes = _EOCD.unpack_from(tail, at)[4:6]
        locator = at - _EOCD64_LOCATOR.size
        if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            offset = _EOCD64_LOCATOR.unpack_from(tail, locator)[2]
            if 0 <= offset <= size - _EOCD64.size:
                fh.seek(offset)
                record = fh.read(_EOCD64.size)
                if record[:4] == b"PK\x06\x06":
                    fields = _EOCD64.unpack(record)
                    entries, directory_bytes = max(entries, fields[7]), max(directory_bytes, fields[8])
    return entries, directory_bytes


def _check_declared_directory(zip_path: Path, limits: UploadLimits) -> None:
    declared = declared_directory(zip_path)
    if declared is None:
        raise UnsafeUploadError("the archive is not a readable zip file; send a .zip or the files themselves")
    entries, directory_bytes = declared
    if entries > limits.max_archive_files:
        raise _too_many_entries(entries, limits)
    if directory_bytes > limits.max_archive_files * MAX_DIRECTORY_BYTES_PER_ENTRY:
        raise UploadTooLargeError(
            f"the archive's directory is {directory_bytes} bytes, more than {limits.max_archive_files} entries "
            "(RTQA_MAX_ARCHIVE_FILES) can need; send the submission in parts"
        )


def _too_many_entries(count: int, limits: UploadLimits) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"the archive holds {count} entries, more than the limit of {limits.max_archive_files} "
        "(RTQA_MAX_ARCHIVE_FILES); send the submission in parts"
    )


def _file_type(info: zipfile.ZipInfo) -> int:
    """The Unix file type bits an entry declares (0 when none)."""
    return stat.S_IFMT(info.external_attr >> 16)


def _is_folder(info: zipfile.ZipInfo) -> bool:
    """A folder entry: its name ends with a separator (``/``, or ``\\`` from Windows archivers), or its type says
    so."""
    return info.orig_filename.endswith(("/", "\\")) or _file_type(info) == stat.S_IFDIR


def check_archive(archive: zipfile.ZipFile, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    """Check a zip's directory before anything is extracted; returns the file entries to extract.

    Refused: unsafe names (:func:`flows.upload_names.safe_relative_path`, also a NUL that Python's zipfile would
    silently cut the name at), two entries with one name or a name both a file and a folder, symbolic links and
    other entries that are not regular files or folders, encrypted entries, compression methods outside
    :data:`SUPPORTED_COMPRESSION`, more than ``max_archive_files`` entries, a total uncompressed size over
    ``max_uncompressed_bytes``, and any entry (or the archive) expanding by more than ``max_compression_ratio``.

    Raises:
        UnsafeUploadError, UploadTooLargeError: naming the entry and the rule.
    """
    entries = archive.infolist()
    if len(entries) > limits.max_archive_files:
        raise _too_many_entries(len(entries), limits)
    files: list[zipfile.ZipInfo] = []
    names = UploadNames("the archive holds two entries with this name")
    total = compressed = 0
    for info in entries:
        name = info.orig_filename  # zipfile cuts ``filename`` at a NUL; the original shows it
        safe_relative_path(name)
        kind = _file_type(info)
        if kind == stat.S_IFLNK:
            raise UnsafeUploadError(f"{shown_name(name)}: symbolic links are not allowed in an upload; zip the file")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeUploadError(f"{shown_name(name)}: not a regular file (a device, pipe or socket entry)")
        if _is_folder(info):
            names.add(name, folder=True)
            continue
        names.add(name)
        if info.flag_bits & 0x1:
            raise UnsafeUploadError(f"{shown_name(name)}: encrypted entries cannot be read; zip without a password")
        if info.compress_type not in SUPPORTED_COMPRESSION:
            raise UnsafeUploadError(
                f"{shown_name(name)}: compression method {info.compress_type} cannot be extracted; zip with Deflate"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise UploadTooLargeError(
                f"{shown_name(name)}: expands {ratio:.0f}-fold ({info.compress_size} -> {info.file_size} bytes), "
                f"more than the limit of {limits.max_compression_ratio:g} (RTQA_MAX_COMPRESSION_RATIO)"
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
    """Check a zip (its end records, then :func:`check_archive`) and extract it into ``destination``; returns the
    files extracted.

    Entries are copied in chunks up to their declared size; an entry whose bytes do not match its header (CRC)
    is refused.

    Raises:
        UnsafeUploadError: not a zip, or an entry refused by :func:`check_archive` or unreadable.
        UploadTooLargeError: a limit is exceeded.
    """
    _check_declared_directory(zip_path, limits)
    try:
        archive = zipfile.ZipFile(zip_path)
    except Exception:  # arbitrary bytes raise BadZipFile, ValueError, UnicodeDecodeError, struct.error, ...
        raise UnsafeUploadError("the archive is not a readable zip file; send a .zip or the files themselves") from None
    with archive:
        files = check_archive(archive, limits)
        for info in files:
            target = destination / safe_relative_path(info.orig_filename)
            try:
                with archive.open(info) as source:
                    stream_to_file(
                        source,
                        target,
                        name=info.orig_filename,
                        budget_bytes=info.file_size,
                        limit_bytes=limits.max_uncompressed_bytes,
                    )
            except UploadTooLargeError:
                raise
            except _EXTRACTION_ERRORS as err:
                detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
                raise UnsafeUploadError(
                    f"{shown_name(info.orig_filename)}: cannot be extracted ({detail}); re-create the zip"
                ) from None
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
