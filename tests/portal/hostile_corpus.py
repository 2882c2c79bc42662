"""A corpus of hostile uploads, generated from a seed: each case is one multipart request with what it may end in.

Classes (:data:`CLASSES`, how many of each in a full run): truncated and byte-flipped DICOM, wrong modality, files
that are not DICOM, zip bombs, damaged zips, unsafe names (traversal, absolute, symlinks, duplicates, backslashes,
control characters, over-long names, file/folder clashes), bodies over the size limit, a frame of reference from
another case, and headers carrying a real-looking patient identity.

An ending is ``"refused 4xx"`` (the HTTP answer), ``"rejected"`` or ``"decided"`` (after the runner). Each case lists
the endings it may have; ``decided`` is allowed only when an independent reading (pydicom alone, or Python's
zipfile) finds the mutated upload still whole, and required where the mutation cannot matter (a DICOM preamble is
free by PS3.10).
"""

from __future__ import annotations

import io
import random
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from portal.upload_limit import FORM_OVERHEAD_BYTES

CASE = "lung-sabr-outlining-mini"
OTHER_CASE = "srs-brain-outlining"

Part = tuple[str, str, bytes]
"""A multipart file part: field name (``files`` or ``archive``), file name as sent, content."""


@dataclass(frozen=True)
class Sources:
    """Real files the corpus mutates: the case's simulated submission and another case's."""

    rtstruct: bytes
    """A centre's RTSTRUCT for :data:`CASE` (decided when sent as it is)."""
    ct: tuple[tuple[str, bytes], ...]
    """The case's CT slices, by relative name."""
    identity: tuple[str, str]
    """The case's (PatientName, PatientID)."""
    other_rtstruct: bytes
    """A centre's RTSTRUCT for :data:`OTHER_CASE` (another frame of reference)."""
    other_ct: tuple[tuple[str, bytes], ...]
    other_frame_uid: str


@dataclass(frozen=True)
class HostileCase:
    """One request and what it may end in."""

    kind: str
    label: str
    parts: tuple[Part, ...]
    allowed: frozenset[str]
    """Endings allowed: ``refused`` (any 4xx), ``refused 413`` (that status only), ``rejected``, ``decided``."""
    names: tuple[str, ...] = ()
    """Text a 4xx answer must contain (e.g. the entry name); any one of them suffices."""
    reason: tuple[str, ...] = ()
    """Text a rejection reason must contain (all of them)."""
    reason_any: tuple[str, ...] = ()
    """Text a rejection reason must contain (one of them)."""
    absent: tuple[str, ...] = ()
    """Text that must appear nowhere in the answer or the reason (e.g. a patient's name)."""
    chunked: bool = False
    """Send the body without Content-Length, in chunks."""
    tight: bool = False
    """Send to the app with the small upload limit."""
    zip_opens: int | None = None
    """Entries the server may open for extraction (0: refused before extracting)."""
    form: tuple[tuple[str, str], ...] = field(default=(("case", CASE),))


REFUSED = frozenset({"refused"})
REFUSED_OR_REJECTED = frozenset({"refused", "rejected"})


# ------------------------------------------------------------------------------------------------------------------
# building blocks


def tiny_dicom(identity: tuple[str, str], *, modality: str = "OT", seed: str = "tiny") -> bytes:
    """A small valid DICOM file of ``modality`` with the case's identity (accepted, then rejected by the runner for
    holding no RTSTRUCT): the content for cases about names."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed])
    ds.Modality = modality
    ds.PatientName, ds.PatientID = identity
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def edit_dicom(data: bytes, change: Callable[[Dataset], None]) -> bytes:
    """``data`` read, changed and written again (the same transfer syntax)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    change(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def reads_whole(data: bytes) -> bool:
    """Whether pydicom alone reads every element of ``data`` (nested ones included) without an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
            for element in ds.iterall():
                _ = element.value
            return str(ds.get("Modality", "")).upper() == "RTSTRUCT"
    except Exception:
        return False


def meta_end(data: bytes) -> int:
    """Offset of the first byte after the file meta group."""
    (length,) = struct.unpack_from("<I", data, 128 + 4 + 8)
    return 128 + 4 + 12 + int(length)


def top_level_offsets(data: bytes) -> list[int]:
    """Offsets of the top-level element headers after the meta group (explicit VR little endian)."""
    offsets = []
    at = meta_end(data)
    while at + 8 <= len(data):
        offsets.append(at)
        vr = data[at + 4 : at + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            (length,) = struct.unpack_from("<I", data, at + 8)
            at += 12 + (0 if length == 0xFFFFFFFF else length)
            if length == 0xFFFFFFFF:
                break
        else:
            (length,) = struct.unpack_from("<H", data, at + 6)
            at += 8 + length
    return offsets


def make_zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``entries`` (names written as given, duplicates and NULs included)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w", method) as zf:
            for info, data in entries:
                if isinstance(info, str):
                    name = info
                    info = zipfile.ZipInfo("x")
                    info.filename = name  # ZipInfo() would cut a NUL
                    info.compress_type = method
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, data)
    return buffer.getvalue()


def special_entry(name: str, mode: int, data: bytes = b"target") -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (mode | 0o777) << 16
    return info, data


def compressible(rng: random.Random, size: int, every: int) -> bytes:
    """``size`` bytes that deflate by roughly ``every``-fold or less: one random byte in ``every``."""
    block = bytearray(size)
    for i in range(0, size, every):
        block[i] = rng.randrange(256)
    return bytes(block)


def patch_central_sizes(data: bytes, file_size: int) -> bytes:
    """Every central directory record of ``data`` declaring ``file_size`` as its uncompressed size."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        struct.pack_into("<I", out, at + 24, file_size)
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def overlapping_zip(data: bytes, copies: int) -> bytes:
    """A zip whose ``copies`` directory records all point at one entry's data (an overlap bomb)."""
    single = make_zip([("k0", data)])
    cd = single.index(b"PK\x01\x02")
    eocd = single.rindex(b"PK\x05\x06")
    record = single[cd:eocd]
    names = (_ALNUM[i // len(_ALNUM)] + _ALNUM[i % len(_ALNUM)] for i in range(copies))
    records = b"".join(record.replace(b"k0", name.encode(), 1) for name in names)
    end = bytearray(single[eocd:])
    struct.pack_into("<HHI", end, 8, copies, copies, len(records))
    return single[:cd] + records + bytes(end)


def set_declared_count(data: bytes, count: int) -> bytes:
    out = bytearray(data)
    eocd = out.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", out, eocd + 8, count, count)
    return bytes(out)


# ------------------------------------------------------------------------------------------------------------------
# the classes


def truncated_dicom(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    while True:
        data = src.rtstruct if rng.random() < 0.8 else rng.choice(src.ct)[1]
        cut = rng.randrange(0, len(data))
        mutated = data[:cut]
        parts: tuple[Part, ...] = (("files", "RS.dcm", mutated),)
        allowed = REFUSED_OR_REJECTED | ({"decided"} if reads_whole(mutated) else set())
        yield HostileCase("truncated DICOM", f"cut at {cut} of {len(data)}", parts, frozenset(allowed), ("RS.dcm",))


def flipped_dicom(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    data = src.rtstruct
    headers = top_level_offsets(data)
    end = meta_end(data)
    while True:
        region = rng.choices(["preamble", "meta", "element headers", "elements"], weights=[1, 2, 8, 9])[0]
        mutated = bytearray(data)
        flips = rng.randint(1, 4)
        for _ in range(flips):
            if region == "preamble":
                at = rng.randrange(0, 128)
            elif region == "meta":
                at = rng.randrange(128, end)
            elif region == "element headers":
                at = rng.choice(headers) + rng.randrange(0, 8)
            else:
                at = rng.randrange(end, len(data))
            mutated[at] ^= rng.randrange(1, 256)
        blob = bytes(mutated)
        if region == "preamble":
            allowed = frozenset({"decided"})
        else:
            allowed = REFUSED_OR_REJECTED | ({"decided"} if reads_whole(blob) else set())
        label = f"{flips} byte(s) flipped in the {region}"
        yield HostileCase(f"flipped bytes ({region})", label, (("files", "RS.dcm", blob),), allowed, ("RS.dcm",))


WRONG_MODALITIES = ("CT", "MR", "RTPLAN", "RTDOSE", "RTIMAGE", "OT", "SEG", "REG", "PT", "RTRECORD", "")


def wrong_modality(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    while True:
        if rng.random() < 0.05:
            parts = tuple(("files", name, data) for name, data in src.ct)
            yield HostileCase(
                "wrong modality", "the case's CT only", parts, frozenset({"rejected"}), reason=("RTSTRUCT",)
            )
            continue
        modality = rng.choice(
            (*WRONG_MODALITIES, "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=rng.randint(1, 16))))
        )

        def change(ds: Dataset, modality: str = modality) -> None:
            ds.Modality = modality

        blob = edit_dicom(src.rtstruct, change)
        yield HostileCase(
            "wrong modality",
            f"Modality {modality!r}",
            (("files", "RS.dcm", blob),),
            frozenset({"rejected"}),
            reason_any=("no RTSTRUCT file", "RS.dcm: ("),  # the missing object, or the file and the tag it lacks
        )


def not_dicom(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    kinds = ["random", "text", "json", "pdf", "png", "empty", "dicm-garbage", "zip-as-file", "archive-not-zip"]
    while True:
        kind = rng.choice(kinds)
        size = rng.randint(1, 4096)
        noise = rng.randbytes(size)
        data = {
            "random": noise,
            "text": ("plan notes " * size).encode()[:size],
            "json": b'{"PatientName": "x", "Modality": "RTSTRUCT"}',
            "pdf": b"%PDF-1.7\n" + noise,
            "png": b"\x89PNG\r\n\x1a\n" + noise,
            "empty": b"",
            "dicm-garbage": bytes(128) + b"DICM" + noise,
            "zip-as-file": make_zip([("inner.dcm", src.rtstruct)]) if kind == "zip-as-file" else b"",
            "archive-not-zip": noise,
        }[kind]
        name = "upload.zip" if kind == "archive-not-zip" else f"file{rng.randrange(1000)}.dcm"
        field_name = "archive" if kind == "archive-not-zip" else "files"
        allowed = REFUSED_OR_REJECTED if kind == "dicm-garbage" else REFUSED
        expect = ("not a readable zip",) if kind == "archive-not-zip" else (name,)
        yield HostileCase("not DICOM", kind, ((field_name, name, data),), allowed, expect)


def zip_bombs(
    rng: random.Random, src: Sources, *, max_files: int, max_bytes: int, ratio: float
) -> Iterator[HostileCase]:
    kinds = ["ratio", "total", "count", "directory", "declared-count", "overlap", "nested", "lying-size"]
    while True:
        kind = rng.choice(kinds)
        opens: int | None = 0
        allowed = frozenset({"refused 413"})
        expect: tuple[str, ...]
        if kind == "ratio":
            size = rng.randint(int(ratio) * 2048, 4 << 20)
            blob = make_zip([("CT/zeros.dcm", bytes(size))])
            expect = ("'CT/zeros.dcm': expands", "RTQA_MAX_COMPRESSION_RATIO")
        elif kind == "total":
            every = max(2, int(ratio) // 3)
            count = rng.randint(4, 12)
            size = max_bytes // count + 1
            blob = make_zip([(f"part{i}.dcm", compressible(rng, size, every)) for i in range(count)])
            expect = ("RTQA_MAX_UNCOMPRESSED_BYTES",)
        elif kind == "count":
            blob = make_zip([(f"f{i}.dcm", b"x") for i in range(max_files + rng.randint(1, 3 * max_files))])
            expect = ("RTQA_MAX_ARCHIVE_FILES",)
        elif kind == "directory":  # no more entries than allowed, but a directory far larger than they need
            long = "/".join(["d" * 250] * 3)
            blob = make_zip([(f"{long}/{i:0250d}", b"") for i in range(max_files)])
            expect = ("RTQA_MAX_ARCHIVE_FILES",)
        elif kind == "declared-count":
            entries = [(f"f{i}.dcm", b"x") for i in range(max_files + rng.randint(1, max_files))]
            blob = set_declared_count(make_zip(entries), rng.choice([0, 1, 5]))
            expect = ("RTQA_MAX_ARCHIVE_FILES",)
        elif kind == "overlap":
            every = max(2, int(ratio) // 3)
            data = compressible(rng, rng.randint(max_bytes // (max_files // 2), max_bytes // 8), every)
            blob = overlapping_zip(data, copies=max_bytes // len(data) + rng.randint(2, 10))
            expect = ("RTQA_MAX_UNCOMPRESSED_BYTES",)
        elif kind == "nested":
            inner = make_zip([("zeros.bin", bytes(1 << 20))] * 1)
            for _ in range(rng.randint(1, 3)):
                inner = make_zip([("nested.zip", inner)])
            blob = make_zip([("nested.zip", inner)])
            allowed, opens, expect = REFUSED, None, ("nested.zip",)
        else:  # an entry declaring fewer bytes than it holds: cut at its declared size, then its CRC fails
            size = rng.randint(10_000, 200_000)
            blob = patch_central_sizes(make_zip([("RS.dcm", rng.randbytes(size))]), rng.randint(1, size - 1))
            allowed, opens, expect = REFUSED, None, ("'RS.dcm'",)
        yield HostileCase("zip bomb", kind, (("archive", "bomb.zip", blob),), allowed, expect, zip_opens=opens)


def damaged_zips(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    original = make_zip([("RS.dcm", src.rtstruct)])
    while True:
        mutated = bytearray(original)
        if rng.random() < 0.3:
            mutated = mutated[: rng.randrange(0, len(mutated))]
            label = f"cut at {len(mutated)}"
        else:
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(0, len(mutated))] ^= rng.randrange(1, 256)
            label = "bytes flipped"
        blob = bytes(mutated)
        allowed = set(REFUSED_OR_REJECTED)
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                if zf.namelist() == ["RS.dcm"] and zf.read("RS.dcm") == src.rtstruct:
                    allowed.add("decided")
        except Exception:
            pass
        yield HostileCase("damaged zip", label, (("archive", "sub.zip", blob),), frozenset(allowed))


_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
_UNICODE = "éçüßøå中文ΩЖ"
CONTROL = [chr(c) for c in range(0x20) if chr(c) not in "\r\n"] + ["\x7f", "\x85", "\u200b", "\u202e", "\ufeff"]


def _part(rng: random.Random) -> str:
    """A file or folder name: not hidden (no leading ``.``), sometimes with non-ASCII letters."""
    while True:
        text = "".join(rng.choice(_SAFE + _UNICODE * (rng.random() < 0.2)) for _ in range(rng.randint(1, 16)))
        if not text.startswith("."):
            return text


def _path(rng: random.Random, sep: str = "/") -> str:
    return sep.join(_part(rng) for _ in range(rng.randint(1, 4)))


def unsafe_names(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    kinds = ["traversal", "absolute", "symlink", "special-file", "duplicate", "clash", "control", "long", "backslash"]
    n = 0
    while True:
        n += 1
        kind = rng.choice(kinds)
        in_zip = kind in ("symlink", "special-file") or rng.random() < 0.5
        content = tiny_dicom(src.identity, seed=f"name-{n}")
        allowed = REFUSED
        second: str | None = None
        entries: list[tuple[zipfile.ZipInfo | str, bytes]] | None = None
        if kind == "traversal":
            pieces = [_part(rng) for _ in range(rng.randint(0, 3))]
            for _ in range(rng.randint(1, 3)):
                pieces.insert(rng.randint(0, len(pieces)), "..")
            name = rng.choice("/\\").join([*pieces, _part(rng)])
        elif kind == "absolute":
            prefixes = ["/", "\\", "C:", "c:/", "//server/share/", "/etc/"]
            prefixes += ["C:\\", "\\\\server\\share\\"] if in_zip else []  # the multipart parser keeps only the base
            name = rng.choice(prefixes) + _path(rng)
        elif kind == "symlink":
            name = _path(rng)
            entries = [special_entry(name, stat.S_IFLNK, rng.choice([b"/etc/passwd", b"../../x", b"."]))]
        elif kind == "special-file":
            name = _path(rng)
            entries = [special_entry(name, rng.choice([stat.S_IFCHR, stat.S_IFIFO, stat.S_IFBLK, stat.S_IFSOCK]))]
        elif kind == "duplicate":
            name = _path(rng)
            second = rng.choice([name, "./" + name, name.replace("/", "\\"), name.replace("/", "//"), name + "/"])
            if second.endswith("/") and not in_zip:
                second = name
        elif kind == "clash":
            name = _path(rng)
            second = name + rng.choice("/\\") + _part(rng)
            if rng.random() < 0.5:
                name, second = second, name
        elif kind == "control":
            base = _path(rng)
            at = rng.randint(0, len(base))
            name = base[:at] + rng.choice(CONTROL) + base[at:]
        elif kind == "long":
            if rng.random() < 0.5:
                name = _part(rng) + "/" + "L" * rng.randint(256, 400)
            else:
                name = "/".join("d" * 200 for _ in range(rng.randint(6, 12)))
        else:
            name = "\\".join([_part(rng), _part(rng), _part(rng) + ".dcm"])
            allowed = frozenset({"rejected"})
        if entries is None:
            entries = [(name, content)] + ([(second, content)] if second is not None else [])
        if in_zip:
            parts: tuple[Part, ...] = (("archive", "names.zip", make_zip(entries)),)
        else:
            parts = tuple(("files", str(e if isinstance(e, str) else e.filename), data) for e, data in entries)
        yield HostileCase(
            f"unsafe name ({kind})" if kind != "backslash" else "Windows-style name",
            f"{'zip' if in_zip else 'files'}: {name!r}" + (f" and {second!r}" if second else ""),
            parts,
            allowed,
            (repr(second or name)[1:31],) if allowed == REFUSED else (),
            ("RTSTRUCT",) if kind == "backslash" else (),
        )


def oversize(rng: random.Random, src: Sources, *, limit: int) -> Iterator[HostileCase]:
    while True:
        chunked = rng.random() < 0.5
        size = limit + rng.randint(1, 2 * FORM_OVERHEAD_BYTES + limit)
        blob = bytes(size) if rng.random() < 0.5 else rng.randbytes(size)
        field_name, name = rng.choice([("files", "big.dcm"), ("archive", "big.zip")])
        how = "chunked, no Content-Length" if chunked else "with Content-Length"
        yield HostileCase(
            "body over the size limit",
            f"{size} bytes {how}",
            ((field_name, name, blob),),
            frozenset({"refused 413"}),
            ("RTQA_MAX_UPLOAD_BYTES",),
            chunked=chunked,
            tight=True,
        )


def other_frame(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    while True:
        kind = rng.choices(
            ["other case's RTSTRUCT", "other case's RTSTRUCT and CT", "frame UID rewritten"], weights=[4, 1, 5]
        )[0]
        if kind == "other case's RTSTRUCT":
            parts: tuple[Part, ...] = (("files", "RS.dcm", src.other_rtstruct),)
            frame = src.other_frame_uid
        elif kind == "other case's RTSTRUCT and CT":
            parts = (("files", "RS.dcm", src.other_rtstruct), *tuple(("files", n, d) for n, d in src.other_ct))
            frame = src.other_frame_uid
        else:
            frame = rng.choice([src.other_frame_uid, generate_uid(entropy_srcs=[str(rng.random())])])

            def change(ds: Dataset, frame: str = frame) -> None:
                ds.FrameOfReferenceUID = frame
                for item in ds.ReferencedFrameOfReferenceSequence:
                    item.FrameOfReferenceUID = frame
                for roi in ds.StructureSetROISequence:
                    roi.ReferencedFrameOfReferenceUID = frame

            parts = (("files", "RS.dcm", edit_dicom(src.rtstruct, change)),)
        yield HostileCase(
            "frame of reference of another case",
            kind,
            parts,
            frozenset({"rejected"}),
            (),
            ("(0020,0052) FrameOfReferenceUID", frame),
        )


SURNAMES = ("SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "O'NEILL", "MÜLLER", "NGUYEN", "PATEL", "KHAN")
GIVEN = ("John", "Mary", "Ahmed", "Siobhan", "Wei", "Olu", "Agnieszka", "Priya", "Tom", "Zoë")


def nhs_number(rng: random.Random) -> str:
    """Ten digits with a valid NHS number check digit (modulus 11)."""
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def patient_identity(rng: random.Random, src: Sources) -> Iterator[HostileCase]:
    while True:
        control = rng.random() < 0.04
        name = f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}"
        patient_id = rng.choice([nhs_number(rng), f"RM{rng.randrange(10**6):06d}", f"{rng.randrange(10**7):07d}"])
        birth = f"{rng.randint(1930, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        extras = {
            "PatientAddress": f"{rng.randint(1, 200)} Acacia Avenue, Manchester M20 4BX",
            "PatientTelephoneNumbers": f"0161 {rng.randrange(10**6):06d}",
            "OtherPatientIDs": nhs_number(rng),
            "PatientBirthName": f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}",
            "PatientMotherBirthName": f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}",
        }
        if control:
            case_name, case_id = src.identity
            chosen = {"PatientName": rng.choice([case_name + "^^", case_name + " ", ""]), "PatientID": case_id}
            values: tuple[str, ...] = ()
        else:
            pool = {"PatientName": name, "PatientID": patient_id, "PatientBirthDate": birth} | extras
            keys = rng.sample(sorted(pool), rng.randint(1, 4))
            chosen = {k: pool[k] for k in keys}
            values = tuple(v for v in chosen.values() if len(v) >= 6)

        def change(ds: Dataset, chosen: dict[str, str] = chosen) -> None:
            for keyword, value in chosen.items():
                setattr(ds, keyword, value)

        where = "RS.dcm" if control else rng.choice(["RS.dcm", "CT/CT.0001.dcm"])
        parts: tuple[Part, ...]
        if where == "RS.dcm":
            parts = (("files", "RS.dcm", edit_dicom(src.rtstruct, change)),)
        else:
            parts = (
                ("files", "RS.dcm", src.rtstruct),
                ("files", where, edit_dicom(dict(src.ct)["CT/CT.0001.dcm"], change)),
            )
        if rng.random() < 0.3:
            parts = (("archive", "sub.zip", make_zip([(n, d) for _, n, d in parts])),)
        label = ("case identity, padded or empty: " if control else "") + ", ".join(sorted(chosen))
        yield HostileCase(
            "patient identity" if not control else "patient identity (control: the case's own)",
            label,
            parts,
            frozenset({"decided"}) if control else REFUSED,
            () if control else (where,),
            absent=values,
        )


CLASSES: dict[str, int] = {
    "truncated": 150,
    "flipped": 250,
    "modality": 60,
    "not_dicom": 100,
    "bombs": 100,
    "damaged_zips": 40,
    "names": 250,
    "oversize": 50,
    "frame": 40,
    "identity": 100,
}
"""Cases per class in a full run (1,140)."""


def corpus(
    src: Sources, *, seed: int, scale: float, max_files: int, max_bytes: int, ratio: float, tight_limit: int
) -> list[HostileCase]:
    """The cases of a run: :data:`CLASSES` times ``scale`` (at least one each), from ``seed``."""
    rng = random.Random(seed)
    generators: dict[str, Iterator[HostileCase]] = {
        "truncated": truncated_dicom(rng, src),
        "flipped": flipped_dicom(rng, src),
        "modality": wrong_modality(rng, src),
        "not_dicom": not_dicom(rng, src),
        "bombs": zip_bombs(rng, src, max_files=max_files, max_bytes=max_bytes, ratio=ratio),
        "damaged_zips": damaged_zips(rng, src),
        "names": unsafe_names(rng, src),
        "oversize": oversize(rng, src, limit=tight_limit),
        "frame": other_frame(rng, src),
        "identity": patient_identity(rng, src),
    }
    cases = []
    for name, count in CLASSES.items():
        for _ in range(max(1, round(count * scale))):
            cases.append(next(generators[name]))
    return cases
