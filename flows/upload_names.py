"""Names inside an upload (zip entries, uploaded file names) turned into safe relative paths, and the set of names
one upload may hold.

A name is refused (:class:`UnsafeUploadError`, naming the entry as sent, escaped) when it:

- is absolute: ``/x``, ``\\x``, ``C:x``, ``C:\\x``, ``\\\\server\\share``;
- climbs out of the upload with a ``..`` part (backslashes count as separators, as Windows archivers write them);
- holds a control or format character (Unicode categories Cc, Cf, Cs: NUL, line breaks, escape sequences,
  direction overrides), which could cut the name short on disk or make a message show another name;
- has a part longer than :data:`MAX_NAME_PART_BYTES` or is longer than :data:`MAX_NAME_BYTES` (UTF-8 bytes), which
  the file system would refuse half-way through an upload;
- is empty once ``.`` and empty parts are dropped.

Within one upload (:class:`UploadNames`) two entries may not end up with the same path (``a.dcm``, ``./a.dcm`` and
``.\\a.dcm`` are one name), and no path may be both a file and a folder (``CT`` and ``CT/ct1.dcm``).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_NAME_PART_BYTES",
    "UnsafeUploadError",
    "UploadNames",
    "safe_relative_path",
    "shown_name",
]

MAX_NAME_PART_BYTES = 255
"""Longest part of a name (a file or folder name), in UTF-8 bytes: the limit of common Linux file systems."""

MAX_NAME_BYTES = 1024
"""Longest whole name, in UTF-8 bytes; real exports use well under 200."""

_SHOWN_CHARACTERS = 120
"""Names longer than this are shortened in messages (the start is kept, then ``…``)."""

_DRIVE = re.compile(r"^[A-Za-z]:")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


class UnsafeUploadError(ValueError):
    """An upload cannot be unpacked safely or holds nothing usable (the message names the entry); nothing is kept."""


def shown_name(name: str) -> str:
    """``name`` as quoted in messages: ``repr`` (control characters escaped), shortened when very long."""
    if len(name) > _SHOWN_CHARACTERS:
        return repr(name[:_SHOWN_CHARACTERS]) + f"… ({len(name)} characters)"
    return repr(name)


def safe_relative_path(name: str) -> PurePosixPath:
    """An uploaded name as a relative path that stays inside the upload folder (see the module docstring).

    Raises:
        UnsafeUploadError: naming the entry and the rule it breaks.
    """
    for character in name:
        if unicodedata.category(character) in _REFUSED_CATEGORIES:
            raise UnsafeUploadError(
                f"{shown_name(name)}: the name holds U+{ord(character):04X}, a control or format character; "
                "rename the file with printable characters only"
            )
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise UnsafeUploadError(
            f"{shown_name(name)}: absolute paths are not allowed in an upload; use names relative to it"
        )
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeUploadError(f"{shown_name(name)}: '..' in a name would leave the upload folder; rename the entry")
    if not parts:
        raise UnsafeUploadError(f"{shown_name(name)}: an empty file name; give every file a name")
    longest = max(parts, key=lambda p: len(p.encode("utf-8")))
    if len(longest.encode("utf-8")) > MAX_NAME_PART_BYTES:
        raise UnsafeUploadError(
            f"{shown_name(name)}: a file or folder name of {len(longest.encode('utf-8'))} bytes, longer than "
            f"{MAX_NAME_PART_BYTES}; shorten it"
        )
    if len("/".join(parts).encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafeUploadError(
            f"{shown_name(name)}: the name is longer than {MAX_NAME_BYTES} bytes; use fewer or shorter folders"
        )
    return PurePosixPath(*parts)


class UploadNames:
    """The paths of one upload so far: refuses a second entry with the same path, and a path that is both a file
    and a folder.

    Args:
        what: how a duplicate is described, e.g. ``"the archive holds two entries with this name"``.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._files: set[PurePosixPath] = set()
        self._folders: set[PurePosixPath] = set()

    def add(self, name: str, *, folder: bool = False) -> PurePosixPath:
        """Check ``name`` (:func:`safe_relative_path`) and record it as a file (or a folder); returns its path.

        Raises:
            UnsafeUploadError: the name is unsafe, already taken, or a file where a folder is (or the reverse).
        """
        relative = safe_relative_path(name)
        parents = set(relative.parents) - {PurePosixPath(".")}
        if folder:
            if relative in self._files:
                raise UnsafeUploadError(f"{shown_name(name)}: a folder with the name of a file in the upload")
            self._folders.add(relative)
        else:
            if relative in self._files:
                raise UnsafeUploadError(f"{shown_name(name)}: {self._what}")
            if relative in self._folders:
                raise UnsafeUploadError(f"{shown_name(name)}: a file with the name of a folder in the upload")
            self._files.add(relative)
        clash = sorted(parents & self._files)
        if clash:
            raise UnsafeUploadError(
                f"{shown_name(name)}: {str(clash[0])!r} is a file in the upload and cannot also be a folder"
            )
        self._folders |= parents
        return relative
