"""Names inside uploads and zip archives under Hypothesis: whatever the name, it is refused or it lands inside the
upload folder, once, under a path that reads the same when checked again."""

from __future__ import annotations

import io
import stat
import tempfile
import unicodedata
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.intake import UnsafeUploadError, UploadLimits, UploadTooLargeError, declared_directory, extract_archive
from flows.upload_names import MAX_NAME_BYTES, MAX_NAME_PART_BYTES, UploadNames, safe_relative_path, shown_name

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# Names built from pieces that matter (separators, dots, drive letters, controls) as well as from any text.
PIECES = st.sampled_from(
    ["/", "\\", ".", "..", "C:", "a", "b.dcm", "CT", "\x00", "\x1f", "\u202e", "é", "L" * 300, " "]
)
NAMES = st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=8).map("".join))

LIMITS = UploadLimits(
    max_upload_bytes=1 << 20, max_archive_files=20, max_uncompressed_bytes=1 << 20, max_compression_ratio=100.0
)


def _is_control(character: str) -> bool:
    return unicodedata.category(character) in ("Cc", "Cf", "Cs")


class TestSafeRelativePath:
    @PROPERTY
    @given(NAMES)
    def test_refused_or_inside_the_folder(self, name: str) -> None:
        try:
            path = safe_relative_path(name)
        except UnsafeUploadError as err:
            assert str(err).startswith(shown_name(name))
            return
        assert not path.is_absolute() and path.parts and not any(p in ("..", ".", "") for p in path.parts)
        assert not any(_is_control(c) for c in str(path))
        assert all(len(p.encode()) <= MAX_NAME_PART_BYTES for p in path.parts)
        assert len(str(path).encode()) <= MAX_NAME_BYTES
        base = Path("/upload/folder")
        assert (base / path).resolve().is_relative_to(base)
        assert safe_relative_path(str(path)) == path  # checking again changes nothing
        assert path == PurePosixPath(*[p for p in name.replace("\\", "/").split("/") if p not in ("", ".")])

    @pytest.mark.parametrize(
        ("name", "match"),
        [
            ("a\x00.dcm", "U\\+0000, a control or format character"),
            ("CT/\u202emcd.exe", "U\\+202E"),
            ("x/" + "L" * 256, "256 bytes, longer than 255"),
            ("/".join(["d" * 200] * 6), "longer than 1024 bytes"),
        ],
    )
    def test_the_rule_is_named(self, name: str, match: str) -> None:
        with pytest.raises(UnsafeUploadError, match=match):
            safe_relative_path(name)


class TestUploadNames:
    @PROPERTY
    @given(st.lists(st.tuples(NAMES, st.booleans()), max_size=12))
    def test_accepted_paths_are_unique_and_never_both_file_and_folder(self, entries: list[tuple[str, bool]]) -> None:
        names = UploadNames("two entries")
        files: set[PurePosixPath] = set()
        folders: set[PurePosixPath] = set()
        for name, folder in entries:
            try:
                path = names.add(name, folder=folder)
            except UnsafeUploadError:
                continue
            (folders if folder else files).add(path)
            folders |= set(path.parents) - {PurePosixPath(".")}
        assert not files & folders

    def test_the_clash_is_named(self) -> None:
        names = UploadNames("two uploaded files have this name")
        names.add("CT")
        with pytest.raises(UnsafeUploadError, match="'CT' is a file in the upload and cannot also be a folder"):
            names.add("CT\\a.dcm")
        with pytest.raises(UnsafeUploadError, match=r"'\./CT': two uploaded files have this name"):
            names.add("./CT")


MODES = st.sampled_from([0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFCHR])
ENTRIES = st.lists(st.tuples(NAMES, st.binary(max_size=200), MODES), max_size=8)


def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data, mode in entries:
                info = zipfile.ZipInfo("x")
                info.filename = name
                info.external_attr = (mode | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
    return buffer.getvalue()


class TestArchives:
    @PROPERTY
    @given(ENTRIES)
    def test_refused_or_extracted_inside_with_the_bytes_of_each_entry(
        self, entries: list[tuple[str, bytes, int]]
    ) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "upload.zip"
            archive.write_bytes(_zip(entries))
            destination = Path(tmp) / "files"
            try:
                count = extract_archive(archive, destination, LIMITS)
            except (UnsafeUploadError, UploadTooLargeError):
                assert not destination.exists() or all(
                    p.is_dir() or p.stat().st_size >= 0 for p in destination.rglob("*")
                )
                return
            written = sorted(p for p in destination.rglob("*") if p.is_file()) if destination.exists() else []
            assert len(written) == count
            expected = {
                destination / safe_relative_path(name): data
                for name, data, mode in entries
                if stat.S_IFMT(mode) in (0, stat.S_IFREG) and not name.replace("\\", "/").endswith("/")
            }
            assert {p: p.read_bytes() for p in written} == expected
            assert all(not p.is_symlink() and p.resolve().is_relative_to(destination.resolve()) for p in written)

    def test_the_directory_is_judged_before_it_is_parsed(self, tmp_path: Path) -> None:
        archive = tmp_path / "many.zip"
        archive.write_bytes(_zip([(f"f{i}", b"", 0) for i in range(LIMITS.max_archive_files + 1)]))
        assert declared_directory(archive) == (21, sum(46 + len(f"f{i}") for i in range(21)))
        with pytest.raises(UploadTooLargeError, match="holds 21 entries, more than the limit of 20"):
            extract_archive(archive, tmp_path / "files", LIMITS)
        assert not (tmp_path / "files").exists()

    def test_a_nul_in_an_entry_name_is_seen(self, tmp_path: Path) -> None:
        archive = tmp_path / "nul.zip"
        archive.write_bytes(_zip([("RS.dcm\x00.txt", b"x", 0)]))
        with pytest.raises(UnsafeUploadError, match=r"'RS\.dcm\\x00\.txt': the name holds U\+0000"):
            extract_archive(archive, tmp_path / "files", LIMITS)
