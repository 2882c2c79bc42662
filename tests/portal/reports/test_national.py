"""The national view: GET /api/v1/national (staff and commissioners: every provider; a centre: anonymised values and
its own percentile, only for a case it has a decided submission for) and the /national page with its network
filter. Percentiles and quartiles are checked against scipy and numpy."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.stats import percentileofscore
from sqlmodel import Session, select

from benchmarks.protocols import load_protocol
from models.tables import Provider
from tests.portal.conftest import OTHER, OWN
from tests.portal.reports.conftest import bearer
from tests.portal.reports.world import OUTLINING, TPS, ReportWorld

pytestmark = pytest.mark.slow  # the package's world runs six submissions through the flow

URL = "/api/v1/national"
PTV_DICE = {"case": OUTLINING, "metric": "PTV:dice"}


def _names(world: ReportWorld) -> dict[str, str]:
    with Session(world.engine) as session:
        return {p.code: p.name for p in session.exec(select(Provider)).all()}


class TestApiForStaff:
    @pytest.mark.parametrize("who", ["staff", "commissioner"])
    def test_every_provider_with_percentiles(self, client: TestClient, world: ReportWorld, who: str) -> None:
        r = client.get(URL, params=PTV_DICE, headers=bearer(world, who))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["anonymised"] is False and body["case"] == f"{OUTLINING}@1.0" and body["unit"] == "1"
        values = [v["value"] for v in body["values"]]
        assert values == sorted(values) and body["count"] == len(values) == 5  # the centre, leeds, three peers
        assert {v["provider"] for v in body["values"]} == {OWN, OTHER, "the-royal-marsden", "barts-health",
                                                           "guys-and-st-thomas"}  # fmt: skip
        for v in body["values"]:
            assert v["percentile"] == pytest.approx(percentileofscore(values, v["value"], kind="mean"))
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        assert body["summary"] == pytest.approx({"min": values[0], "q1": q1, "median": median, "q3": q3,
                                                 "max": values[-1]})  # fmt: skip
        assert body["levels"] == {"per_protocol": 0.85, "acceptable": 0.75, "direction": ">="}  # the protocol's

    def test_metric_list_and_mistakes(self, client: TestClient, world: ReportWorld) -> None:
        staff = bearer(world, "staff")
        listing = client.get(URL, params={"case": OUTLINING}, headers=staff).json()
        ids = [m["id"] for m in listing["metrics"]]
        assert "PTV:dice" in ids and "SpinalCord:hd95_mm" in ids
        judged = [f"{c.structure}:{c.metric}" for c in load_protocol("uk-lung-sabr").outlining_criteria()]
        assert ids[: len(judged)] == judged  # the protocol's criteria first, in its order
        tps = client.get(URL, params={"case": TPS}, headers=staff).json()["metrics"]
        assert tps[0]["id"] == "gamma_pass_rate_percent"  # the judged metric first
        assert "gamma_histogram" not in {m["id"] for m in tps}
        r = client.get(URL, params={"case": "no-such-case"}, headers=staff)
        assert r.status_code == 404 and "no benchmark case 'no-such-case'" in r.json()["detail"]
        r = client.get(URL, params={"case": OUTLINING, "metric": "PTV:R50%"}, headers=staff)
        assert r.status_code == 404 and "PTV:dice" in r.json()["detail"]
        assert client.get(URL, params=PTV_DICE).status_code == 401


class TestApiForCentres:
    def test_anonymised_values_and_own_percentile(self, client: TestClient, world: ReportWorld) -> None:
        full = client.get(URL, params=PTV_DICE, headers=bearer(world, "staff")).json()
        r = client.get(URL, params=PTV_DICE, headers=bearer(world, "centre"))
        assert r.status_code == 200
        body = r.json()
        assert body["anonymised"] is True
        assert body["values"] == [v["value"] for v in full["values"]]  # the same numbers, nothing else
        own = next(v for v in full["values"] if v["provider"] == OWN)
        assert body["own"]["value"] == own["value"] and body["own"]["submission_id"] == world.ids["outlining"]
        assert body["own"]["percentile"] == pytest.approx(percentileofscore(body["values"], own["value"], kind="mean"))
        text = r.text
        for code, name in _names(world).items():
            if code != OWN:
                assert code not in text and name not in text, code
        assert str(world.ids["leeds"]) not in re.findall(r'"submission_id":\s*(\d+)', text)

    def test_withheld_with_fewer_than_three_other_centres(self, client: TestClient, world: ReportWorld) -> None:
        r = client.get(URL, params={"case": TPS, "metric": "gamma_pass_rate_percent"}, headers=bearer(world, "centre"))
        body = r.json()
        assert r.status_code == 200 and body["values"] == [] and body["summary"] is None
        assert "fewer than 3 other centres" in body["withheld"] and body["own"]["percentile"] is None
        assert body["count"] == 3  # how many contribute is not a secret; their values are

    def test_no_decided_submission_no_national_values(self, client: TestClient, world: ReportWorld) -> None:
        planning = {"case": "lung-sabr-planning-coarse", "metric": "PTV:R50%"}
        r = client.get(URL, params=planning, headers=bearer(world, "other_centre"))
        assert r.status_code == 403 and "once it has a decided submission" in r.json()["detail"]


def _figure(html: str) -> str:
    uri = re.search(r'<img src="(data:image/svg\+xml;base64,[^"]+)"', html)
    assert uri, "the page shows the strip plot"
    return base64.b64decode(uri.group(1).split(",", 1)[1]).decode()


class TestPage:
    def test_staff_see_every_centre_and_a_network_by_name(self, client: TestClient, world: ReportWorld) -> None:
        names = _names(world)
        staff = bearer(world, "staff")
        r = client.get("/national", params=PTV_DICE, headers=staff)
        assert r.status_code == 200
        svg = _figure(r.text)
        assert not any(name in svg for name in names.values())  # no network chosen: nobody named in the figure
        for code in (OWN, OTHER, "barts-health"):
            assert names[code].replace("'", "&#39;") in r.text  # the table lists every centre
        r = client.get("/national", params={**PTV_DICE, "network": "north-west"}, headers=staff)
        svg = _figure(r.text)
        assert names[OWN] in svg and names[OTHER] not in svg and names["barts-health"] not in svg
        assert re.search(rf'<tr class="highlight">\s*<td>{names[OWN]}</td>', r.text)
        svg = _figure(client.get("/national", params={**PTV_DICE, "network": "yorkshire-humber"}, headers=staff).text)
        assert names[OTHER] in svg and names[OWN] not in svg

    def test_unknown_metric_falls_back_to_the_first(self, client: TestClient, world: ReportWorld) -> None:
        r = client.get("/national", params={"case": TPS, "metric": "PTV:dice"}, headers=bearer(world, "commissioner"))
        assert r.status_code == 200 and "has no values for this case" in r.text
        assert 'value="gamma_pass_rate_percent" selected' in r.text

    def test_centres_and_strangers_are_kept_out(self, client: TestClient, world: ReportWorld) -> None:
        r = client.get("/national", params=PTV_DICE, headers=bearer(world, "centre"))
        assert r.status_code == 403 and "Not allowed" in r.text and "data:image" not in r.text
        r = client.get("/national", params=PTV_DICE, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=/national")
