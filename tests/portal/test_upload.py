"""Uploading benchmark submissions over the API: zip or files, 202 at once, the runner finishes them.

The expected outcomes come from the simulator's oracle (independent of the qa_checks metrics).
"""

from __future__ import annotations

import io
import re
import shutil
import stat
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import BuiltCase, build_case
from benchmarks.simulator import Deviation, SimulatedSubmission, simulate_submission
from flows.catalogue import build_reference, register_case
from flows.credentialing import store_submission
from flows.runner import DEPLOYMENT, SubmissionRunner
from models.auth import issue_token
from models.enums import Role
from models.settings import Settings
from models.tables import AuditEvent, Provider, Submission, User
from portal.app import create_app
from tests.portal.conftest import OTHER, OWN

CASE = "lung-sabr-outlining-mini"
URL = "/api/v1/submissions"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    """The case's reference files, built once for the module."""
    return build_case(CASE, tmp_path_factory.mktemp("cases"))


@pytest.fixture
def registered(settings: Settings, built: BuiltCase) -> int:
    reference = build_reference.fn(CASE, str(built.directory.parent))
    return register_case.fn(reference, actor="tests", database_url=settings.resolved_database_url)


@pytest.fixture
def other_centre(engine: Engine, tokens: dict[str, str]) -> str:
    """A token of a centre user of another provider."""
    with Session(engine) as session:
        other = session.exec(select(Provider).where(Provider.code == OTHER)).one()
        user = User(email="phys@leeds.test", name="Leeds", role=Role.CENTRE, provider_id=other.id)
        session.add(user)
        session.flush()
        token = issue_token(session, user=user, actor="tests")
        session.commit()
    return token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _simulate(built: BuiltCase, tmp: Path, name: str, *deviations: str, seed: int = 0) -> SimulatedSubmission:
    return simulate_submission(
        built, provider=OWN, deviations=[Deviation.parse(d) for d in deviations], seed=seed, out_dir=tmp / name
    )


def _zip(directory: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The folder as a zip (names relative to it), plus ``extra`` entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(directory).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _upload_zip(client: TestClient, token: str, data: bytes, **form: str) -> Any:
    return client.post(
        URL, headers=_auth(token), data={"case": CASE, **form}, files={"archive": ("sub.zip", data, "application/zip")}
    )


def _upload_files(client: TestClient, token: str, directory: Path, **form: str) -> Any:
    parts = [
        ("files", (path.relative_to(directory).as_posix(), path.read_bytes(), "application/dicom"))
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    ]
    return client.post(URL, headers=_auth(token), data={"case": CASE, **form}, files=parts)


def _leftovers(settings: Settings) -> list[Path]:
    """Every file or folder left under the submission store and the upload area."""
    roots = [settings.submissions_dir, settings.uploads_dir]
    return sorted(p for root in roots if root.exists() for p in root.rglob("*"))


def _submissions(engine: Engine) -> list[Submission]:
    with Session(engine) as session:
        return list(session.exec(select(Submission)).all())


class TestUpload:
    def test_zip_is_accepted_at_once_and_decided_by_the_runner(
        self, client: TestClient, tokens: dict[str, str], registered: int, built: BuiltCase, tmp_path: Path
    ) -> None:
        far = _simulate(built, tmp_path, "far", "margin_mm:PTV:8", "shift_mm:GTV:0,0,10")
        assert far.expected_outcome.value == "unacceptable_variation"
        response = _upload_zip(client, tokens["centre"], _zip(far.directory))
        assert response.status_code == 202, response.text
        body = response.json()
        sid = body["submission_id"]
        assert body["status"] == "received" and body["status_url"] == f"{URL}/{sid}" and body["warnings"] == []
        # Nothing ran yet: the steps run after the answer.
        assert client.get(body["status_url"], headers=_auth(tokens["centre"])).json()["status"] == "received"

        assert client.app.state.runner.drain() == [sid]  # type: ignore[attr-defined]
        detail = client.get(body["status_url"], headers=_auth(tokens["centre"])).json()
        assert detail["status"] == "decided" and detail["provider"] == OWN
        assert detail["outcomes"][0]["level"] == far.expected_outcome.value

    def test_files_are_accepted_and_decided(
        self, client: TestClient, tokens: dict[str, str], registered: int, built: BuiltCase, tmp_path: Path
    ) -> None:
        close = _simulate(built, tmp_path, "close", "margin_mm:PTV:1", "rename:SpinalCord:Cord")
        assert close.expected_outcome.value != "unacceptable_variation"
        response = _upload_files(client, tokens["centre"], close.directory)
        assert response.status_code == 202, response.text
        sid = response.json()["submission_id"]
        client.app.state.runner.drain()  # type: ignore[attr-defined]
        detail = client.get(f"{URL}/{sid}", headers=_auth(tokens["centre"])).json()
        assert detail["status"] == "decided"
        assert detail["outcomes"][0]["level"] == close.expected_outcome.value

    def test_the_same_zip_again_is_already_received(
        self,
        client: TestClient,
        engine: Engine,
        settings: Settings,
        tokens: dict[str, str],
        registered: int,
        built: BuiltCase,
        tmp_path: Path,
    ) -> None:
        data = _zip(_simulate(built, tmp_path, "a", "margin_mm:PTV:1").directory)
        first = _upload_zip(client, tokens["centre"], data)
        again = _upload_zip(client, tokens["staff"], data, provider=OWN)
        assert (first.status_code, again.status_code) == (202, 200)
        sid = first.json()["submission_id"]
        assert again.json()["submission_id"] == sid
        assert f"already received as submission {sid}" in again.json()["message"]
        assert len(_submissions(engine)) == 1
        assert [p for p in _leftovers(settings) if len(p.name) == 64] != []
        assert not any(p.name.startswith(".upload-") for p in _leftovers(settings))

    def test_stray_files_are_removed_with_a_warning(
        self, client: TestClient, tokens: dict[str, str], registered: int, built: BuiltCase, tmp_path: Path
    ) -> None:
        sim = _simulate(built, tmp_path, "s", "margin_mm:PTV:1")
        extra = {
            "notes.txt": b"plan notes",
            ".DS_Store": b"\0\0\0\1Bud1",
            "__MACOSX/CT/._ct_0001.dcm": b"\0\5\26\7",
            "DICOMDIR": b"not read",
        }
        response = _upload_zip(client, tokens["centre"], _zip(sim.directory, extra))
        assert response.status_code == 202, response.text
        warnings = response.json()["warnings"]
        assert [w.split(":")[0] for w in warnings] == [
            ".DS_Store",
            "DICOMDIR",
            "__MACOSX/CT/._ct_0001.dcm",
            "notes.txt",
        ]
        assert "notes.txt: not a DICOM file; ignored" in warnings
        sid = response.json()["submission_id"]
        client.app.state.runner.drain()  # type: ignore[attr-defined]
        detail = client.get(f"{URL}/{sid}", headers=_auth(tokens["centre"])).json()
        assert detail["status"] == "decided" and detail["outcomes"][0]["level"] == sim.expected_outcome.value

    def test_an_upload_of_only_stray_files_is_refused(
        self, client: TestClient, settings: Settings, engine: Engine, tokens: dict[str, str], registered: int
    ) -> None:
        response = _upload_zip(client, tokens["centre"], _zip(Path("/nonexistent"), {"notes.txt": b"x"}))
        assert response.status_code == 422
        assert "no DICOM files" in response.json()["detail"] and "notes.txt" in response.json()["detail"]
        assert _submissions(engine) == [] and _leftovers(settings) == []

    def test_rejection_reason_names_files_relative_to_the_upload(
        self,
        client: TestClient,
        settings: Settings,
        tokens: dict[str, str],
        registered: int,
        built: BuiltCase,
        tmp_path: Path,
    ) -> None:
        sim = _simulate(built, tmp_path, "two", "margin_mm:PTV:1")
        rtstruct = sim.rtstruct_path.read_bytes()
        response = _upload_zip(client, tokens["centre"], _zip(sim.directory, {"extra/second_rs.dcm": rtstruct}))
        sid = response.json()["submission_id"]
        client.app.state.runner.drain()  # type: ignore[attr-defined]
        detail = client.get(f"{URL}/{sid}", headers=_auth(tokens["centre"])).json()
        reason = detail["rejection_reason"]
        assert detail["status"] == "rejected" and "2 RTSTRUCT files" in reason
        assert "extra/second_rs.dcm" in reason and sim.rtstruct_path.name in reason
        assert str(settings.data_dir.resolve()) not in reason and "submissions/" not in reason

    def test_commissioner_cannot_upload(
        self, client: TestClient, engine: Engine, tokens: dict[str, str], registered: int
    ) -> None:
        response = _upload_zip(client, tokens["commissioner"], b"PK", provider=OWN)
        assert response.status_code == 403 and "commissioners" in response.json()["detail"]

    def test_centre_cannot_upload_for_another_provider(
        self, client: TestClient, tokens: dict[str, str], registered: int
    ) -> None:
        response = _upload_zip(client, tokens["centre"], b"PK", provider=OTHER)
        assert response.status_code == 403

    def test_staff_must_name_the_provider_and_the_case_must_exist(
        self, client: TestClient, settings: Settings, tokens: dict[str, str], registered: int, built: BuiltCase
    ) -> None:
        data = _zip(built.directory / "dicom" / "CT")
        assert _upload_zip(client, tokens["staff"], data).status_code == 422
        unknown = client.post(
            URL,
            headers=_auth(tokens["centre"]),
            data={"case": "no-such-case"},
            files={"archive": ("a.zip", data, "application/zip")},
        )
        assert unknown.status_code == 422 and "unknown benchmark case 'no-such-case'" in unknown.json()["detail"]
        assert _leftovers(settings) == []

    def test_archive_and_files_together_are_refused(
        self, client: TestClient, tokens: dict[str, str], registered: int
    ) -> None:
        response = client.post(
            URL,
            headers=_auth(tokens["centre"]),
            data={"case": CASE},
            files=[("archive", ("a.zip", b"PK", "application/zip")), ("files", ("x.dcm", b"x", "application/dicom"))],
        )
        assert response.status_code == 422 and "either one zip" in response.json()["detail"]


def _zip_entries(*entries: tuple[zipfile.ZipInfo | str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buffer.getvalue()


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


class TestUnsafeArchives:
    @pytest.mark.parametrize(
        ("entries", "code", "names"),
        [
            ((("CT/ct.dcm", b"x"), ("../../evil.dcm", b"x")), 422, "'../../evil.dcm'"),
            ((("/etc/cron.d/evil", b"x"),), 422, "'/etc/cron.d/evil': absolute paths"),
            ((("C:\\evil.dcm", b"x"),), 422, "'C:\\\\evil.dcm': absolute paths"),
            ((_symlink("CT/link.dcm", "/etc/passwd"),), 422, "'CT/link.dcm': symbolic links"),
            (tuple((f"f{i}.dcm", b"x") for i in range(6)), 413, "6 entries, more than the limit of 5"),
            ((("zeros.dcm", bytes(2_000_000)),), 413, "'zeros.dcm': expands"),
            ((("a.dcm", b"1"), ("./a.dcm", b"2")), 422, "'./a.dcm': the archive holds two entries"),
        ],
        ids=["traversal", "absolute", "drive", "symlink", "too-many-files", "ratio", "duplicate"],
    )
    def test_refused_naming_the_entry_and_leaving_nothing(
        self,
        settings: Settings,
        engine: Engine,
        tokens: dict[str, str],
        registered: int,
        entries: tuple[tuple[zipfile.ZipInfo | str, bytes], ...],
        code: int,
        names: str,
    ) -> None:
        limited = settings.model_copy(update={"max_archive_files": 5})
        with TestClient(create_app(limited, engine=engine)) as client:
            response = _upload_zip(client, tokens["centre"], _zip_entries(*entries))
        assert response.status_code == code, response.text
        assert names in response.json()["detail"]
        assert _submissions(engine) == [] and _leftovers(settings) == []

    def test_over_the_uncompressed_total_is_refused(
        self, settings: Settings, engine: Engine, tokens: dict[str, str], registered: int
    ) -> None:
        limited = settings.model_copy(update={"max_uncompressed_bytes": 1000})
        data = _zip_entries(*((f"f{i}.dcm", bytes(range(256)) * 2) for i in range(3)))
        with TestClient(create_app(limited, engine=engine)) as client:
            response = _upload_zip(client, tokens["centre"], data)
        assert response.status_code == 413 and "expands to 1536 bytes" in response.json()["detail"]
        assert _leftovers(settings) == []

    def test_over_the_upload_limit_is_refused(
        self,
        settings: Settings,
        engine: Engine,
        tokens: dict[str, str],
        registered: int,
        built: BuiltCase,
        tmp_path: Path,
    ) -> None:
        (tmp_path / "few" / "CT").mkdir(parents=True)
        for path in sorted((built.directory / "dicom" / "CT").iterdir())[:3]:  # about 80 kB in all
            shutil.copy(path, tmp_path / "few" / "CT" / path.name)
        limited = settings.model_copy(update={"max_upload_bytes": 10_000})
        with TestClient(create_app(limited, engine=engine)) as client:
            response = _upload_files(client, tokens["centre"], tmp_path / "few")
        assert response.status_code == 413 and "RTQA_MAX_UPLOAD_BYTES" in response.json()["detail"]
        # Under the declared-length allowance: refused while streaming, naming the file that went over.
        assert re.match(r"CT/CT\.\d{4}\.dcm: the upload is larger than the limit of 10000", response.json()["detail"])
        assert _submissions(engine) == [] and _leftovers(settings) == []

    def test_a_declared_length_over_the_limit_is_refused_before_reading(
        self, settings: Settings, engine: Engine, tokens: dict[str, str], registered: int
    ) -> None:
        limited = settings.model_copy(update={"max_upload_bytes": 1})
        with TestClient(create_app(limited, engine=engine)) as client:
            response = _upload_zip(client, tokens["centre"], bytes(2 << 20))
        assert response.status_code == 413
        assert response.json()["detail"].startswith("the upload is 2097") and "limit of 1 bytes" in response.text
        assert _leftovers(settings) == []

    def test_file_names_that_leave_the_upload_are_refused(
        self, client: TestClient, settings: Settings, tokens: dict[str, str], registered: int
    ) -> None:
        response = client.post(
            URL,
            headers=_auth(tokens["centre"]),
            data={"case": CASE},
            files=[("files", ("../outside.dcm", b"x", "application/dicom"))],
        )
        assert response.status_code == 422 and "'../outside.dcm'" in response.json()["detail"]
        assert _leftovers(settings) == []


class TestListAndVisibility:
    @pytest.fixture
    def two(
        self, client: TestClient, tokens: dict[str, str], registered: int, built: BuiltCase, tmp_path: Path
    ) -> list[int]:
        """Two submissions of the centre's provider, the first decided, the second still received."""
        first = _upload_zip(
            client, tokens["centre"], _zip(_simulate(built, tmp_path, "1", "margin_mm:PTV:1").directory)
        )
        client.app.state.runner.drain()  # type: ignore[attr-defined]
        second = _upload_zip(
            client, tokens["centre"], _zip(_simulate(built, tmp_path, "2", "margin_mm:PTV:2", seed=1).directory)
        )
        return [first.json()["submission_id"], second.json()["submission_id"]]

    def _ids(self, client: TestClient, token: str, **query: Any) -> list[int]:
        response = client.get(URL, headers=_auth(token), params=query)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    def test_another_centre_sees_nothing(
        self, client: TestClient, tokens: dict[str, str], other_centre: str, two: list[int]
    ) -> None:
        assert client.get(f"{URL}/{two[0]}", headers=_auth(other_centre)).status_code == 403
        assert self._ids(client, other_centre) == []
        assert client.get(URL, headers=_auth(other_centre), params={"provider": OWN}).status_code == 403

    def test_list_is_newest_first_with_filters_and_pages(
        self, client: TestClient, tokens: dict[str, str], two: list[int]
    ) -> None:
        first, second = two
        staff = tokens["staff"]
        response = client.get(URL, headers=_auth(tokens["centre"]))
        body = response.json()
        assert body["total"] == 2 and [i["id"] for i in body["items"]] == [second, first]
        item = body["items"][1]
        assert item["provider"] == OWN and item["case"] == f"{CASE}@1.0" and item["stage"] == "outlining_benchmark"
        assert item["attempt"] == 1 and item["status"] == "decided" and item["outcome"] is not None
        assert item["status_url"] == f"{URL}/{first}" and item["received_at"]
        assert body["items"][0]["outcome"] is None and body["items"][0]["attempt"] == 2
        assert self._ids(client, staff, status="received") == [second]
        assert self._ids(client, staff, status="decided", provider=OWN) == [first]
        assert self._ids(client, staff, provider=OTHER) == []
        assert self._ids(client, staff, stage="outlining_benchmark", case=CASE) == [second, first]
        assert self._ids(client, staff, stage="planning_benchmark") == []
        assert self._ids(client, staff, case="lung-sabr-planning") == []
        assert self._ids(client, tokens["commissioner"], limit=1, offset=1) == [first]
        assert client.get(URL, headers=_auth(staff), params={"status": "lost"}).status_code == 422


class TestRunner:
    def test_drain_runs_oldest_first(
        self, client: TestClient, tokens: dict[str, str], registered: int, built: BuiltCase, tmp_path: Path
    ) -> None:
        ids = [
            _upload_zip(
                client, tokens["centre"], _zip(_simulate(built, tmp_path, n, f"margin_mm:PTV:{n}").directory)
            ).json()["submission_id"]
            for n in ("1", "2")
        ]
        assert client.app.state.runner.drain() == ids  # type: ignore[attr-defined]
        assert client.app.state.runner.drain() == []  # type: ignore[attr-defined]

    def test_a_restart_finishes_what_was_left_received(
        self,
        settings: Settings,
        engine: Engine,
        tokens: dict[str, str],
        registered: int,
        built: BuiltCase,
        tmp_path: Path,
    ) -> None:
        sim = _simulate(built, tmp_path, "r", "margin_mm:PTV:1")
        with TestClient(create_app(settings, engine=engine)) as client:  # runner off: the service stops first
            sid = _upload_zip(client, tokens["centre"], _zip(sim.directory)).json()["submission_id"]
        assert [s.status.value for s in _submissions(engine)] == ["received"]

        restarted = settings.model_copy(update={"run_submissions": True})
        with TestClient(create_app(restarted, engine=engine)) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                detail = client.get(f"{URL}/{sid}", headers=_auth(tokens["centre"])).json()
                if detail["status"] not in ("received", "validated", "scored"):
                    break
                time.sleep(0.2)
        assert detail["status"] == "decided" and detail["outcomes"][0]["level"] == sim.expected_outcome.value
        with Session(engine) as session:
            actors = {
                e.actor
                for e in session.exec(
                    select(AuditEvent).where(AuditEvent.subject_id == str(sid), AuditEvent.subject_type == "submission")
                ).all()
            }
        assert actors == {"phys@christie.test", "rtqa-runner"}


class TestPrefectDispatch:
    def test_unfinished_and_new_submissions_start_the_deployment_once_each(
        self,
        client: TestClient,
        settings: Settings,
        tokens: dict[str, str],
        registered: int,
        built: BuiltCase,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import prefect.deployments

        calls: list[tuple[str, dict[str, Any]]] = []
        monkeypatch.setattr(prefect.deployments, "run_deployment", lambda name, **kw: calls.append((name, kw)))
        sid = _upload_zip(client, tokens["centre"], _zip(_simulate(built, tmp_path, "p", "margin_mm:PTV:1").directory))
        sid = sid.json()["submission_id"]
        runner = SubmissionRunner(settings, use_prefect=True)
        runner.notify(sid)
        assert calls == []  # not started: nothing is dispatched
        runner.start()
        runner.notify(sid)
        assert DEPLOYMENT == "credential-submission/credential-submission"  # prefect.yaml: flow name/deployment
        assert [name for name, _ in calls] == [DEPLOYMENT, DEPLOYMENT]
        kwargs = calls[0][1]
        assert kwargs["timeout"] == 0 and kwargs["idempotency_key"] == calls[1][1]["idempotency_key"]
        params = kwargs["parameters"]
        assert (params["provider_code"], params["case_code"], params["case_version"]) == (OWN, CASE, "1.0")
        # The deployment's flow ingests the stored folder again: it finds this submission, not a new one.
        again = store_submission(
            params["source_dir"],
            provider_code=OWN,
            case_code=CASE,
            case_version="1.0",
            actor="tests",
            database_url=settings.resolved_database_url,
            data_dir=str(settings.data_dir),
        )
        assert (again.submission_id, again.created) == (sid, False)
