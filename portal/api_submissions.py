"""API routes to upload benchmark submissions and list them.

An upload is streamed to a temporary folder under the data directory, unpacked (a zip is checked first, see
:mod:`flows.intake`), cleared of stray files and stored by :func:`flows.credentialing.store_submission` (which
refuses a patient identity other than the case's, see :mod:`flows.patient_identity`); the answer comes at once
(202) and the remaining steps run afterwards (:mod:`flows.runner`). The body's size is limited while it streams by
:mod:`portal.upload_limit`, before this route runs.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile, status
from fastapi import Path as PathParam
from sqlmodel import Session, col, func, select

from flows.credentialing import IngestError, store_submission
from flows.intake import (
    UnsafeUploadError,
    UploadLimits,
    UploadNames,
    UploadTooLargeError,
    extract_archive,
    remove_stray_files,
    stream_to_file,
    upload_folder,
)
from models.enums import QAStage, Role, SubmissionStatus
from models.settings import Settings
from models.tables import BenchmarkCase, Network, Outcome, Provider, Submission, Technique, User
from portal.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/v1/submissions", tags=["submissions"])

MAX_ROW_ID = 2**31 - 1
"""Largest row id or offset a query may name (PostgreSQL ``integer``); larger numbers are refused by validation
instead of overflowing the database driver."""

SubmissionId = Annotated[int, PathParam(ge=1, le=MAX_ROW_ID, description="Submission id.")]
"""A submission id in a path."""


def status_url(submission_id: int) -> str:
    """Where a submission's status and results are read."""
    return f"/api/v1/submissions/{submission_id}"


def _limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        max_upload_bytes=settings.max_upload_bytes,
        max_archive_files=settings.max_archive_files,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_compression_ratio=settings.max_compression_ratio,
    )


def _plain_text(field: str, value: str | None) -> None:
    """422 when a form field holds a control character (NUL cannot even be stored by PostgreSQL)."""
    for character in value or "":
        if unicodedata.category(character) == "Cc":
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"form field {field!r} holds the control character U+{ord(character):04X}; send plain text",
            )


def _provider_for_upload(session: Session, user: User, provider: str | None) -> str:
    """The provider an upload is for: a centre's own, or the one staff name; 403 for commissioners."""
    if user.role is Role.COMMISSIONER:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="commissioners cannot upload submissions")
    if user.role is Role.CENTRE:
        own = session.get(Provider, user.provider_id)
        assert own is not None
        if provider not in (None, "", own.code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a centre token may only upload for its own provider")
        return own.code
    if not provider:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="say which provider the upload is for: form field 'provider'"
        )
    if session.exec(select(Provider).where(Provider.code == provider)).first() is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown provider code {provider!r}")
    return provider


def _unpack(folder: Path, archive: UploadFile | None, files: list[UploadFile], limits: UploadLimits) -> None:
    """Write the upload into ``folder``: the zip extracted, or each file under its relative name."""
    if archive is not None:
        zip_path = folder / "upload.zip"
        name = archive.filename or "archive"
        stream_to_file(
            archive.file, zip_path, name=name, budget_bytes=limits.max_upload_bytes, limit_bytes=limits.max_upload_bytes
        )
        extract_archive(zip_path, folder / "files", limits)
        zip_path.unlink()
        return
    left = limits.max_upload_bytes
    names = UploadNames("two uploaded files have this name")
    for upload in files:
        relative = names.add(upload.filename or "")
        left -= stream_to_file(
            upload.file,
            folder / "files" / relative,
            name=str(relative),
            budget_bytes=left,
            limit_bytes=limits.max_upload_bytes,
        )


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def upload_submission(
    request: Request,
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    case: Annotated[str, Form(description="Benchmark case code, e.g. lung-sabr-outlining-mini.")],
    version: Annotated[str | None, Form(description="Case version; default: the newest published.")] = None,
    provider: Annotated[str | None, Form(description="Provider code (staff); centres upload for their own.")] = None,
    archive: Annotated[UploadFile | None, File(description="One zip holding the submission.")] = None,
    files: Annotated[list[UploadFile] | None, File(description="The files, each named by its relative path.")] = None,
) -> dict[str, Any]:
    """Upload a benchmark submission (a zip, or the files): 202 with the submission id and where to follow it;
    200 when the same files were already received. Refused uploads (4xx, naming the entry) leave nothing behind.

    The multipart parser (Starlette) spools each part to a temporary file before this runs and accepts at most 1000
    parts: send larger submissions as a zip.
    """
    settings: Settings = request.app.state.settings
    for field, value in (("case", case), ("version", version), ("provider", provider)):
        _plain_text(field, value)
    provider_code = _provider_for_upload(session, user, provider)
    actor = user.email
    if (archive is None) == (not files):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="send either one zip as 'archive' or the files as 'files' (each named by its relative path)",
        )
    session.rollback()  # hold no transaction while the upload is unpacked and stored
    with upload_folder(settings.uploads_dir) as folder:
        try:
            _unpack(folder, archive, files or [], _limits(settings))
            warnings = remove_stray_files(folder / "files") if (folder / "files").exists() else []
            if not (folder / "files").exists() or not any(p.is_file() for p in (folder / "files").rglob("*")):
                raise UnsafeUploadError("the upload holds no DICOM files" + "".join(f"; {w}" for w in warnings))
            ingested = store_submission(
                str(folder / "files"),
                provider_code=provider_code,
                case_code=case,
                case_version=version or None,
                actor=actor,
                database_url=settings.resolved_database_url,
                data_dir=str(settings.data_dir),
            )
        except UploadTooLargeError as err:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(err)) from None
        except (UnsafeUploadError, IngestError) as err:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(err)) from None
    sub = session.get(Submission, ingested.submission_id)
    assert sub is not None and sub.id is not None
    if ingested.created:
        request.app.state.runner.notify(sub.id)
        message = f"received as submission {sub.id} (attempt {sub.attempt}); follow it at {status_url(sub.id)}"
    else:
        response.status_code = status.HTTP_200_OK
        message = f"already received as submission {sub.id} (attempt {sub.attempt}); nothing new was stored"
    return {
        "submission_id": sub.id,
        "status": sub.status.value,
        "status_url": status_url(sub.id),
        "attempt": sub.attempt,
        "message": message,
        "warnings": warnings,
    }


@router.get("")
def list_submissions(
    user: CurrentUser,
    session: SessionDep,
    provider: Annotated[str | None, Query(description="Provider code (centres: only their own).")] = None,
    status_: Annotated[SubmissionStatus | None, Query(alias="status")] = None,
    stage: QAStage | None = None,
    case: Annotated[str | None, Query(description="Benchmark case code (any version).")] = None,
    technique: Annotated[str | None, Query(description="Technique code, e.g. sabr_lung.")] = None,
    network: Annotated[str | None, Query(description="Radiotherapy network code, e.g. north-west.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> dict[str, Any]:
    """Submissions, newest first, filtered and paged; centres see only their own provider's."""
    return submission_list(
        session,
        user,
        provider=provider,
        status_=status_,
        stage=stage,
        case=case,
        technique=technique,
        network=network,
        limit=limit,
        offset=offset,
    )


def submission_list(
    session: Session,
    user: User,
    *,
    provider: str | None = None,
    status_: SubmissionStatus | None = None,
    stage: QAStage | None = None,
    case: str | None = None,
    technique: str | None = None,
    network: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """The body of ``GET /api/v1/submissions`` (pages use it too, so page and API agree): ``{"items", "total",
    "limit", "offset"}``, newest first. A filter left None (or empty) does not filter.

    Raises:
        HTTPException: 403 when a centre user asks for another provider.
    """
    query = select(Submission, Provider, BenchmarkCase).where(
        Submission.provider_id == Provider.id, Submission.case_id == BenchmarkCase.id
    )
    if user.role is Role.CENTRE:
        own = session.get(Provider, user.provider_id)
        assert own is not None
        if provider not in (None, "", own.code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a centre token may only list its own submissions")
        query = query.where(Submission.provider_id == own.id)
    elif provider:
        query = query.where(Provider.code == provider)
    if status_ is not None:
        query = query.where(Submission.status == status_)
    if stage is not None:
        query = query.where(BenchmarkCase.stage == stage)
    if case:
        query = query.where(BenchmarkCase.case_code == case)
    if technique:
        techniques_named = select(Technique.id).where(Technique.code == technique)
        query = query.where(col(BenchmarkCase.technique_id).in_(techniques_named))
    if network:
        networks_named = select(Network.id).where(Network.code == network)
        query = query.where(col(Provider.network_id).in_(networks_named))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Submission.received_at).desc(), col(Submission.id).desc()).limit(limit).offset(offset)
    ).all()
    ids = [sub.id for sub, _, _ in rows]
    techniques = {t.id: t.code for t in session.exec(select(Technique)).all()}
    networks = {n.id: n.code for n in session.exec(select(Network)).all()}
    outcomes = {
        o.submission_id: o.level.value
        for o in session.exec(
            select(Outcome).where(col(Outcome.submission_id).in_(ids), col(Outcome.is_current).is_(True))
        ).all()
    }
    items = [
        {
            "id": sub.id,
            "provider": prov.code,
            "network": networks.get(prov.network_id),
            "case": f"{bc.case_code}@{bc.version}",
            "technique": techniques.get(bc.technique_id),
            "stage": bc.stage.value,
            "attempt": sub.attempt,
            "status": sub.status.value,
            "outcome": outcomes.get(sub.id or 0),
            "received_at": sub.received_at.isoformat(),
            "status_url": status_url(sub.id or 0),
        }
        for sub, prov, bc in rows
    ]
    return {"items": items, "total": total, "limit": limit, "offset": offset}
