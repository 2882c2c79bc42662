"""Shared helpers for the centre page tests: three small cases (an outlining, a planning and a TPS-check case)
registered as published cases, a centre user of another provider, signed-in page clients, and uploads."""

from __future__ import annotations

import io
import re
import zipfile
from html import unescape
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.case_spec import STAGE_DOSIMETRY
from benchmarks.cases import BuiltCase, build_case
from flows.catalogue import build_reference, case_stage, register_case
from models.auth import issue_token
from models.enums import Role
from models.settings import Settings
from models.tables import BenchmarkCase, Provider, Technique, User
from tests.coarse import build_coarse_lung
from tests.portal.conftest import OTHER

OUTLINING = "lung-sabr-outlining-mini"
PLANNING = "lung-sabr-planning-coarse"
TPS = "lung-sabr-tps-check-coarse"

SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",
    "RTPLAN": "1.2.840.10008.5.1.4.1.1.481.5",
    "RTDOSE": "1.2.840.10008.5.1.4.1.1.481.2",
}
"""DICOM SOP Class UIDs (PS3.4 Annex B.5): CT Image, RT Structure Set, RT Plan and RT Dose Storage."""


@pytest.fixture(scope="module")
def built_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltCase]:
    """The three cases' reference files, built once per module."""
    root = tmp_path_factory.mktemp("cases")
    return {
        OUTLINING: build_case(OUTLINING, root),
        PLANNING: build_coarse_lung(root),
        TPS: build_coarse_lung(root, case_id=TPS, stage=STAGE_DOSIMETRY),
    }


@pytest.fixture
def published(settings: Settings, engine: Engine, built_cases: dict[str, BuiltCase]) -> dict[str, BuiltCase]:
    """The three cases registered as published cases (the outlining case as ``rtqa cases publish`` does it)."""
    root = built_cases[OUTLINING].directory.parent
    reference = build_reference.fn(OUTLINING, str(root))
    register_case.fn(reference, actor="tests", database_url=settings.resolved_database_url)
    with Session(engine) as session:
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        for code in (PLANNING, TPS):
            built = built_cases[code]
            session.add(
                BenchmarkCase(
                    case_code=code,
                    version=built.spec.version,
                    title=built.spec.title,
                    technique_id=lung.id or 0,
                    stage=case_stage(built.spec),
                    protocol_id="uk-lung-sabr",
                    protocol_version="1.0",
                    reference_sha256=built.content_sha256,
                    reference_path=str(built.directory),
                )
            )
        session.commit()
    return built_cases


@pytest.fixture
def other_token(engine: Engine) -> str:
    """An API token of a centre user of the other provider (leeds-teaching-hospitals)."""
    with Session(engine) as session:
        other = session.exec(select(Provider).where(Provider.code == OTHER)).one()
        user = User(email="phys@leeds.test", name="Leeds physicist", role=Role.CENTRE, provider_id=other.id)
        session.add(user)
        session.flush()
        token = issue_token(session, user=user, actor="tests")
        session.commit()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def page_client(client: TestClient, token: str | None) -> TestClient:
    """A browser-like client of the same app, signed in with ``token`` (anonymous when ``None``)."""
    other = TestClient(client.app)
    if token is not None:
        r = other.post("/sign-in", data={"token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
    return other


def csrf(client: TestClient, page: str = "/sign-in") -> str:
    """The CSRF token of the client's page session (from a page's meta tag)."""
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get(page).text)
    assert match, "signed-in pages carry the CSRF token"
    return match.group(1)


def zip_folder(directory: Path) -> bytes:
    """The folder as a zip, names relative to it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def upload_zip(client: TestClient, case: str, data: bytes, headers: dict[str, str]) -> Any:
    """POST the zip to the upload API as the upload page's script does (or with a bearer token)."""
    return client.post(
        "/api/v1/submissions",
        headers=headers,
        data={"case": case},
        files={"archive": ("submission.zip", data, "application/zip")},
    )


def zip_objects(data: bytes) -> list[tuple[str, str, str, str]]:
    """Every entry of a zip as (name, Modality, SOPClassUID, SOPInstanceUID), read by pydicom."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            ds = pydicom.dcmread(io.BytesIO(zf.read(name)), stop_before_pixels=True)
            out.append((name, str(ds.Modality), str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return out


def instance_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def visible_text(html: str) -> str:
    """A page's text, roughly as shown: tags dropped, entities decoded, white space collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))
