"""The facility questionnaire pages: the form rendered from its definition, answers sent through the API's flow,
malformed answers shown next to their fields with nothing stored, and the outcome."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.protocols import load_protocol
from benchmarks.questionnaires import example_answers, load_questionnaire
from flows.catalogue import register_protocol
from models.tables import Submission
from tests.portal.centre_fixtures import csrf, page_client, visible_text

URL = "/questionnaire/sabr_lung"


def _fields(answers: dict[str, Any]) -> dict[str, str]:
    """Answers as the form posts them: ``answer.<id>`` -> text."""
    out = {}
    for qid, value in answers.items():
        out[f"answer.{qid}"] = ("yes" if value else "no") if isinstance(value, bool) else str(value)
    return out


@pytest.fixture
def lung_registered(engine: Engine) -> None:
    """The lung SABR protocol registered (as `rtqa db init` does), so sabr_lung is offered."""
    with Session(engine) as session:
        register_protocol(session, load_protocol("uk-lung-sabr"), actor="tests")
        session.commit()


def _submissions(engine: Engine) -> list[Submission]:
    with Session(engine) as session:
        return list(session.exec(select(Submission)).all())


class TestQuestionnairePages:
    def test_index_lists_the_offered_techniques_forms(
        self, client: TestClient, tokens: dict[str, str], lung_registered: None
    ) -> None:
        html = page_client(client, tokens["centre"]).get("/questionnaire").text
        assert 'href="/questionnaire/sabr_lung">Answer</a>' in html and "not answered" in html
        assert "/questionnaire/sabr_liver" not in html  # no protocol offers liver SABR

    def test_form_has_a_field_for_every_question(self, client: TestClient, tokens: dict[str, str]) -> None:
        form = load_questionnaire("sabr_lung")
        html = page_client(client, tokens["centre"]).get(URL).text
        for q in form.questions:
            assert f'name="answer.{q.id}"' in html, q.id
        number = next(q for q in form.questions if q.type == "number" and q.max is not None)
        assert re.search(rf'name="answer.{number.id}" type="number"[^>]*max="{number.max}"', html)
        choice = next(q for q in form.questions if q.type == "choice")
        assert all(f'<option value="{o.value}"' in html for o in choice.options or [])
        assert 'type="date"' in html and 'name="csrf_token"' in html

    def test_sends_answers_shows_the_outcome_and_prefills_the_next_attempt(
        self, client: TestClient, tokens: dict[str, str], engine: Engine
    ) -> None:
        browser = page_client(client, tokens["centre"])
        answers = example_answers("sabr_lung")
        token = csrf(browser, URL)
        r = browser.post(URL, data={"csrf_token": token, **_fields(answers)}, follow_redirects=False)
        assert r.status_code == 303, r.text
        sid = _submissions(engine)[0].id
        assert r.headers["location"] == f"{URL}?submission={sid}&created=true"
        text = visible_text(browser.get(r.headers["location"]).text)
        assert "Your answers were received and decided" in text and "per protocol" in text
        assert "Every answer meets the protocol" in text
        # The next visit opens with the stored answers.
        html = browser.get(URL).text
        assert re.search(r'<option value="acuros_xb" selected>', html)
        assert 'name="answer.lead_physicist" type="text" value="B. Example, principal clinical scientist"' in html

        again = browser.post(URL, data={"csrf_token": token, **_fields(answers)}, follow_redirects=True)
        assert "These answers were already sent" in again.text and len(_submissions(engine)) == 1

        worse = _fields({**answers, "dose_algorithm": "pencil_beam"})
        text = visible_text(browser.post(URL, data={"csrf_token": token, **worse}, follow_redirects=True).text)
        assert "unacceptable variation" in text and "Attempt 2" in text
        detail = client.get(
            f"/api/v1/submissions/{_submissions(engine)[-1].id}",
            headers={"Authorization": f"Bearer {tokens['centre']}"},
        ).json()
        assert all(visible_text(reason) in text for reason in detail["outcomes"][0]["reasons"])

    def test_malformed_answers_are_shown_next_to_their_fields(
        self, client: TestClient, tokens: dict[str, str], engine: Engine
    ) -> None:
        browser = page_client(client, tokens["centre"])
        fields = _fields(example_answers("sabr_lung"))
        fields["answer.dose_grid_mm"] = "50"
        fields["answer.end_to_end_test_date"] = "2999-01-01"
        r = browser.post(URL, data={"csrf_token": csrf(browser, URL), **fields})
        assert r.status_code == 422
        html = r.text
        for qid, words in (("dose_grid_mm", "out of range"), ("end_to_end_test_date", "after the evaluation date")):
            block = re.search(rf'<div class="question has-error" id="q-{qid}">(.*?)</div>\s*(?=<div|<p>)', html, re.S)
            assert block, qid
            assert words in block.group(1) and 'class="field-error"' in block.group(1)
        assert html.count("has-error") == 2 and "nothing was stored" in html
        assert 'value="50"' in html  # what was typed is kept
        assert _submissions(engine) == []

    def test_blank_required_answers_are_judged_not_refused(
        self, client: TestClient, tokens: dict[str, str], engine: Engine
    ) -> None:
        browser = page_client(client, tokens["centre"])
        r = browser.post(URL, data={"csrf_token": csrf(browser, URL), "answer.lead_physicist": ""})
        assert r.status_code == 200  # followed the redirect
        assert "unacceptable variation" in visible_text(r.text) and len(_submissions(engine)) == 1

    def test_needs_the_csrf_token_and_a_centre(self, client: TestClient, tokens: dict[str, str]) -> None:
        browser = page_client(client, tokens["centre"])
        assert browser.post(URL, data=_fields(example_answers("sabr_lung"))).status_code == 403
        assert browser.get("/questionnaire/no_such").status_code == 404
        for role in ("staff", "commissioner"):
            assert page_client(client, tokens[role]).get(URL).status_code == 403
        r = page_client(client, None).get(URL, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/sign-in?next={URL}"
