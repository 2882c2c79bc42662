"""One report world (:mod:`tests.portal.reports.world`) for every test of the package: building it runs six
submissions through the flow."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from models.db import create_db_engine
from models.settings import Settings
from portal.app import create_app
from tests import dbutil
from tests.portal.reports.world import ReportWorld, build_world


@pytest.fixture(scope="package")
def world(template_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportWorld]:
    root = tmp_path_factory.mktemp("report-world")
    url = dbutil.new_database(root, template=template_db_url)
    engine = create_db_engine(url)
    yield build_world(Settings(database_url=url, data_dir=root / "data"), engine, root)
    engine.dispose()
    dbutil.drop_database(url)


@pytest.fixture
def client(world: ReportWorld) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings, engine=world.engine)) as c:
        yield c


def bearer(world: ReportWorld, who: str) -> dict[str, str]:
    """The Authorization header of ``who`` (a key of ``world.tokens``)."""
    return {"Authorization": f"Bearer {world.tokens[who]}"}
