"""API routes for QA staff reviewing a submission's structure-name mapping (definitions in :mod:`models.review`).

Confirming or flagging is recorded in the audit trail and changes no result, outcome or credential.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from models.review import MappingReviewError, UnknownMappingSubmissionError, confirm_mapping, flag_mapping, name_mapping
from models.tables import Submission
from portal.deps import SessionDep, StaffOnly

router = APIRouter(prefix="/api/v1/submissions", tags=["review"])


class MappingConfirmationRequest(BaseModel):
    note: str | None = Field(default=None, max_length=4000, description="Optional remark kept with the confirmation.")


class MappingFlagRequest(BaseModel):
    """The row said to be wrong (as listed by ``GET .../mapping``) and what is wrong with it."""

    submitted: str | None = Field(description="The submitted name of the row (null for a missing structure).")
    tg263: str | None = Field(description="The TG-263 name of the row (null for an unmatched name).")
    note: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="What is wrong; what it should be.")


def _mapping(session: SessionDep, submission_id: int) -> dict[str, Any]:
    if session.get(Submission, submission_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no submission with id {submission_id}")
    return name_mapping(session, submission_id).as_dict()


@router.get("/{submission_id}/mapping")
def get_mapping(submission_id: int, user: StaffOnly, session: SessionDep) -> dict[str, Any]:
    """The submission's structure-name mapping (submitted name, TG-263 name, the rule that matched, flags), the
    scorer's notes about names, the latest confirmation and every confirmation and flag, newest first."""
    return _mapping(session, submission_id)


@router.post("/{submission_id}/mapping/confirm", status_code=status.HTTP_201_CREATED)
def confirm(
    submission_id: int, user: StaffOnly, session: SessionDep, body: MappingConfirmationRequest | None = None
) -> dict[str, Any]:
    """Confirm the whole current mapping (audited as ``mapping.confirmed``); 409 when there is none."""
    try:
        confirm_mapping(session, submission_id=submission_id, actor=user.email, note=body.note if body else None)
    except UnknownMappingSubmissionError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    except MappingReviewError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    session.commit()
    return _mapping(session, submission_id)


@router.post("/{submission_id}/mapping/flags", status_code=status.HTTP_201_CREATED)
def flag(submission_id: int, body: MappingFlagRequest, user: StaffOnly, session: SessionDep) -> dict[str, Any]:
    """Flag one row of the mapping as wrong, with a note (audited as ``mapping.flagged``; nothing else changes)."""
    try:
        flag_mapping(
            session,
            submission_id=submission_id,
            submitted=body.submitted,
            tg263=body.tg263,
            note=body.note,
            actor=user.email,
        )
    except UnknownMappingSubmissionError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    except MappingReviewError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from None
    session.commit()
    return _mapping(session, submission_id)
