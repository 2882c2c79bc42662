"""Refusals: documented in the OpenAPI schema, and a 4xx (never a 5xx) for text the database cannot store or ids it
cannot hold. Run with RTQA_DATABASE_URL pointing at PostgreSQL to exercise the NUL handler for real."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError

from models.settings import Settings
from portal.app import create_app
from portal.refusals import ERROR_SCHEMA
from tests import dbutil
from tests.portal.conftest import OWN


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestSchema:
    def test_every_operation_documents_its_refusals(self, client: TestClient) -> None:
        schema = client.get("/openapi.json").json()
        assert schema["components"]["schemas"]["ErrorMessage"] == ERROR_SCHEMA
        operations = [op for item in schema["paths"].values() for op in item.values()]
        assert len(operations) > 10
        for operation in operations:
            refused = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert refused == {"$ref": "#/components/schemas/ErrorMessage"}
            if "422" in operation["responses"]:
                either = operation["responses"]["422"]["content"]["application/json"]["schema"]["anyOf"]
                assert {"$ref": "#/components/schemas/ErrorMessage"} in either
                assert {"$ref": "#/components/schemas/HTTPValidationError"} in either


NUL_REQUESTS = [
    ("GET", "/api/v1/providers/a%00b/credentials", None),
    ("GET", "/api/v1/submissions?case=a%00b", None),
    ("GET", "/api/v1/submissions?provider=%00", None),
    ("GET", "/api/v1/trials/%00/eligible-providers", None),
    ("GET", "/api/v1/trials/%00/providers", None),
    ("POST", "/api/v1/submissions/1/override", {"level": "per_protocol", "justification": "agreed\x00"}),
]


class TestNulText:
    @pytest.mark.parametrize(("method", "url", "body"), NUL_REQUESTS)
    def test_refused_not_a_server_error(
        self, settings: Settings, engine: Engine, tokens: dict[str, str], method: str, url: str, body: object
    ) -> None:
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            response = client.request(method, url, headers=_auth(tokens["staff"]), json=body)
        assert response.status_code < 500, response.text  # SQLite stores NUL: a list filter then finds nothing (200)
        if dbutil.is_postgres(settings.resolved_database_url) and body is None:  # the override's 404 comes first
            assert response.status_code == 422
            assert "NUL character (U+0000)" in str(response.json()["detail"])

    def test_upload_form_fields_are_checked_by_name(self, client: TestClient, tokens: dict[str, str]) -> None:
        response = client.post(
            "/api/v1/submissions",
            headers=_auth(tokens["staff"]),
            data={"case": "lung", "provider": f"{OWN}\x00"},
            files={"archive": ("a.zip", b"PK", "application/zip")},
        )
        assert response.status_code == 422
        assert response.json()["detail"] == "form field 'provider' holds the control character U+0000; send plain text"

    @pytest.mark.parametrize(
        "error",
        [DataError("SELECT 1/0", {}, ZeroDivisionError("division by zero")), OverflowError("math range error")],
        ids=["data-error", "overflow"],
    )
    def test_any_other_data_error_or_overflow_is_still_a_server_error(
        self, settings: Settings, engine: Engine, error: Exception
    ) -> None:
        app = create_app(settings, engine=engine)

        @app.get("/api/v1/boom")
        def boom() -> None:
            raise error

        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/api/v1/boom").status_code == 500


class TestIds:
    @pytest.mark.parametrize("url", ["/api/v1/submissions/9223372036854775808", "/api/v1/submissions/0"])
    def test_ids_outside_the_database_range_are_refused(
        self, client: TestClient, tokens: dict[str, str], url: str
    ) -> None:
        response = client.get(url, headers=_auth(tokens["staff"]))
        assert response.status_code == 422

    @pytest.mark.parametrize(
        ("method", "url"),
        [
            ("GET", "/api/v1/submissions/9223372036854775808/mapping"),
            ("GET", "/api/v1/tokens?user_id=9223372036854775808"),
            ("POST", "/api/v1/tokens/9223372036854775808/revoke"),
        ],
    )
    def test_unbounded_ids_elsewhere_are_refused_by_the_handler(
        self, settings: Settings, engine: Engine, tokens: dict[str, str], method: str, url: str
    ) -> None:
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            response = client.request(method, url, headers=_auth(tokens["staff"]))
        assert response.status_code in (404, 422), response.text
        if not dbutil.is_postgres(settings.resolved_database_url):  # psycopg sends a larger number as numeric
            assert response.json()["detail"].startswith("a number in the request is out of range")

    def test_offsets_too(self, client: TestClient, tokens: dict[str, str]) -> None:
        response = client.get("/api/v1/submissions?offset=9223372036854775808", headers=_auth(tokens["staff"]))
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "offset"]
