"""API fuzzing with schemathesis against the app's own OpenAPI schema: every operation, as QA staff and as a centre.

Checks: no 5xx (``not_a_server_error``) and every answer conforms to the schema (``response_schema_conformance``
for bodies, ``content_type_conformance``). The database holds the provider registry, a published case and one
decided submission of the centre's provider, so reads find real rows. Examples per operation are bounded
(:data:`EXAMPLES`) and derandomised; marked slow (a few minutes on two cores).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from sqlmodel import Session, select

from benchmarks.cases import build_case
from benchmarks.simulator import Deviation, simulate_submission
from flows.catalogue import build_reference, register_case
from models.auth import issue_token
from models.db import create_db_engine
from models.enums import Role
from models.settings import Settings
from models.tables import Provider, User
from portal.app import create_app
from tests import dbutil

CASE = "lung-sabr-outlining-mini"
OWN = "the-christie"
EXAMPLES = 25
"""Hypothesis examples per operation and role."""

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

CALLS: Counter[tuple[str, str, int]] = Counter()
"""Requests made, by role, operation and status (written out with ``RTQA_FUZZ_REPORT=path``)."""


@pytest.fixture(scope="module", autouse=True)
def fuzz_report() -> Iterator[None]:
    yield
    if CALLS and (target := os.environ.get("RTQA_FUZZ_REPORT")):
        Path(target).write_text(report(CALLS))


def report(calls: Counter[tuple[str, str, int]]) -> str:
    """Requests per operation and role, and the statuses answered, as Markdown."""
    operations = sorted({op for _, op, _ in calls})
    statuses = sorted({code for _, _, code in calls})
    roles = sorted({role for role, _, _ in calls})
    database = "PostgreSQL" if dbutil.base_url() and dbutil.is_postgres(dbutil.base_url() or "") else "SQLite"
    lines = [
        f"Requests ({database}): **{sum(calls.values())}** over {len(operations)} operations as {', '.join(roles)}; "
        "statuses: "
        + ", ".join(f"{code}: {sum(n for (_, _, c), n in calls.items() if c == code)}" for code in statuses)
        + ".",
        "",
        "| operation | " + " | ".join(roles) + " | statuses |",
        "|---|" + "---|" * len(roles) + "---|",
    ]
    for op in operations:
        per_role = [str(sum(n for (r, o, _), n in calls.items() if r == role and o == op)) for role in roles]
        codes = sorted({c for (_, o, c) in calls if o == op})
        lines.append(f"| `{op}` | " + " | ".join(per_role) + " | " + ", ".join(map(str, codes)) + " |")
    return "\n".join(lines) + "\n"


def _call(case: schemathesis.Case, world: FuzzWorld, role: str) -> None:
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {world.tokens[role]}"}, checks=CHECKS, app=world.app
    )
    CALLS[(role, f"{case.operation.method.upper()} {case.operation.path}", response.status_code)] += 1


@dataclass(frozen=True)
class FuzzWorld:
    app: FastAPI
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def fuzz_world(template_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzWorld]:
    root = tmp_path_factory.mktemp("fuzz")
    url = dbutil.new_database(root, template=template_db_url)
    engine = create_db_engine(url)
    app_settings = Settings(database_url=url, data_dir=root / "data")
    built = build_case(CASE, root / "cases")
    register_case.fn(build_reference.fn(CASE, str(built.directory.parent)), actor="tests", database_url=url)
    with Session(engine) as session:
        own = session.exec(select(Provider).where(Provider.code == OWN)).one()
        users = {
            "staff": User(email="qa@rttqa.test", name="QA", role=Role.STAFF),
            "centre": User(email="phys@christie.test", name="Physicist", role=Role.CENTRE, provider_id=own.id),
        }
        session.add_all(users.values())
        session.flush()
        tokens = {key: issue_token(session, user=user, actor="tests") for key, user in users.items()}
        session.commit()
    app = create_app(app_settings, engine=engine)
    sim = simulate_submission(
        built, provider=OWN, deviations=[Deviation.parse("margin_mm:PTV:1")], seed=0, out_dir=root / "sim"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(Path(sim.directory).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(sim.directory).as_posix())
    with TestClient(app) as client:
        response = client.post(
            "/api/v1/submissions",
            headers={"Authorization": f"Bearer {tokens['centre']}"},
            data={"case": CASE},
            files={"archive": ("sub.zip", buffer.getvalue(), "application/zip")},
        )
        assert response.status_code == 202, response.text
        app.state.runner.drain()
    yield FuzzWorld(app, tokens)
    engine.dispose()
    dbutil.drop_database(url)


# The schema comes from an app built at import (the schema does not depend on the database); the requests go to the
# fixture's app (``app=``). schemathesis' fixture-based loader (``schemathesis.pytest.from_fixture``) needs a pytest
# node attribute that pytest 9 no longer has.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(database_url="sqlite://")))


@schemathesis.serializer("multipart/related")
def stow_body(context: schemathesis.SerializationContext, value: object) -> dict[str, Any]:
    """STOW-RS bodies: the generated value as the one part of a ``multipart/related; type="application/dicom"``
    body (schemathesis has no serializer for multipart/related)."""
    data = value if isinstance(value, bytes) else str(value).encode()
    boundary = "rtqa-fuzz-boundary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
    )
    return {
        "data": body,
        "headers": {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
    }


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.slow
@schema.parametrize()
@FUZZ_SETTINGS
def test_as_staff(case: schemathesis.Case, fuzz_world: FuzzWorld) -> None:
    _call(case, fuzz_world, "staff")


@pytest.mark.slow
@schema.parametrize()
@FUZZ_SETTINGS
def test_as_a_centre(case: schemathesis.Case, fuzz_world: FuzzWorld) -> None:
    _call(case, fuzz_world, "centre")
