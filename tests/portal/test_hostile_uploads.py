"""Hostile uploads through the real endpoint and the runner (the corpus is :mod:`tests.portal.hostile_corpus`).

Every case must end in a 4xx naming what was wrong, or be stored and end ``rejected`` with a reason (``decided``
only where the corpus allows it): never a 5xx, never traceback text or a server path in an answer or a reason,
never a patient's value echoed, no submission row for a refused upload, nothing extracted from a zip refused by its
directory, the upload area empty after every request. After the run the submission store and the database must
agree: every stored folder belongs to exactly one submission row and every row's folder exists.

The full run (1,140 cases) is marked slow; with ``RTQA_HOSTILE_REPORT=path`` it writes its tally there as Markdown
(the table in docs/reliability.md comes from it), and ``RTQA_HOSTILE_DUMP=dir`` keeps the parts of every failing
case. The fast run takes a few cases of every class.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import Deviation, simulate_submission
from flows.catalogue import build_reference, register_case
from models.enums import SubmissionStatus
from models.settings import Settings
from models.tables import AuditEvent, Submission
from portal.app import create_app
from tests.portal.conftest import OWN
from tests.portal.hostile_corpus import CASE, CLASSES, OTHER_CASE, HostileCase, Part, Sources, corpus

URL = "/api/v1/submissions"
SEED = 20240611
MAX_FILES = 200
MAX_UNCOMPRESSED = 16 << 20
RATIO = 100.0
TIGHT_LIMIT = 64 << 10
"""Upload limit of the second app, for bodies over the limit (the first allows the other case's 7 MB upload)."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltCase]:
    root = tmp_path_factory.mktemp("hostile-cases")
    return {code: build_case(code, root) for code in (CASE, OTHER_CASE)}


@pytest.fixture(scope="module")
def sources(built: dict[str, BuiltCase], tmp_path_factory: pytest.TempPathFactory) -> Sources:
    import pydicom

    out = tmp_path_factory.mktemp("hostile-sims")
    own = simulate_submission(
        built[CASE], provider=OWN, deviations=[Deviation.parse("margin_mm:PTV:1")], seed=0, out_dir=out / "own"
    )
    other = simulate_submission(built[OTHER_CASE], provider=OWN, deviations=[], seed=0, out_dir=out / "other")

    def ct(directory: Path) -> tuple[tuple[str, bytes], ...]:
        return tuple(
            (p.relative_to(directory).as_posix(), p.read_bytes()) for p in sorted((directory / "CT").iterdir())
        )

    rtstruct = own.rtstruct_path.read_bytes()
    ds = pydicom.dcmread(own.rtstruct_path)
    other_ds = pydicom.dcmread(other.rtstruct_path)
    return Sources(
        rtstruct=rtstruct,
        ct=ct(own.directory),
        identity=(str(ds.PatientName), str(ds.PatientID)),
        other_rtstruct=other.rtstruct_path.read_bytes(),
        other_ct=ct(other.directory),
        other_frame_uid=str(other_ds.FrameOfReferenceUID),
    )


@dataclass
class World:
    """The two apps (one with the small upload limit) over one database and data directory."""

    client: TestClient
    tight: TestClient
    settings: Settings
    engine: Engine
    token: str
    zip_inits: list[str] = field(default_factory=list)
    zip_opens: list[str] = field(default_factory=list)


@pytest.fixture
def world(
    settings: Settings,
    engine: Engine,
    tokens: dict[str, str],
    built: dict[str, BuiltCase],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    for code, case in built.items():
        register_case.fn(
            build_reference.fn(code, str(case.directory.parent)),
            actor="tests",
            database_url=settings.resolved_database_url,
        )
    limited = settings.model_copy(
        update={
            "max_archive_files": MAX_FILES,
            "max_uncompressed_bytes": MAX_UNCOMPRESSED,
            "max_upload_bytes": 12 << 20,
        }
    )
    tight = settings.model_copy(update={"max_upload_bytes": TIGHT_LIMIT})
    real_init, real_open = zipfile.ZipFile.__init__, zipfile.ZipFile.open
    spies: dict[str, list[str]] = {"init": [], "open": []}

    def spy_init(self: zipfile.ZipFile, file: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("mode", args[0] if args else "r") == "r":
            spies["init"].append(str(file))
        real_init(self, file, *args, **kwargs)

    def spy_open(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        spies["open"].append(str(getattr(name, "filename", name)))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", spy_init)
    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    with (
        TestClient(create_app(limited, engine=engine), raise_server_exceptions=False) as client,
        TestClient(create_app(tight, engine=engine), raise_server_exceptions=False) as tight_client,
    ):
        yield World(client, tight_client, settings, engine, tokens["centre"], spies["init"], spies["open"])


def encode_multipart(form: tuple[tuple[str, str], ...], parts: tuple[Part, ...]) -> tuple[bytes, str]:
    """A multipart body with every file name sent exactly as given (quotes and backslashes escaped)."""
    boundary = "rtqa-" + secrets.token_hex(16)
    chunks = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in form
    ]
    for field_name, filename, data in parts:
        escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{escaped}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        chunks.append(head.encode("utf-8") + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _chunks(body: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@dataclass
class Run:
    """What happened to every case: the tally by class and ending, and every broken expectation."""

    tally: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def fail(self, case: HostileCase, what: str) -> None:
        self.problems.append(f"[{case.kind}: {case.label}] {what}")
        if dump := os.environ.get("RTQA_HOSTILE_DUMP"):  # keep the parts of every failing case for a closer look
            folder = Path(dump) / str(len(self.problems))
            folder.mkdir(parents=True, exist_ok=True)
            for i, (_, _name, data) in enumerate(case.parts):
                (folder / f"{i}.bin").write_bytes(data)
            (folder / "what.txt").write_text(what)


def _submission_count(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(Submission.id)).all())


def _refusal_events(engine: Engine) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == "submission.refused")).all())


def _leaks(text: str, world: World, case: HostileCase) -> list[str]:
    found = [marker for marker in ("Traceback", 'File "', str(world.settings.data_dir.resolve())) if marker in text]
    found += [f"value {v!r}" for v in case.absent if v in text]
    return found


def run_case(world: World, case: HostileCase, run: Run) -> None:
    body, content_type = encode_multipart(case.form, case.parts)
    client = world.tight if case.tight else world.client
    before = _submission_count(world.engine)
    refusals_before = len(_refusal_events(world.engine))
    del world.zip_inits[:], world.zip_opens[:]
    headers = {"Authorization": f"Bearer {world.token}", "Content-Type": content_type}
    response = client.post(URL, headers=headers, content=_chunks(body) if case.chunked else body)
    run.statuses[response.status_code] += 1
    if response.status_code >= 500:
        run.fail(case, f"answered {response.status_code}: {response.text[:300]}")
        run.tally[case.kind][f"error {response.status_code}"] += 1
        return
    for leak in _leaks(response.text, world, case):
        run.fail(case, f"the answer shows {leak}: {response.text[:300]}")
    uploads = world.settings.uploads_dir
    if uploads.exists() and any(uploads.iterdir()):
        run.fail(case, f"left in the upload area: {sorted(p.name for p in uploads.iterdir())}")
    if response.status_code >= 400:
        ending = f"refused {response.status_code}"
        detail = str(response.json().get("detail", ""))
        if not ({"refused", ending} & case.allowed):
            run.fail(case, f"{ending} ({detail[:200]}) but expected {sorted(case.allowed)}")
        if case.names and not any(n in detail for n in case.names):
            run.fail(case, f"{ending}: {detail[:200]!r} names none of {case.names}")
        if _submission_count(world.engine) != before:
            run.fail(case, f"{ending} but a submission row was added")
        if case.zip_opens is not None and len(world.zip_opens) > case.zip_opens:
            run.fail(case, f"{len(world.zip_opens)} entries opened before the refusal")
        if case.kind == "patient identity":
            events = _refusal_events(world.engine)
            if len(events) != refusals_before + 1:
                run.fail(case, "the identity refusal was not audited")
            elif leaks := [v for v in case.absent if v in json.dumps([events[-1].after, events[-1].reason])]:
                run.fail(case, f"the audit event repeats {leaks}")
        run.tally[case.kind][ending] += 1
        return
    world.client.app.state.runner.drain(raise_errors=False)  # type: ignore[attr-defined]
    failures = world.client.app.state.runner.failures  # type: ignore[attr-defined]
    if failures:
        run.fail(case, f"the runner failed: {failures}")
        failures.clear()
    with Session(world.engine) as session:
        sub = session.get(Submission, response.json()["submission_id"])
        assert sub is not None
        status, reason = sub.status, sub.rejection_reason or ""
    ending = {SubmissionStatus.REJECTED: "rejected", SubmissionStatus.DECIDED: "decided"}.get(status, status.value)
    if ending not in case.allowed:
        run.fail(case, f"{ending} ({reason[:200]}) but expected {sorted(case.allowed)}")
    if ending == "rejected" and (
        not reason
        or not all(r in reason for r in case.reason)
        or (case.reason_any and not any(r in reason for r in case.reason_any))
    ):
        run.fail(case, f"rejected with {reason[:300]!r}, expected it to name {case.reason or case.reason_any}")
    for leak in _leaks(reason, world, case):
        run.fail(case, f"the rejection reason shows {leak}")
    run.tally[case.kind][ending] += 1


def scan_store(world: World) -> list[str]:
    """Disagreements between the submission store, the upload area and the database (empty: none)."""
    problems = []
    store = world.settings.submissions_dir
    folders = sorted(p.resolve() for p in store.glob("*/*/*")) if store.exists() else []
    with Session(world.engine) as session:
        subs = session.exec(select(Submission)).all()
        paths = Counter(Path(s.storage_path).resolve() for s in subs)
        unfinished = [s.id for s in subs if s.status not in (SubmissionStatus.REJECTED, SubmissionStatus.DECIDED)]
        no_reason = [s.id for s in subs if s.status is SubmissionStatus.REJECTED and not s.rejection_reason]
    problems += [f"stored folder {p} has {paths[p]} submission rows" for p in folders if paths[p] != 1]
    problems += [f"submission row points at missing folder {p}" for p in paths if p not in folders]
    problems += [f"unfinished submissions {unfinished}"] if unfinished else []
    problems += [f"rejected without a reason: {no_reason}"] if no_reason else []
    stray = [p for p in store.rglob("*") if p.is_dir() and p.name.startswith(".")] if store.exists() else []
    problems += [f"temporary folder left in the store: {p}" for p in stray]
    uploads = world.settings.uploads_dir
    if uploads.exists() and any(uploads.iterdir()):
        problems.append(f"upload area not empty: {sorted(p.name for p in uploads.iterdir())}")
    return problems


def report(run: Run, cases: list[HostileCase], scan: list[str], source: str = f"corpus seed {SEED}") -> str:
    """The tally as Markdown: per class, how many cases and how each ended."""
    endings = sorted({e for counts in run.tally.values() for e in counts})
    lines = [
        f"Hostile uploads tried: **{len(cases)}** ({source}); HTTP answers: "
        + ", ".join(f"{code}: {n}" for code, n in sorted(run.statuses.items()))
        + f"; broken expectations: {len(run.problems)}; store/database disagreements after the run: {len(scan)}.",
        "",
        "| class | cases | " + " | ".join(endings) + " |",
        "|---|---|" + "---|" * len(endings),
    ]
    for kind, counts in sorted(run.tally.items()):
        lines.append(
            f"| {kind} | {sum(counts.values())} | " + " | ".join(str(counts.get(e, "")) for e in endings) + " |"
        )
    return "\n".join(lines) + "\n"


def _run(
    world: World, sources: Sources, scale: float, shard: int = 0, shards: int = 1
) -> tuple[Run, list[HostileCase], list[str]]:
    """Run every ``shards``-th case of the corpus from ``shard`` on; returns the tally, the whole corpus and the
    store scan."""
    cases = corpus(
        sources,
        seed=SEED,
        scale=scale,
        max_files=MAX_FILES,
        max_bytes=MAX_UNCOMPRESSED,
        ratio=RATIO,
        tight_limit=TIGHT_LIMIT,
    )
    run = Run()
    for case in cases[shard::shards]:
        run_case(world, case, run)
    return run, cases, scan_store(world)


def test_a_few_of_every_class(world: World, sources: Sources) -> None:
    run, _cases, scan = _run(world, sources, scale=4 / max(CLASSES.values()) * 2)
    assert len(run.tally) >= len(CLASSES)
    assert run.problems == [] and scan == [], "\n".join(run.problems[:20] + scan)


SHARDS = 1 if os.environ.get("RTQA_HOSTILE_REPORT") else 4
"""The full corpus runs as this many tests (each its own database and store) so that test workers share it; one
when the tally is written, so that the report covers the whole corpus in one table."""


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SHARDS))
def test_the_full_corpus(world: World, sources: Sources, shard: int) -> None:
    """The corpus, every ``SHARDS``-th case from ``shard`` on; with ``RTQA_HOSTILE_REPORT`` set, in one run whose
    tally is written there (then :func:`test_any_names_through_the_endpoint` appends its own)."""
    run, cases, scan = _run(world, sources, scale=1.0, shard=shard, shards=SHARDS)
    assert sum(sum(counts.values()) for counts in run.tally.values()) == len(cases[shard::SHARDS])
    text = report(run, cases, scan)
    print("\n" + text)
    if target := os.environ.get("RTQA_HOSTILE_REPORT"):
        Path(target).write_text("### Corpus\n\n" + text)
    assert len(cases) >= 1000
    assert run.problems == [] and scan == [], "\n".join(run.problems[:30] + scan)


NAME_PIECES = st.sampled_from(
    ["/", "\\", ".", "..", "C:", "a", "b.dcm", "CT", "\x00", "\x1f", "\u202e", "é", "L" * 300]
)
ANY_NAME = st.one_of(st.text(max_size=40), st.lists(NAME_PIECES, max_size=6).map("".join))


@pytest.mark.parametrize("examples", [30, pytest.param(300, marks=pytest.mark.slow)])
def test_any_names_through_the_endpoint(world: World, sources: Sources, examples: int) -> None:
    """Hypothesis: any file names (as files or in a zip) with a small valid DICOM file or random bytes end in a
    refusal or, stored, in a rejection (the file holds no RTSTRUCT): never a 5xx, nothing left behind."""
    from tests.portal.hostile_corpus import make_zip, tiny_dicom

    run = Run()
    tried: list[HostileCase] = []

    @settings(max_examples=examples, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(names=st.lists(ANY_NAME, min_size=1, max_size=3), zipped=st.booleans(), content=st.binary(max_size=64))
    def one(names: list[str], zipped: bool, content: bytes) -> None:
        data = [tiny_dicom(sources.identity, seed=f"{name!r}") if i == 0 else content for i, name in enumerate(names)]
        parts: tuple[Part, ...]
        if zipped:
            parts = (("archive", "names.zip", make_zip(list(zip(names, data, strict=True)))),)
        else:
            parts = tuple(("files", name, blob) for name, blob in zip(names, data, strict=True))
        case = HostileCase(
            "Hypothesis: any names",
            f"{'zip' if zipped else 'files'}: {names!r}",
            parts,
            frozenset({"refused", "rejected"}),
        )
        tried.append(case)
        run_case(world, case, run)

    one()
    scan = scan_store(world)
    if examples > 100 and (target := os.environ.get("RTQA_HOSTILE_REPORT")):
        with Path(target).open("a") as out:
            out.write("\n### Any names (Hypothesis)\n\n" + report(run, tried, scan, "Hypothesis, derandomised"))
    assert run.problems == [] and scan == [], "\n".join(run.problems[:20] + scan)
