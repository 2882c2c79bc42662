"""``GET /api/v1/submissions/{id}/received``: what a submission holds and what it still lacks
(:func:`flows.received.received_summary`); centres see only their own provider's submissions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from flows.received import received_summary
from models.enums import Role
from models.tables import Submission
from portal.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/v1/submissions", tags=["submissions"])


@router.get("/{submission_id}/received")
def submission_received(submission_id: int, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """The series and instances received (counts per modality), how they came (upload, C-STORE, STOW-RS, with the
    instances refused on the way) and what is missing for the case's QA stage (``missing``; ``complete`` when
    nothing is)."""
    sub = session.get(Submission, submission_id)
    if user.role is Role.CENTRE and (sub is None or sub.provider_id != user.provider_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a centre token may only read its own submissions")
    if sub is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no submission with id {submission_id}")
    return received_summary(session, submission_id)
