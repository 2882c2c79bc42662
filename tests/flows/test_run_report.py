"""The markdown a credential-submission run publishes: the stored outcome, every criterion with the stored value, the
rejection reason, and the report link."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.cases import build_case
from benchmarks.protocols import load_protocol
from benchmarks.simulator import Deviation, simulate_submission
from flows.catalogue import run_publish_case
from flows.credentialing import run_credential_submission
from flows.run_report import artifact_key, report_path, submission_markdown
from models.settings import Settings
from models.tables import StructureResult

CASE = "lung-sabr-outlining-mini"


def test_decided_submission(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    inline = settings.model_copy(update={"flow_runs": "inline"})
    run_publish_case(inline, CASE, "tests")
    built = build_case(CASE, inline.cases_dir)
    sim = simulate_submission(
        built, provider="the-christie", deviations=[Deviation.parse("margin_mm:PTV:3")], seed=0, out_dir=tmp_path / "s"
    )
    sid = run_credential_submission(inline, str(sim.directory), sim.provider, CASE, actor="tests")["submission_id"]
    markdown = submission_markdown(sid, inline)
    lines = markdown.splitlines()
    assert lines[0] == f"# Submission {sid}: {sim.expected_outcome.value.replace('_', ' ')}"
    assert "| provider | the-christie |" in lines and "| attempt | 1 |" in lines
    assert f"| report | [{report_path(sid)}]({report_path(sid)}) |" in lines
    assert report_path(sid) == f"/submissions/{sid}/report" and artifact_key(sid) == f"submission-{sid}"
    criteria = load_protocol(built.spec.protocol_id).outlining_criteria()
    table = [line for line in lines if line.startswith("| ") and line.count("|") == 7][1:]  # without the header
    assert len(table) == len(criteria)
    with Session(engine) as session:
        stored = {(r.structure, r.metric): r.value for r in session.exec(select(StructureResult)).all()}
    for criterion, row in zip(criteria, table, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:2] == [criterion.structure, criterion.metric]
        value = stored[criterion.key]
        assert value is not None and cells[2].split()[0] == f"{value:.4g}"
        assert cells[3].startswith(criterion.direction)
    ptv_dice = next(row for row in table if row.startswith("| PTV | dice |"))
    assert ptv_dice.endswith("| unacceptable variation |")
    assert "## Reasons" in lines and any("Dice of PTV" in line for line in lines)


def test_rejected_submission(settings: Settings, tmp_path: Path) -> None:
    inline = settings.model_copy(update={"flow_runs": "inline"})
    run_publish_case(inline, CASE, "tests")
    built = build_case(CASE, inline.cases_dir)
    folder = tmp_path / "ct-only"
    folder.mkdir()
    for ct in built.directory.rglob("CT.*.dcm"):
        shutil.copy(ct, folder / ct.name)
    assert len(list(folder.iterdir())) > 10
    result = run_credential_submission(inline, str(folder), "the-christie", CASE, actor="tests")
    assert result["status"] == "rejected"
    markdown = submission_markdown(result["submission_id"], inline)
    assert markdown.startswith(f"# Submission {result['submission_id']}: rejected\n")
    assert "## Rejected" in markdown and "no RTSTRUCT file" in markdown
    assert "## Criteria" not in markdown and "| outcome |" not in markdown
