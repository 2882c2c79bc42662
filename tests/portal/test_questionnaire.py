"""The facility questionnaire stage through the API and the CLI: decided like any other stage, overridable, and
malformed answers refused with every problem named and nothing stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from benchmarks.questionnaires import example_answers
from models.enums import QAStage, SubmissionStatus
from models.settings import Settings
from models.tables import AuditEvent, BenchmarkCase, Credential, Submission
from portal.cli import app
from tests.portal.conftest import OTHER, OWN

URL = "/api/v1/questionnaires/sabr_lung"


def _post(client: TestClient, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = client.post(URL, json=body, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


def _stored(settings: Settings) -> list[Path]:
    root = settings.submissions_dir
    return sorted(p for p in root.rglob("answers.json")) if root.exists() else []


class TestApi:
    def test_form_is_served(self, client: TestClient, tokens: dict[str, str]) -> None:
        response = client.get(URL, headers={"Authorization": f"Bearer {tokens['centre']}"})
        assert response.status_code == 200
        ids = [q["id"] for q in response.json()["questions"]]
        assert "igrt_every_fraction" in ids and "dose_algorithm" in ids

    def test_centre_passes_then_resubmits_with_a_failing_answer(
        self, client: TestClient, tokens: dict[str, str], engine: Engine, settings: Settings
    ) -> None:
        answers = example_answers("sabr_lung")
        status, body = _post(client, tokens["centre"], {"answers": answers})
        assert status == 201, body
        assert (body["outcome"], body["attempt"], body["status"]) == ("per_protocol", 1, "decided")
        # The same answers again: the same submission, nothing new stored.
        again_status, again = _post(client, tokens["centre"], {"answers": answers})
        assert again_status == 200 and again["submission_id"] == body["submission_id"]
        status, failed = _post(client, tokens["centre"], {"answers": {**answers, "dose_algorithm": "pencil_beam"}})
        assert status == 201 and failed["attempt"] == 2
        assert failed["outcome"] == "unacceptable_variation"
        assert any("pencil beam" in r for r in failed["reasons"])
        with Session(engine) as session:
            case = session.exec(select(BenchmarkCase).where(BenchmarkCase.case_code == "questionnaire-sabr_lung")).one()
            assert case.stage is QAStage.FACILITY_QUESTIONNAIRE
            subs = session.exec(select(Submission).where(Submission.case_id == case.id)).all()
            assert [s.status for s in subs] == [SubmissionStatus.DECIDED, SubmissionStatus.DECIDED]
            actions = [e.action for e in session.exec(select(AuditEvent)).all()]
            assert actions.count("outcome.decided") == 2 and "case.registered" in actions
        assert len(_stored(settings)) == 2
        detail = client.get(failed["url"], headers={"Authorization": f"Bearer {tokens['centre']}"}).json()
        assert detail["stage"] == "facility_questionnaire"

    def test_stage_shows_in_the_credential(self, client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
        from benchmarks.protocols import load_protocol
        from flows.catalogue import register_protocol

        with Session(engine) as session:
            register_protocol(session, load_protocol("uk-lung-sabr"), actor="tests")
            session.commit()
        status, _ = _post(client, tokens["centre"], {"answers": example_answers("sabr_lung")})
        assert status == 201
        creds = client.get(
            f"/api/v1/providers/{OWN}/credentials", headers={"Authorization": f"Bearer {tokens['centre']}"}
        ).json()["credentials"]
        lung = next(c for c in creds if c["scope"] == "technique" and c["code"] == "sabr_lung")
        assert lung["status"] == "pending"
        stages = {s["stage"]: s["status"] for s in lung["stages"]}
        assert stages == {
            "facility_questionnaire": "passed",
            "outlining_benchmark": "missing",
            "planning_benchmark": "missing",
            "complex_treatment_dosimetry_check": "missing",
        }

    def test_malformed_answers_are_named_and_nothing_is_stored(
        self, client: TestClient, tokens: dict[str, str], engine: Engine, settings: Settings
    ) -> None:
        answers = {**example_answers("sabr_lung"), "mlc_leaf_width_mm": 30, "dose_algoritm": "acuros_xb"}
        status, body = _post(client, tokens["centre"], {"answers": answers})
        assert status == 422
        questions = {p["question"] for p in body["detail"]}
        assert questions == {"mlc_leaf_width_mm", "dose_algoritm"}
        with Session(engine) as session:
            assert session.exec(select(Submission)).all() == []
        assert _stored(settings) == []

    def test_who_may_submit(self, client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
        answers = example_answers("sabr_lung")
        assert _post(client, tokens["commissioner"], {"answers": answers})[0] == 403
        assert _post(client, tokens["centre"], {"answers": answers, "provider": OTHER})[0] == 403
        status, body = _post(client, tokens["staff"], {"answers": answers})
        assert status == 422 and "provider" in body["detail"]
        assert _post(client, tokens["staff"], {"answers": answers, "provider": "nowhere"})[0] == 404
        status, body = _post(client, tokens["staff"], {"answers": answers, "provider": OTHER})
        assert status == 201
        with Session(engine) as session:
            sub = session.get(Submission, body["submission_id"])
            assert sub is not None and sub.submitted_by == "qa@rttqa.test"

    def test_unknown_technique_is_404(self, client: TestClient, tokens: dict[str, str]) -> None:
        response = client.get(
            "/api/v1/questionnaires/sabr_knee", headers={"Authorization": f"Bearer {tokens['staff']}"}
        )
        assert response.status_code == 404 and "known techniques" in response.json()["detail"]

    def test_staff_override_reevaluates(self, client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
        answers = {**example_answers("sabr_lung"), "dose_algorithm": "pencil_beam"}
        _, body = _post(client, tokens["centre"], {"answers": answers})
        response = client.post(
            f"/api/v1/submissions/{body['submission_id']}/override",
            json={"level": "justified_variation", "justification": "pencil beam used only for a phantom audit"},
            headers={"Authorization": f"Bearer {tokens['staff']}"},
        )
        assert response.status_code == 201
        assert [o["level"] for o in response.json()["outcomes"]] == ["unacceptable_variation", "justified_variation"]
        with Session(engine) as session:
            assert session.exec(select(Credential)).first() is not None


class TestCli:
    def test_submit_and_show(
        self, settings: Settings, db_url: str, tmp_path: Path, monkeypatch: Any, cli_staff: str
    ) -> None:
        monkeypatch.setenv("RTQA_DATABASE_URL", db_url)
        monkeypatch.setenv("RTQA_DATA_DIR", str(settings.data_dir))
        runner = CliRunner()
        init = runner.invoke(app, ["db", "init"])
        assert init.exit_code == 0 and "QA stages required by 5 protocols" in init.output, init.output
        shown = runner.invoke(app, ["questionnaire", "show", "sabr_lung"])
        assert shown.exit_code == 0 and "igrt_every_fraction" in shown.output
        good = tmp_path / "answers.json"
        good.write_text(json.dumps(example_answers("sabr_lung")))
        done = runner.invoke(app, ["questionnaire", "submit", "--provider", OWN, "--technique", "sabr_lung", str(good)])
        assert done.exit_code == 0, done.output
        assert "attempt 1): per protocol" in done.output
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**example_answers("sabr_lung"), "patients_per_year": "many"}))
        refused = runner.invoke(
            app, ["questionnaire", "submit", "--provider", OWN, "--technique", "sabr_lung", str(bad)]
        )
        assert refused.exit_code == 2
        assert "patients_per_year" in refused.output and "Traceback" not in refused.output
        broken = tmp_path / "broken.json"
        broken.write_text("{not json")
        refused = runner.invoke(
            app, ["questionnaire", "submit", "--provider", OWN, "--technique", "sabr_lung", str(broken)]
        )
        assert refused.exit_code == 2 and "not valid JSON at line 1" in refused.output
        table = runner.invoke(app, ["credentials", "--provider", OWN])
        assert table.exit_code == 0, table.output
        assert "facility questionnaire" in table.output and "planning benchmark" in table.output
        unknown = runner.invoke(app, ["credentials", "--provider", "nowhere"])
        assert unknown.exit_code == 2 and "no provider with code 'nowhere'" in unknown.output
