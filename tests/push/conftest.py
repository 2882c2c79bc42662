"""Fixtures for the DICOM push tests: the mini outlining case built once, registered per test database, a centre's
AE title, a receiver on a free port, users with tokens, and helpers to push with dcmtk's storescu."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import Deviation, SimulatedSubmission, simulate_submission
from flows.catalogue import build_reference, register_case
from flows.dicom_receiver import DicomReceiver
from flows.dicom_staging import PushReceipt
from models.auth import issue_token
from models.dicom_ae import add_ae_title
from models.enums import Role
from models.settings import Settings
from models.tables import Provider, User

CASE = "lung-sabr-outlining-mini"
OWN = "the-christie"
OTHER = "leeds-teaching-hospitals"
AET = "CHRISTIE_TPS"
"""The centre's calling AE title, registered to :data:`OWN`."""

STORESCU = shutil.which("storescu") or "/usr/bin/storescu"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    """The case's reference files, built once for the session."""
    return build_case(CASE, tmp_path_factory.mktemp("push-cases"))


@pytest.fixture
def registered(settings: Settings, built: BuiltCase) -> int:
    reference = build_reference.fn(CASE, str(built.directory.parent))
    return register_case.fn(reference, actor="tests", database_url=settings.resolved_database_url)


@pytest.fixture
def ae(engine: Engine) -> str:
    with Session(engine) as session:
        add_ae_title(session, ae_title=AET, provider_code=OWN, actor="tests")
        session.commit()
    return AET


@pytest.fixture
def receiver(settings: Settings, registered: int, ae: str) -> Iterator[DicomReceiver]:
    """A receiver on a free port of 127.0.0.1, stopped after the test."""
    rx = DicomReceiver(settings, host="127.0.0.1", port=0)
    rx.start()
    yield rx
    rx.stop()


@pytest.fixture
def tokens(engine: Engine) -> dict[str, str]:
    """Bearer tokens of a centre user (of :data:`OWN`), a staff user and a commissioner."""
    with Session(engine) as session:
        own = session.exec(select(Provider).where(Provider.code == OWN)).one()
        users = {
            "centre": User(email="phys@christie.test", name="Physicist", role=Role.CENTRE, provider_id=own.id),
            "staff": User(email="qa@rttqa.test", name="QA", role=Role.STAFF),
            "commissioner": User(email="comm@nhs.test", name="Commissioner", role=Role.COMMISSIONER),
        }
        session.add_all(users.values())
        session.flush()
        out = {key: issue_token(session, user=user, actor="tests") for key, user in users.items()}
        session.commit()
    return out


def simulate(built: BuiltCase, out_dir: Path, *deviations: str, seed: int = 0) -> SimulatedSubmission:
    """A simulated outlining submission of :data:`OWN` (the case's CT and the centre's RTSTRUCT)."""
    return simulate_submission(
        built, provider=OWN, deviations=[Deviation.parse(d) for d in deviations], seed=seed, out_dir=out_dir
    )


def storescu(port: int, *paths: Path, aet: str = AET, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Push files (folders are scanned) with dcmtk's storescu in debug mode, without halting at a failure."""
    command = [STORESCU, "-d", "-nh", "+sd", "+r", "-aet", aet, "-aec", "RTQA", *extra, "127.0.0.1", str(port)]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, timeout=300, check=False)


def wait_for_receipts(receiver: DicomReceiver, count: int, *, timeout: float = 60.0) -> list[PushReceipt]:
    """The receiver's receipts once ``count`` studies have been finalised (the association thread finalises a
    study just after the sender has gone)."""
    deadline = time.monotonic() + timeout
    while len(receiver.receipts) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(receiver.receipts)} studies finalised after {timeout} s, expected {count}")
        time.sleep(0.05)
    return list(receiver.receipts)


def rewrite(source: Path, target: Path, **attributes: object) -> Path:
    """A copy of a DICOM file with attributes changed (keywords), written to ``target``."""
    ds = pydicom.dcmread(source)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if "SOPInstanceUID" in attributes:
        ds.file_meta.MediaStorageSOPInstanceUID = attributes["SOPInstanceUID"]
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


def beam_dose_for(ct_file: Path, target: Path, *, summation: str = "BEAM", sop_instance_uid: str) -> Path:
    """An RTDOSE on the frame of reference, patient and study of ``ct_file`` (pydicom's example dose with those
    attributes replaced), of (3004,000A) DoseSummationType ``summation``."""
    from pydicom.examples import get_path

    ct = pydicom.dcmread(ct_file, stop_before_pixels=True)
    ds = pydicom.dcmread(get_path("rt_dose"))
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        setattr(ds, keyword, getattr(ct, keyword))
    ds.DoseSummationType = summation
    ds.SOPInstanceUID = sop_instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target
