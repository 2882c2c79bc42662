"""The credential endpoint's authentication and authorisation."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.auth import hash_token
from models.tables import ApiToken, Provider, User
from models.types import utcnow
from tests.portal.conftest import OTHER, OWN


def _get(client: TestClient, path: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get(path, headers=headers)
    return response.status_code, response.json()


URL = "/api/v1/providers/{}/credentials"


def test_no_token_is_401(client: TestClient) -> None:
    response = client.get(URL.format(OWN))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing bearer token" in response.json()["detail"]


def test_unknown_token_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    status, body = _get(client, URL.format(OWN), "rtqa_not-a-real-token")
    assert status == 401 and "invalid" in str(body["detail"])


def test_expired_token_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    assert _get(client, URL.format(OWN), tokens["expired"])[0] == 401


def test_revoked_token_is_401(client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
    with Session(engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == hash_token(tokens["staff"]))).one()
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
    assert _get(client, URL.format(OWN), tokens["staff"])[0] == 401


def test_centre_reading_another_provider_is_403(client: TestClient, tokens: dict[str, str]) -> None:
    status, body = _get(client, URL.format(OTHER), tokens["centre"])
    assert status == 403 and OTHER in str(body["detail"])


def test_centre_reading_an_unknown_provider_is_403_not_404(client: TestClient, tokens: dict[str, str]) -> None:
    # A centre learns nothing about which provider codes exist.
    assert _get(client, URL.format("no-such-trust"), tokens["centre"])[0] == 403


def test_centre_reading_its_own_provider_is_200(client: TestClient, tokens: dict[str, str]) -> None:
    status, body = _get(client, URL.format(OWN), tokens["centre"])
    assert status == 200
    assert body["provider"] == {
        "code": OWN,
        "name": "The Christie NHS Foundation Trust",
        "ods_code": None,
        "network": {
            "code": "north-west",
            "name": "Lancashire and South Cumbria, Greater Manchester, Cheshire and Merseyside",
        },
    }
    assert body["credentials"] == []


@pytest.mark.parametrize("role", ["commissioner", "staff"])
def test_commissioner_and_staff_read_any_provider(client: TestClient, tokens: dict[str, str], role: str) -> None:
    status, body = _get(client, URL.format(OTHER), tokens[role])
    assert status == 200
    assert body["provider"]["code"] == OTHER  # type: ignore[index]


def test_unknown_provider_is_404_for_commissioner(client: TestClient, tokens: dict[str, str]) -> None:
    status, body = _get(client, URL.format("no-such-trust"), tokens["commissioner"])
    assert status == 404 and "no-such-trust" in str(body["detail"])


def test_a_signed_in_page_session_reads_credentials_without_a_bearer(
    client: TestClient, tokens: dict[str, str]
) -> None:
    r = client.post("/sign-in", data={"token": tokens["centre"]}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get(URL.format(OWN)).status_code == 200
    assert client.get(URL.format(OTHER)).status_code == 403
    # A bearer token, when sent, decides alone: a bad one is refused even with a good session cookie.
    r = client.get(URL.format(OWN), headers={"Authorization": "Bearer rtqa_not-a-real-token"})
    assert r.status_code == 401 and "invalid" in r.json()["detail"]


def test_credentials_body_has_the_documented_shape(client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
    from datetime import timedelta

    from models.enums import CredentialStatus
    from models.tables import Credential, Technique
    from portal.api_credential_status import CredentialState, ProviderCredentials

    with Session(engine) as session:
        provider = session.exec(select(Provider).where(Provider.code == OWN)).one()
        technique = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
        now = utcnow()
        evidence = {"stages": [{"stage": "outlining_benchmark"}], "outstanding": []}
        session.add(
            Credential(
                provider_id=provider.id or 0,
                technique_id=technique.id,
                status=CredentialStatus.CREDENTIALED,
                granted_at=now,
                valid_until=now + timedelta(days=30),
                evidence=evidence,
            )
        )
        session.commit()
    response = client.get(URL.format(OWN), headers={"Authorization": f"Bearer {tokens['staff']}"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    ProviderCredentials.model_validate(body)
    (credential,) = body["credentials"]
    assert set(credential) == set(CredentialState.model_fields)
    assert credential["valid_until"] == (now + timedelta(days=30)).isoformat()
    assert (credential["stages"], credential["evidence"]) == (evidence["stages"], evidence)
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/providers/{provider_code}/credentials"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ProviderCredentials"}
    assert operation["security"] == [{"HTTPBearer": []}]
    assert client.get("/openapi.json").json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_reading_credentials_records_the_tokens_last_use(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    def last_used() -> object:
        with Session(engine) as session:
            query = select(ApiToken.last_used_at).where(ApiToken.token_sha256 == hash_token(tokens["staff"]))
            return session.exec(query).one()

    assert last_used() is None
    assert _get(client, URL.format(OWN), tokens["staff"])[0] == 200
    first = last_used()
    assert first is not None  # written (and committed) by the read-only route
    assert _get(client, URL.format(OTHER), tokens["staff"])[0] == 200
    assert last_used() == first  # at most once a minute


def test_token_is_stored_only_as_hash(engine: Engine, tokens: dict[str, str]) -> None:
    with Session(engine) as session:
        stored = [row.token_sha256 for row in session.exec(select(ApiToken)).all()]
    assert hash_token(tokens["staff"]) in stored
    assert all(token not in stored for token in tokens.values())


def test_provider_list_is_scoped_for_centres(client: TestClient, tokens: dict[str, str]) -> None:
    assert len(client.get("/api/v1/providers", headers={"Authorization": f"Bearer {tokens['staff']}"}).json()) == 52
    own = client.get("/api/v1/providers", headers={"Authorization": f"Bearer {tokens['centre']}"}).json()
    assert [p["code"] for p in own] == [OWN]


class TestCommissionerQueries:
    """Who may recruit to a trial, and what expires soon."""

    @pytest.fixture
    def credentialed(self, engine: Engine) -> None:
        from datetime import UTC, datetime

        from models.credentials import apply_outcome
        from models.enums import OutcomeLevel, OutcomeSource, QAStage, SubmissionStatus
        from models.stages import register_stage_requirements
        from models.tables import BenchmarkCase, Outcome, Submission, Technique, Trial, TrialRequirement

        with Session(engine) as session:
            lung = session.exec(select(Technique).where(Technique.code == "sabr_lung")).one()
            trial = Trial(code="LUNG-1", title="Lung SABR trial")
            session.add(trial)
            case = BenchmarkCase(
                case_code="c",
                version="1",
                title="t",
                technique_id=lung.id or 0,
                stage=QAStage.OUTLINING_BENCHMARK,
                protocol_id="p",
                protocol_version="1",
                reference_sha256="0" * 64,
                reference_path="/x",
            )
            session.add(case)
            session.flush()
            session.add(TrialRequirement(trial_id=trial.id or 0, technique_id=lung.id or 0))
            # A protocol requiring only the outlining benchmark: one passing case credentials.
            register_stage_requirements(
                session, protocol_id="p", requirements=[("outlining_benchmark", "sabr_lung", "")], actor="t"
            )
            for i, (code, level) in enumerate(
                [(OWN, OutcomeLevel.PER_PROTOCOL), (OTHER, OutcomeLevel.UNACCEPTABLE_VARIATION)]
            ):
                provider = session.exec(select(Provider).where(Provider.code == code)).one()
                sub = Submission(
                    provider_id=provider.id or 0,
                    case_id=case.id or 0,
                    attempt=1,
                    content_sha256=f"{i:064d}",
                    status=SubmissionStatus.DECIDED,
                    storage_path="/x",
                    submitted_by="t",
                )
                session.add(sub)
                session.flush()
                session.add(
                    Outcome(
                        submission_id=sub.id or 0,
                        level=level,
                        source=OutcomeSource.AUTOMATIC,
                        decided_by="t",
                        protocol_id="p",
                        protocol_version="1",
                    )
                )
                session.flush()
                # Granted now, valid 30 days: inside the default 60-day expiry window.
                apply_outcome(session, submission_id=sub.id or 0, actor="t", validity_days=30, now=datetime.now(UTC))
            session.commit()

    def test_eligible_providers(self, client: TestClient, tokens: dict[str, str], credentialed: None) -> None:
        status, body = _get(client, "/api/v1/trials/LUNG-1/eligible-providers", tokens["commissioner"])
        assert status == 200
        assert body["trial"] == {
            "code": "LUNG-1",
            "title": "Lung SABR trial",
            "protocol": None,
            "requires": ["sabr_lung"],
        }
        assert [p["provider"] for p in body["providers"]] == [OWN]  # type: ignore[index, union-attr]

    def test_unknown_trial_is_404(self, client: TestClient, tokens: dict[str, str]) -> None:
        status, body = _get(client, "/api/v1/trials/NOPE/eligible-providers", tokens["staff"])
        assert status == 404 and "NOPE" in str(body["detail"])

    def test_centre_may_not_list_eligibility(self, client: TestClient, tokens: dict[str, str]) -> None:
        assert _get(client, "/api/v1/trials/LUNG-1/eligible-providers", tokens["centre"])[0] == 403
        assert _get(client, "/api/v1/credentials/expiring", tokens["centre"])[0] == 403

    def test_expiring(self, client: TestClient, tokens: dict[str, str], credentialed: None) -> None:
        response = client.get("/api/v1/credentials/expiring", headers={"Authorization": f"Bearer {tokens['staff']}"})
        assert response.status_code == 200
        assert {(c["provider"], c["scope"], c["code"]) for c in response.json()} == {
            (OWN, "technique", "sabr_lung"),
            (OWN, "trial", "LUNG-1"),
        }
        narrow = client.get(
            "/api/v1/credentials/expiring?within_days=10", headers={"Authorization": f"Bearer {tokens['staff']}"}
        )
        assert narrow.json() == []

    def test_negative_window_is_422_naming_the_parameter(self, client: TestClient, tokens: dict[str, str]) -> None:
        response = client.get(
            "/api/v1/credentials/expiring?within_days=-1", headers={"Authorization": f"Bearer {tokens['staff']}"}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "within_days"]


class TestReview:
    """QA staff read a submission and override its outcome; others may not override."""

    @pytest.fixture
    def submission_id(self, engine: Engine) -> int:
        from models.credentials import apply_outcome
        from models.enums import OutcomeLevel, QAStage
        from tests.models.world import World

        with Session(engine) as session:
            world = World(session)
            world.decided(OutcomeLevel.PER_PROTOCOL, QAStage.PLANNING_BENCHMARK)
            sid = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
            apply_outcome(session, submission_id=sid, actor="flow", validity_days=3650)
            session.commit()
        return sid

    def _override(self, client: TestClient, token: str, sid: int, body: dict[str, str]) -> tuple[int, Any]:
        response = client.post(
            f"/api/v1/submissions/{sid}/override", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code, response.json()

    def test_staff_override(self, client: TestClient, tokens: dict[str, str], submission_id: int) -> None:
        status, body = self._override(
            client,
            tokens["staff"],
            submission_id,
            {"level": "justified_variation", "justification": "local ITV policy, agreed with the trial team"},
        )
        assert status == 201
        assert [(o["level"], o["source"], o["current"]) for o in body["outcomes"]] == [
            ("unacceptable_variation", "automatic", False),
            ("justified_variation", "override", True),
        ]
        assert body["outcomes"][1]["decided_by"] == "qa@rttqa.test"
        # The credential follows the override.
        _, creds = _get(client, URL.format(OWN), tokens["commissioner"])
        assert [c["status"] for c in creds["credentials"] if c["scope"] == "technique"] == ["credentialed"]  # type: ignore[union-attr, index]

    @pytest.mark.parametrize("role", ["commissioner", "centre"])
    def test_only_staff_may_override(
        self, client: TestClient, tokens: dict[str, str], submission_id: int, role: str
    ) -> None:
        status, body = self._override(
            client, tokens[role], submission_id, {"level": "per_protocol", "justification": "because"}
        )
        assert status == 403 and "only QA staff" in body["detail"]

    def test_blank_justification_is_422(self, client: TestClient, tokens: dict[str, str], submission_id: int) -> None:
        status, body = self._override(
            client, tokens["staff"], submission_id, {"level": "per_protocol", "justification": "  "}
        )
        assert status == 422 and body["detail"][0]["loc"] == ["body", "justification"]

    def test_unknown_level_is_422(self, client: TestClient, tokens: dict[str, str], submission_id: int) -> None:
        status, body = self._override(client, tokens["staff"], submission_id, {"level": "fine", "justification": "x"})
        assert status == 422 and body["detail"][0]["loc"] == ["body", "level"]

    def test_unknown_submission_is_404(self, client: TestClient, tokens: dict[str, str]) -> None:
        status, body = self._override(client, tokens["staff"], 999999, {"level": "per_protocol", "justification": "x"})
        assert status == 404 and "999999" in body["detail"]

    def test_submission_detail_scoped_for_centres(
        self, client: TestClient, tokens: dict[str, str], submission_id: int, engine: Engine
    ) -> None:
        status, body = _get(client, f"/api/v1/submissions/{submission_id}", tokens["centre"])
        assert status == 200 and body["provider"] == OWN and body["status"] == "decided"
        with Session(engine) as session:
            other = session.exec(select(Provider).where(Provider.code == OTHER)).one()
            mine = session.exec(select(User).where(User.email == "phys@christie.test")).one()
            mine.provider_id = other.id
            session.add(mine)
            session.commit()
        assert _get(client, f"/api/v1/submissions/{submission_id}", tokens["centre"])[0] == 403
