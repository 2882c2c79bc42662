"""STOW-RS (POST /dicomweb/studies) against the app served by uvicorn on a free port, sent by the dicomweb-client
package (and by hand where the HTTP status or a malformed body is the point): decided submissions with the oracle's
outcome, the standard response dataset with failure reasons, and refusals leaving nothing behind."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import requests
import uvicorn
from dicomweb_client.api import DICOMwebClient
from fastapi import FastAPI
from pydicom.dataset import Dataset
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from benchmarks.cases import BuiltCase
from benchmarks.protocols import load_protocol
from benchmarks.simulator import PlanDeviation, simulate_plan_submission
from flows.catalogue import case_stage, register_protocol
from models.settings import Settings
from models.tables import BenchmarkCase, Submission, Technique
from portal.app import create_app
from tests.coarse import build_coarse_lung
from tests.push.conftest import CASE, OWN, beam_dose_for, rewrite, simulate

STUDIES = "/dicomweb/studies"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The app served by uvicorn in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def client(self, token: str) -> DICOMwebClient:
        return DICOMwebClient(f"{self.base}/dicomweb", headers={"Authorization": f"Bearer {token}"})

    def drain(self) -> list[int]:
        done: list[int] = self.app.state.runner.drain()
        return done


@pytest.fixture
def served(settings: Settings, engine: Engine, registered: int) -> Iterator[Served]:
    with Served(create_app(settings, engine=engine)) as s:
        yield s


def _datasets(*paths: Path) -> list[Dataset]:
    files = [q for p in paths for q in (sorted(p.rglob("*.dcm")) if p.is_dir() else [p])]
    return [pydicom.dcmread(f) for f in files]


def _multipart(files: Iterable[Path], boundary: str) -> Iterator[bytes]:
    for path in files:
        yield f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield path.read_bytes()
    yield f"\r\n--{boundary}--\r\n".encode()


def _post(served: Served, token: str, files: list[Path], *, chunked: bool = False, **params: str) -> httpx.Response:
    boundary = uuid.uuid4().hex
    body: Any = _multipart(files, boundary) if chunked else b"".join(_multipart(files, boundary))
    return httpx.post(
        f"{served.base}{STUDIES}",
        params=params,
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
        timeout=120,
    )


def _submissions(engine: Engine) -> list[Submission]:
    with Session(engine) as session:
        return list(session.exec(select(Submission).order_by(col(Submission.id))).all())


def _leftovers(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.uploads_dir.rglob("*")) if settings.uploads_dir.exists() else []


class TestStore:
    def test_a_stored_submission_is_decided_with_the_oracles_outcome(
        self,
        served: Served,
        settings: Settings,
        engine: Engine,
        built: BuiltCase,
        tokens: dict[str, str],
        tmp_path: Path,
    ) -> None:
        far = simulate(built, tmp_path / "far", "margin_mm:PTV:8", "shift_mm:GTV:0,0,10")
        sent = _datasets(far.directory)
        response = served.client(tokens["centre"]).store_instances(sent)
        stored = {
            (str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)) for i in response.ReferencedSOPSequence
        }
        assert stored == {(str(d.SOPClassUID), str(d.SOPInstanceUID)) for d in sent}
        assert "FailedSOPSequence" not in response
        (sub,) = _submissions(engine)
        assert sub.submitted_by == "phys@christie.test" and sub.status.value == "received"
        assert served.drain() == [sub.id]
        headers = {"Authorization": f"Bearer {tokens['centre']}"}
        detail = httpx.get(f"{served.base}/api/v1/submissions/{sub.id}", headers=headers).json()
        assert detail["status"] == "decided" and detail["outcomes"][0]["level"] == far.expected_outcome.value
        received = httpx.get(f"{served.base}/api/v1/submissions/{sub.id}/received", headers=headers).json()
        assert received["via"]["route"] == "STOW-RS" and received["complete"] is True
        assert received["instances"] == len(sent) and _leftovers(settings) == []

    def test_the_answer_is_200_with_the_submission_location_streamed_or_not(
        self, served: Served, engine: Engine, built: BuiltCase, tokens: dict[str, str], tmp_path: Path
    ) -> None:
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        files = sorted(sim.directory.rglob("*.dcm"))
        first = _post(served, tokens["centre"], files, chunked=True)
        assert first.status_code == 200, first.text
        assert first.headers["content-type"] == "application/dicom+json"
        (sub,) = _submissions(engine)
        assert first.headers["location"] == f"/api/v1/submissions/{sub.id}"
        again = _post(served, tokens["staff"], files, provider=OWN)
        assert again.status_code == 200 and again.headers["location"] == first.headers["location"]
        assert len(_submissions(engine)) == 1

    def test_refused_instances_are_listed_with_their_failure_reason(
        self, served: Served, engine: Engine, built: BuiltCase, tokens: dict[str, str], tmp_path: Path
    ) -> None:
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        rewrite(sim.rtstruct_path, sim.rtstruct_path, PatientID="SOMEONE-ELSE")
        dose = beam_dose_for(
            next(sim.ct_dir.glob("*.dcm")), tmp_path / "beam.dcm", sop_instance_uid="1.2.826.0.1.3680043.8.498.5"
        )
        response = _post(served, tokens["centre"], [*sorted(sim.ct_dir.glob("*.dcm")), sim.rtstruct_path, dose])
        assert response.status_code == 202, response.text
        answer = Dataset.from_json(response.json())
        reasons = {
            str(i.ReferencedSOPInstanceUID): (int(i.FailureReason), str(i.ErrorComment))
            for i in answer.FailedSOPSequence
        }
        rtstruct_uid = str(pydicom.dcmread(sim.rtstruct_path).SOPInstanceUID)
        assert reasons[rtstruct_uid][0] == 0xC101 and "PatientID 'SOMEONE-ELSE'" in reasons[rtstruct_uid][1]
        assert reasons["1.2.826.0.1.3680043.8.498.5"][0] == 0xC102
        assert reasons["1.2.826.0.1.3680043.8.498.5"][1] == "DoseSummationType BEAM: send the PLAN dose"
        assert len(answer.ReferencedSOPSequence) == len(list(sim.ct_dir.glob("*.dcm")))

    def test_nothing_stored_is_a_409_that_dicomweb_client_reports(
        self,
        served: Served,
        settings: Settings,
        engine: Engine,
        built: BuiltCase,
        tokens: dict[str, str],
        tmp_path: Path,
    ) -> None:
        foreign = rewrite(
            next(built.ct_dir.glob("*.dcm")),
            tmp_path / "foreign.dcm",
            FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.77",
            SOPInstanceUID="1.2.826.0.1.3680043.8.498.78",
        )
        with pytest.raises(requests.HTTPError) as raised:
            served.client(tokens["centre"]).store_instances(_datasets(foreign))
        assert raised.value.response.status_code == 409
        answer = Dataset.from_json(raised.value.response.json())
        (failed,) = answer.FailedSOPSequence
        assert failed.FailureReason == 0xC100 and "that of no benchmark case" in failed.ErrorComment
        assert "ReferencedSOPSequence" not in answer
        assert _submissions(engine) == [] and _leftovers(settings) == []

    def test_a_part_that_is_not_dicom_is_another_failure(
        self, served: Served, engine: Engine, tokens: dict[str, str], tmp_path: Path
    ) -> None:
        junk = tmp_path / "notes.dcm"
        junk.write_bytes(b"not a DICOM file at all")
        response = _post(served, tokens["centre"], [junk])
        assert response.status_code == 409
        (other,) = Dataset.from_json(response.json()).OtherFailuresSequence
        assert other.FailureReason == 0xC000 and other.ErrorComment.startswith("part 1: ")
        assert _submissions(engine) == []


class TestRequestErrors:
    def test_authentication_and_roles(self, served: Served, built: BuiltCase, tokens: dict[str, str]) -> None:
        files = [built.rtstruct_path]
        assert _post(served, "not-a-token", files).status_code == 401
        assert _post(served, tokens["commissioner"], files).status_code == 403
        staff = _post(served, tokens["staff"], files)
        assert staff.status_code == 422 and "provider" in staff.json()["detail"]
        assert _post(served, tokens["centre"], files, provider="leeds-teaching-hospitals").status_code == 403

    @pytest.mark.parametrize(
        ("content_type", "code", "words"),
        [
            ("multipart/form-data; boundary=x", 415, 'multipart/related; type="application/dicom"'),
            ('multipart/related; type="application/dicom+json"; boundary=x', 415, "one DICOM file per part"),
            ('multipart/related; type="application/dicom"', 400, "no multipart boundary"),
        ],
    )
    def test_media_types(
        self, served: Served, tokens: dict[str, str], content_type: str, code: int, words: str
    ) -> None:
        response = httpx.post(
            f"{served.base}{STUDIES}",
            content=b"--x--",
            headers={"Authorization": f"Bearer {tokens['centre']}", "Content-Type": content_type},
        )
        assert response.status_code == code and words in response.json()["detail"]

    def test_a_truncated_body_is_refused_and_leaves_nothing(
        self, served: Served, settings: Settings, engine: Engine, built: BuiltCase, tokens: dict[str, str]
    ) -> None:
        body = b"".join(_multipart([built.rtstruct_path], "b0undary"))[:-20]
        response = httpx.post(
            f"{served.base}{STUDIES}",
            content=body,
            headers={
                "Authorization": f"Bearer {tokens['centre']}",
                "Content-Type": 'multipart/related; type="application/dicom"; boundary=b0undary',
            },
        )
        assert response.status_code == 400 and "closing boundary" in response.json()["detail"]
        assert _submissions(engine) == [] and _leftovers(settings) == []

    def test_over_the_limit_is_refused_while_streaming(
        self, settings: Settings, engine: Engine, registered: int, built: BuiltCase, tokens: dict[str, str]
    ) -> None:
        limited = settings.model_copy(update={"max_upload_bytes": 50_000})
        with Served(create_app(limited, engine=engine)) as small:
            files = sorted(built.ct_dir.glob("*.dcm"))[:40]
            streamed = _post(small, tokens["centre"], files, chunked=True)
            declared = _post(small, tokens["centre"], files)
        for response in (streamed, declared):
            assert response.status_code == 413 and "RTQA_MAX_UPLOAD_BYTES" in response.json()["detail"]
        assert _submissions(engine) == [] and _leftovers(settings) == []


@pytest.fixture(scope="module")
def coarse_planning(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_coarse_lung(tmp_path_factory.mktemp("coarse"))


@pytest.mark.slow
def test_a_lone_beam_dose_of_a_planning_case_is_rejected_and_named(
    settings: Settings, engine: Engine, coarse_planning: BuiltCase, tokens: dict[str, str], tmp_path: Path
) -> None:
    """A planning benchmark may send one BEAM dose per beam (summed), so a BEAM dose is taken in; alone it is
    rejected by the validation, and the received summary names the beam without a dose."""
    with Session(engine) as session:
        lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        spec = coarse_planning.spec
        session.add(
            BenchmarkCase(
                case_code=spec.case_id,
                version=spec.version,
                title=spec.title,
                technique_id=lung.id or 0,
                stage=case_stage(spec),
                protocol_id="uk-lung-sabr",
                protocol_version="1.0",
                reference_sha256=coarse_planning.content_sha256,
                reference_path=str(coarse_planning.directory),
            )
        )
        register_protocol(session, load_protocol("uk-lung-sabr"), actor="tests")
        session.commit()
    sim = simulate_plan_submission(
        coarse_planning,
        provider=OWN,
        deviations=[PlanDeviation.parse("dose_scale_percent:0")],
        seed=0,
        out_dir=tmp_path / "p",
    )
    ds = pydicom.dcmread(sim.rtdose_path)
    ds.DoseSummationType = "BEAM"
    beam, group = Dataset(), Dataset()
    beam.ReferencedBeamNumber = 1
    group.ReferencedFractionGroupNumber = 1
    group.ReferencedBeamSequence = [beam]
    ds.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence = [group]
    ds.save_as(sim.rtdose_path)
    with Served(create_app(settings, engine=engine)) as served:
        response = served.client(tokens["centre"]).store_instances(_datasets(sim.directory))
        assert "FailedSOPSequence" not in response
        (sub,) = _submissions(engine)
        served.drain()
        headers = {"Authorization": f"Bearer {tokens['centre']}"}
        received = httpx.get(f"{served.base}/api/v1/submissions/{sub.id}/received", headers=headers).json()
    (sub,) = _submissions(engine)
    assert sub.status.value == "rejected" and "(3004,000A) DoseSummationType is 'BEAM'" in (sub.rejection_reason or "")
    assert sub.rejection_reason is not None and f"RTDOSE/{ds.SOPInstanceUID}.dcm" in sub.rejection_reason
    (missing,) = received["missing"]
    assert missing.startswith("RTDOSE: no BEAM dose for beam(s) [2] of the RTPLAN's treatment beams [1, 2]")
    assert (
        received["case"] == f"{coarse_planning.spec.case_id}@{coarse_planning.spec.version}"
        and CASE not in received["case"]
    )
