"""The submission report: a page per stage with its figures (decoded and measured), a valid PDF, the read policy
of GET /api/v1/submissions/{id}, the cache keyed by the outcome, and no other provider's name in a centre's report.

Submissions are real: simulated by the library's simulator and run through the credentialing flow's tasks
(:mod:`tests.portal.report_world`).
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy.stats import percentileofscore
from sqlmodel import Session, select

from models.enums import SubmissionStatus
from models.tables import DoseResult, Provider, StructureResult, Submission
from tests.portal.conftest import OWN
from tests.portal.reports.conftest import bearer
from tests.portal.reports.world import SCALES, ReportWorld

pytestmark = pytest.mark.slow  # builds three cases and runs six submissions through the flow (about 20 s)


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def _png(client: TestClient, url: str, headers: dict[str, str]) -> Image.Image:
    r = client.get(url, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", url
    assert "immutable" in r.headers["cache-control"]
    image = Image.open(io.BytesIO(r.content))
    image.load()
    return image


def _svg(uri: str) -> str:
    assert uri.startswith("data:image/svg+xml;base64,")
    return base64.b64decode(uri.split(",", 1)[1]).decode()


EXPECTED_SECTIONS = {
    "outlining": ({"outcome", "criteria", "names", "contours", "national"}, {"dvh", "gamma", "rejected"}),
    "planning": ({"outcome", "criteria", "names", "dvh", "national"}, {"contours", "gamma", "rejected"}),
    "dosimetry": ({"outcome", "criteria", "dvh", "gamma", "national"}, {"contours", "names", "rejected"}),
}


class TestReportPerStage:
    @pytest.mark.parametrize("stage", ["outlining", "planning", "dosimetry"])
    def test_page_with_its_stage_figures(self, client: TestClient, world: ReportWorld, stage: str) -> None:
        sid = world.ids[stage]
        headers = bearer(world, "centre")
        r = client.get(f"/submissions/{sid}/report", headers=headers)
        assert r.status_code == 200, r.text
        html = r.text
        present, absent = EXPECTED_SECTIONS[stage]
        sections = set(re.findall(r'<section id="([a-z]+)"', html))
        assert present <= sections and not (absent & sections), sections
        detail = client.get(f"/api/v1/submissions/{sid}", headers=headers).json()
        current = next(o for o in detail["outcomes"] if o["current"])
        assert f'<span class="status {current["level"]}">' in html
        for reason in current["reasons"]:
            assert reason.replace("'", "&#39;").replace("%", "%") in html
        urls = _images(html)
        pngs = [u for u in urls if u.startswith(f"/submissions/{sid}/report/figures/")]
        expected = {"outlining": 7, "planning": 1, "dosimetry": 3}[stage]  # 7 scored structures; DVH; + gamma x2
        assert len(pngs) == expected
        for url in pngs:
            image = _png(client, url, headers)
            assert image.width >= 400 and image.height >= 300
            pixels = np.asarray(image.convert("L"), dtype=float)
            assert pixels.std() > 5  # something is drawn
        nationals = [u for u in urls if u.startswith("data:")]
        assert len(nationals) == 1 and "Royal Marsden" not in _svg(nationals[0])

    def test_outlining_names_map_the_renamed_cord(self, client: TestClient, world: ReportWorld) -> None:
        html = client.get(f"/submissions/{world.ids['outlining']}/report", headers=bearer(world, "centre")).text
        names = html[html.index('<section id="names">') : html.index("</section>", html.index('<section id="names">'))]
        assert re.search(r"<td>Cord</td><td>SpinalCord</td><td>[^<]+</td>", names), names

    def test_criteria_table_holds_every_stored_criterion(self, client: TestClient, world: ReportWorld) -> None:
        html = client.get(f"/submissions/{world.ids['planning']}/report", headers=bearer(world, "staff")).text
        table = html[html.index('<section id="criteria">') : html.index('<section id="names">')]
        rows = re.findall(r"<tr title=", table)
        api = client.get(f"/api/v1/submissions/{world.ids['planning']}", headers=bearer(world, "staff")).json()
        criteria = {c["id"] for r in api["plan_results"] for c in r["parameters"].get("criteria", [])}
        assert len(rows) == len(criteria) > 5

    def test_gamma_map_recomputed_from_stored_parameters(self, client: TestClient, world: ReportWorld) -> None:
        sid = world.ids["dosimetry"]
        html = client.get(f"/submissions/{sid}/report", headers=bearer(world, "centre")).text
        match = re.search(r"recomputed with the stored parameters \([^)]*\): ([0-9.]+)% of (\d+) reached points", html)
        assert match, "the gamma map's caption gives the recomputed pass rate"
        with Session(world.engine) as session:
            stored = {
                r.metric: r.value for r in session.exec(select(DoseResult).where(DoseResult.submission_id == sid))
            }
        assert float(match.group(1)) == pytest.approx(stored["gamma_pass_rate_reached_percent"], abs=0.005)
        assert int(match.group(2)) == stored["gamma_points_evaluated"] - stored["gamma_points_not_reached"]

    def test_rejected_shows_the_reason_only(self, client: TestClient, world: ReportWorld) -> None:
        sid = world.ids["rejected"]
        html = client.get(f"/submissions/{sid}/report", headers=bearer(world, "centre")).text
        assert set(re.findall(r'<section id="([a-z]+)"', html)) == {"rejected"}
        assert "(3004,000A)" in html and "BEAM" in html and "<img" not in html
        pdf = client.get(f"/submissions/{sid}/report.pdf", headers=bearer(world, "centre")).content
        assert pdf.startswith(b"%PDF-") and _pages(pdf) == 1

    def test_undecided_says_so(self, client: TestClient, world: ReportWorld) -> None:
        with Session(world.engine) as session:
            decided = session.get(Submission, world.ids["outlining"])
            assert decided is not None
            waiting = Submission(provider_id=decided.provider_id, case_id=decided.case_id, attempt=9,
                                 content_sha256="9" * 64, status=SubmissionStatus.VALIDATED,
                                 storage_path=decided.storage_path, submitted_by="tests")  # fmt: skip
            session.add(waiting)
            session.commit()
            sid = waiting.id
        html = client.get(f"/submissions/{sid}/report", headers=bearer(world, "centre")).text
        assert set(re.findall(r'<section id="([a-z]+)"', html)) == {"pending"} and "<img" not in html
        assert 'class="status validated"' in html
        pdf = client.get(f"/submissions/{sid}/report.pdf", headers=bearer(world, "centre")).content
        assert _pages(pdf) == 1
        assert not (Path(world.settings.data_dir) / "reports" / str(sid)).exists()  # nothing drawn or cached


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


class TestPdf:
    # A4 pages: the summary; each figure (contour overlays four a page); the national strip, eight metrics a page.
    # Outlining: 1 + 2 (7 contours) + 1 (7 metrics); planning: 1 + 1 (DVH) + 2 (10 metrics); TPS check: 1 + 3 + 1.
    @pytest.mark.parametrize(("stage", "pages"), [("outlining", 4), ("planning", 4), ("dosimetry", 5)])
    def test_valid_pdf_with_a_page_per_figure(
        self, client: TestClient, world: ReportWorld, stage: str, pages: int
    ) -> None:
        r = client.get(f"/submissions/{world.ids[stage]}/report.pdf", headers=bearer(world, "centre"))
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF-1.") and r.content.rstrip().endswith(b"%%EOF")
        assert _pages(r.content) == pages
        assert int(re.search(rb"/Count (\d+)", r.content).group(1)) == pages  # type: ignore[union-attr]
        sizes = set(re.findall(rb"/MediaBox \[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]", r.content))
        assert sizes == {(b"595.44", b"841.68")}  # every page A4 (8.27 x 11.69 in)


class TestPolicy:
    @pytest.mark.parametrize("path", ["/report", "/report.pdf"])
    def test_who_may_read(self, client: TestClient, world: ReportWorld, path: str) -> None:
        sid = world.ids["outlining"]
        for who in ("centre", "staff", "commissioner"):
            assert client.get(f"/submissions/{sid}{path}", headers=bearer(world, who)).status_code == 200, who
        r = client.get(f"/submissions/{sid}{path}", headers=bearer(world, "other_centre"))
        assert r.status_code == 403 and "own submissions" in r.text
        assert (
            client.get(f"/submissions/{world.ids['leeds']}{path}", headers=bearer(world, "centre")).status_code == 403
        )
        assert client.get(f"/submissions/999999{path}", headers=bearer(world, "centre")).status_code == 403
        assert client.get(f"/submissions/999999{path}", headers=bearer(world, "staff")).status_code == 404
        r = client.get(f"/submissions/{sid}{path}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/sign-in?next=/submissions/{sid}{path}"

    def test_figures_follow_the_same_policy(self, client: TestClient, world: ReportWorld) -> None:
        sid = world.ids["planning"]
        html = client.get(f"/submissions/{sid}/report", headers=bearer(world, "centre")).text
        url = next(u for u in _images(html) if u.endswith(".png"))
        assert client.get(url, headers=bearer(world, "other_centre")).status_code == 403
        assert client.get(url, follow_redirects=False).status_code == 303
        assert (
            client.get(url.replace("dvh.png", "..%2Fmanifest.json"), headers=bearer(world, "centre")).status_code == 404
        )
        assert client.get(url.replace("dvh.png", "manifest.json"), headers=bearer(world, "centre")).status_code == 404

    def test_cookie_sign_in_as_a_centre(self, client: TestClient, world: ReportWorld) -> None:
        r = client.post("/sign-in", data={"token": world.tokens["centre"], "next": "/x"}, follow_redirects=False)
        assert r.status_code == 303
        assert client.get(f"/submissions/{world.ids['dosimetry']}/report").status_code == 200


class TestCache:
    def test_drawn_once_then_a_new_outcome_draws_again(self, client: TestClient, world: ReportWorld) -> None:
        sid = world.ids["planning"]
        staff = bearer(world, "staff")
        first = _images(client.get(f"/submissions/{sid}/report", headers=staff).text)[0]
        folder = Path(world.settings.data_dir) / "reports" / str(sid)
        (drawn,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
        stamp = (drawn / "dvh.png").stat().st_mtime_ns
        assert _images(client.get(f"/submissions/{sid}/report", headers=staff).text)[0] == first
        assert (drawn / "dvh.png").stat().st_mtime_ns == stamp  # read from the cache, not drawn again
        body = {"level": "justified_variation", "justification": "plan reviewed with the centre"}
        assert client.post(f"/api/v1/submissions/{sid}/override", json=body, headers=staff).status_code == 201
        html = client.get(f"/submissions/{sid}/report", headers=staff).text
        second = _images(html)[0]
        assert second != first and "plan reviewed with the centre" in html and "justified variation" in html
        assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == [second.split("/")[-2]]
        assert client.get(first, headers=staff).status_code == 404  # the old version is gone


class TestDrawingBlocksNothingElse:
    def test_other_requests_answer_while_a_report_draws(
        self, client: TestClient, world: ReportWorld, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import portal.reporting.build as build

        sid = world.ids["dosimetry"]
        shutil.rmtree(Path(world.settings.data_dir) / "reports" / str(sid), ignore_errors=True)
        release, started = threading.Event(), threading.Event()
        calls: list[int] = []
        original = build.figure_data

        def slow(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            started.set()
            assert release.wait(60)
            return original(*args, **kwargs)

        monkeypatch.setattr(build, "figure_data", slow)
        headers = bearer(world, "centre")
        results: list[int] = []
        readers = [
            threading.Thread(
                target=lambda: results.append(client.get(f"/submissions/{sid}/report", headers=headers).status_code)
            )
            for _ in range(2)
        ]
        for t in readers:
            t.start()
        assert started.wait(60)
        # While the report is being drawn: the service answers, and another report is served.
        assert client.get("/health").status_code == 200
        assert client.get(f"/submissions/{world.ids['planning']}/report", headers=headers).status_code == 200
        release.set()
        for t in readers:
            t.join(120)
        assert results == [200, 200] and len(calls) == 1  # drawn once for both readers


class TestCentreIsolation:
    def test_report_never_names_another_provider(self, client: TestClient, world: ReportWorld) -> None:
        with Session(world.engine) as session:
            others = [p for p in session.exec(select(Provider)).all() if p.code != OWN]
        for stage in ("outlining", "planning", "dosimetry"):
            sid = world.ids[stage]
            html = client.get(f"/submissions/{sid}/report", headers=bearer(world, "centre")).text
            texts = [html, *(_svg(u) for u in _images(html) if u.startswith("data:"))]
            for text in texts:
                for p in others:
                    assert p.code not in text and p.name.replace("'", "&#39;") not in text and p.name not in text, (
                        stage,
                        p.code,
                    )
            assert "Christie" in texts[-1]  # the centre's own point is labelled
            manifest = next((Path(world.settings.data_dir) / "reports" / str(sid)).glob("*/manifest.json")).read_text()
            assert all(p.code not in manifest and p.name not in manifest for p in others)

    def test_report_percentiles_against_an_independent_implementation(
        self, client: TestClient, world: ReportWorld
    ) -> None:
        sid = world.ids["outlining"]
        html = client.get(f"/submissions/{sid}/report", headers=bearer(world, "centre")).text
        national = html[html.index('<section id="national">') :]
        with Session(world.engine) as session:
            dice = {
                r.submission_id: r.value
                for r in session.exec(
                    select(StructureResult).where(StructureResult.structure == "PTV", StructureResult.metric == "dice")
                )
            }
        own = dice[sid]
        assert own is not None
        # Others: leeds' own submission and three copies of the centre's, scaled.
        values = [dice[world.ids["leeds"]], *(own * scale for scale in SCALES), own]
        expected = percentileofscore(values, own, kind="mean")
        row = re.search(r"<td>PTV dice</td><td class=\"num\">[^<]+</td>\s*<td class=\"num\">(\d+)</td>", national)
        assert row and int(row.group(1)) == round(expected)

    def test_fewer_than_three_other_centres_are_not_shown(self, client: TestClient, world: ReportWorld) -> None:
        html = client.get(f"/submissions/{world.ids['dosimetry']}/report", headers=bearer(world, "centre")).text
        national = html[html.index('<section id="national">') :]
        assert "too few centres yet" in national
        assert re.search(r'too few centres yet</span></td>\s*<td class="num">3</td>', national)  # the count is shown
        svg = _svg(next(u for u in _images(html) if u.startswith("data:")))
        assert "fewer than 3 other centres" in svg


def test_other_centre_cannot_read_own_centres_national_rows(client: TestClient, world: ReportWorld) -> None:
    """Leeds reading its own report sees the-christie only as an unnamed value."""
    html = client.get(f"/submissions/{world.ids['leeds']}/report", headers=bearer(world, "other_centre")).text
    assert "Christie" not in html and OWN not in html
