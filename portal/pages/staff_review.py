"""A QA staff member's review of one submission: its outcome and reasons, the criteria results, the structure-name
mapping to confirm or flag, and an override with a justification.

Every write uses the same model functions as the API: the override is ``POST /api/v1/submissions/{id}/override``'s
(:func:`models.outcomes.override_outcome`, an earlier attempt needing confirmation), the mapping is
:mod:`models.review`'s. After a write the browser is sent back to the page (303), which says what was done.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, select

from models.enums import OutcomeLevel, SubmissionStatus
from models.outcomes import NotLatestAttemptError, OverrideError, latest_attempt, override_outcome
from models.review import MappingReviewError, confirm_mapping, flag_mapping, name_mapping
from models.tables import AuditEvent, BenchmarkCase, Network, Provider, Submission, Technique, User
from portal.deps import SessionDep, StaffOnly
from portal.pages import render
from portal.pages.staff_common import FORMATTERS

router = APIRouter(include_in_schema=False)

DONE = {
    "overridden": "The outcome was overridden; the credentials were updated.",
    "confirmed": "The structure-name mapping was confirmed (recorded in the audit log).",
    "flagged": "The mapping row was flagged with your note (recorded in the audit log).",
}
"""What the page says after each write (``?done=...``)."""


def _verdict(value: float | None, criterion: dict[str, Any]) -> str:
    """The level a value reaches against one stored criterion (as :meth:`qa_checks.protocol.Criterion.meets`:
    equality meets a level): ``per_protocol``, ``acceptable_variation``, ``unacceptable_variation``, or
    ``not_measured``."""
    if value is None:
        return "not_measured"

    def meets(level: float) -> bool:
        return value >= level if criterion["direction"] == ">=" else value <= level

    if meets(float(criterion["per_protocol"])):
        return "per_protocol"
    if meets(float(criterion["acceptable"])):
        return "acceptable_variation"
    return "unacceptable_variation"


def _criteria_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per criterion stored with a plan or dose result: the value, the levels and the level reached."""
    return [
        {
            "structure": r.get("structure") or c.get("structure"),
            "metric": r["metric"],
            "value": r["value"],
            "unit": r["unit"],
            "criterion": c,
            "verdict": _verdict(r["value"], c),
            "reason": r["parameters"].get("reason"),
        }
        for r in results
        for c in r["parameters"].get("criteria", [])
    ]


def _contour_table(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Contour metrics pivoted: the metric columns (with units), and one row per structure."""
    metrics: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        metrics.setdefault(r["metric"], r["unit"])
        row = rows.setdefault(r["structure"], {"structure": r["structure"], "submitted": r["submitted_name"]})
        row[r["metric"]] = r["value"]
    columns = [f"{m}|{u}" for m, u in metrics.items()]
    return columns, list(rows.values())


def _override_notes(session: Session, submission_id: int) -> dict[int, dict[str, Any]]:
    """outcome id -> the override's audit record (attempt, latest attempt, earlier_attempt)."""
    events = session.exec(
        select(AuditEvent).where(
            AuditEvent.subject_type == "submission",
            AuditEvent.subject_id == str(submission_id),
            AuditEvent.action == "outcome.overridden",
        )
    ).all()
    return {int(e.after["outcome_id"]): dict(e.after) for e in events if e.after and e.after.get("outcome_id")}


def _page(
    request: Request,
    session: Session,
    user: User,
    submission_id: int,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    from portal.app import _submission_json  # the API's view of a submission; imported late (app imports pages)

    sub = session.get(Submission, submission_id)
    if sub is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no submission with id {submission_id}")
    data = _submission_json(session, sub)
    case = session.get(BenchmarkCase, sub.case_id)
    provider = session.get(Provider, sub.provider_id)
    assert case is not None and provider is not None
    network = session.get(Network, provider.network_id)
    technique = session.get(Technique, case.technique_id)
    overrides = _override_notes(session, submission_id)
    outcomes = [{**o, "override": overrides.get(o["id"])} for o in data["outcomes"]]
    columns, contour_rows = _contour_table(data["structure_results"])
    done = request.query_params.get("done")
    mapping = name_mapping(session, submission_id)
    return render(
        request,
        "staff/review.html",
        user,
        status_code=status_code,
        sub=data,
        case=case,
        provider=provider,
        network=network,
        technique=technique,
        latest=latest_attempt(session, sub),
        current=next((o for o in outcomes if o["current"]), None),
        outcomes=list(reversed(outcomes)),
        criteria=_criteria_rows(data["plan_results"]) + _criteria_rows(data["dose_results"]),
        contour_columns=columns,
        contour_rows=contour_rows,
        mapping=mapping,
        mapping_options=[(json.dumps([r.submitted, r.tg263]), r) for r in mapping.rows],
        can_override=sub.status is SubmissionStatus.DECIDED,
        levels=list(OutcomeLevel),
        errors=errors or {},
        form=form or {},
        done=DONE.get(done or ""),
        **FORMATTERS,
    )


@router.get("/submissions/{submission_id}/review")
def review(request: Request, submission_id: int, user: StaffOnly, session: SessionDep) -> Response:
    return _page(request, session, user, submission_id)


def _back(submission_id: int, done: str, anchor: str) -> Response:
    return RedirectResponse(f"/submissions/{submission_id}/review?done={done}#{anchor}", status_code=303)


@router.post("/submissions/{submission_id}/review/override")
def override(
    request: Request,
    submission_id: int,
    user: StaffOnly,
    session: SessionDep,
    level: Annotated[str, Form()] = "",
    justification: Annotated[str, Form()] = "",
    confirm_not_latest: Annotated[str, Form()] = "",
) -> Response:
    form = {"level": level, "justification": justification}
    try:
        level_value = OutcomeLevel(level)
    except ValueError:
        errors = {"override": "Choose the outcome level the submission should have."}
        return _page(request, session, user, submission_id, status_code=422, errors=errors, form=form)
    try:
        override_outcome(
            session,
            submission_id=submission_id,
            level=level_value,
            justification=justification,
            actor=user.email,
            validity_days=request.app.state.settings.credential_validity_days,
            confirm_not_latest=confirm_not_latest == "yes",
        )
    except NotLatestAttemptError as err:
        session.rollback()
        message = (
            f"Not overridden: this is attempt {err.attempt} of {err.latest}, not the provider's latest attempt at "
            "this case. Tick “I confirm overriding an earlier attempt” if you mean to override it."
        )
        return _page(request, session, user, submission_id, status_code=409, errors={"override": message}, form=form)
    except OverrideError as err:
        session.rollback()
        if session.get(Submission, submission_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
        code = 422 if not justification.strip() else 409
        errors = {"override": f"Not overridden: {err}."}
        return _page(request, session, user, submission_id, status_code=code, errors=errors, form=form)
    session.commit()
    return _back(submission_id, "overridden", "outcome")


@router.post("/submissions/{submission_id}/review/mapping/confirm")
def confirm(
    request: Request,
    submission_id: int,
    user: StaffOnly,
    session: SessionDep,
    note: Annotated[str, Form()] = "",
) -> Response:
    try:
        confirm_mapping(session, submission_id=submission_id, actor=user.email, note=note)
    except MappingReviewError as err:
        session.rollback()
        if isinstance(err, LookupError):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
        errors = {"mapping": f"Not confirmed: {err}."}
        return _page(request, session, user, submission_id, status_code=409, errors=errors)
    session.commit()
    return _back(submission_id, "confirmed", "mapping")


def _row(value: str) -> tuple[str | None, str | None]:
    """The ``[submitted, tg263]`` pair a flag form's row choice carries."""
    try:
        pair = json.loads(value) if value else None
    except ValueError:
        pair = None
    if not (isinstance(pair, list) and len(pair) == 2 and all(x is None or isinstance(x, str) for x in pair)):
        raise MappingReviewError("choose the row of the mapping that is wrong")
    return pair[0], pair[1]


@router.post("/submissions/{submission_id}/review/mapping/flag")
def flag(
    request: Request,
    submission_id: int,
    user: StaffOnly,
    session: SessionDep,
    row: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    form = {"row": row, "note": note}
    try:
        submitted, tg263 = _row(row)
        flag_mapping(
            session, submission_id=submission_id, submitted=submitted, tg263=tg263, note=note, actor=user.email
        )
    except MappingReviewError as err:
        session.rollback()
        if isinstance(err, LookupError):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
        errors = {"flag": f"Not flagged: {err}."}
        return _page(request, session, user, submission_id, status_code=422, errors=errors, form=form)
    session.commit()
    return _back(submission_id, "flagged", "mapping")
