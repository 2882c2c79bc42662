"""DICOMweb STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies`` with a ``multipart/related; type="application/dicom"``
body, one DICOM file per part, authenticated with the centre's bearer token.

The body is parsed as it streams in and each part written to its own file in a temporary folder under the data
directory (nothing is held whole in memory; the upload limit ``RTQA_MAX_UPLOAD_BYTES`` applies to the body). Each
instance is checked as the C-STORE receiver checks it (:mod:`flows.dicom_instances`) and every study received
becomes ONE submission through the upload path (:class:`flows.dicom_staging.Staging`); the remaining steps run
afterwards as for an upload. The answer is the Store Instances Response Module in DICOM JSON: (0008,1199)
*ReferencedSOPSequence* for the instances stored, (0008,1198) *FailedSOPSequence* with (0008,1197) *FailureReason*
(the status codes of :class:`flows.dicom_instances.PushStatus`) and, as in a C-STORE response, an (0000,0902)
*ErrorComment* (at most 64 characters; the full reasons are in the submission's ``/received``), and (0008,119A)
*OtherFailuresSequence* for parts that are not DICOM. HTTP status: 200 all stored, 202 some stored, 409 none.
``Location`` (one submission) and ``Link`` headers give the submissions' status URLs, where ``/received`` tells
what arrived and what is still missing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydicom.dataset import Dataset
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlmodel import Session

from flows.dicom_cases import CaseIndex
from flows.dicom_instances import COMMENT_MAX_CHARS, InstanceRefusedError, PushStatus
from flows.dicom_staging import PushReceipt, Staging
from flows.intake import upload_folder
from models.settings import Settings
from portal.api_submissions import _provider_for_upload, status_url
from portal.deps import CurrentUser, SessionDep
from portal.upload_limit import FORM_OVERHEAD_BYTES

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"
"""Media type of the response."""

PART_TYPE = "application/dicom"
"""The only part media type taken (DICOM PS3.10 files)."""


class DicomJSONResponse(JSONResponse):
    """A DICOM JSON (PS3.18 Annex F) answer."""

    media_type = DICOM_JSON


@dataclass
class _Part:
    path: Path
    content_type: str = ""


@dataclass
class _Body:
    """A multipart/related body written part by part into ``folder``."""

    folder: Path
    budget: int
    parts: list[_Part] = field(default_factory=list)
    size: int = 0
    ended: bool = False
    _file: IO[bytes] | None = None
    _field: bytes = b""
    _value: bytes = b""
    _headers: dict[str, str] = field(default_factory=dict)

    def parser(self, boundary: bytes) -> MultipartParser:
        def part_begin() -> None:
            self._headers = {}

        def header_field(data: bytes, start: int, end: int) -> None:
            self._field += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            self._value += data[start:end]

        def header_end() -> None:
            self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
            self._field = self._value = b""

        def headers_finished() -> None:
            part = _Part(self.folder / f"part-{len(self.parts) + 1:05d}.dcm", self._headers.get("content-type", ""))
            self.parts.append(part)
            self._file = part.path.open("wb")

        def part_data(data: bytes, start: int, end: int) -> None:
            assert self._file is not None
            self._file.write(data[start:end])

        def part_end() -> None:
            if self._file is not None:
                self._file.close()
                self._file = None

        def end() -> None:
            self.ended = True

        return MultipartParser(
            boundary,
            {
                "on_part_begin": part_begin,
                "on_header_field": header_field,
                "on_header_value": header_value,
                "on_header_end": header_end,
                "on_headers_finished": headers_finished,
                "on_part_data": part_data,
                "on_part_end": part_end,
                "on_end": end,
            },
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _media_type(request: Request) -> bytes:
    """The boundary of a ``multipart/related; type="application/dicom"`` body (415 / 400 otherwise)."""
    media, options = parse_options_header(request.headers.get("content-type", ""))
    part_type = options.get(b"type", b"").decode("latin-1").strip('"').lower()
    if media.lower() != b"multipart/related" or part_type not in ("", PART_TYPE):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail='send the instances as multipart/related; type="application/dicom" (one DICOM file per part)',
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="the Content-Type has no multipart boundary")
    return boundary


async def _receive_body(request: Request, body: _Body, boundary: bytes, limit: int) -> None:
    parser = body.parser(boundary)
    try:
        async for chunk in request.stream():
            body.size += len(chunk)
            if body.size > body.budget:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    detail=f"the request is larger than the limit of {limit} bytes (RTQA_MAX_UPLOAD_BYTES); send the "
                    "instances in several requests",
                )
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"the multipart body cannot be parsed: {err}") from None
    finally:
        body.close()
    if not body.ended:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="the multipart body ends before its closing boundary")
    if not body.parts:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="the request holds no parts; send DICOM files")


@dataclass
class _Result:
    stored: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)
    other: list[tuple[int, str]] = field(default_factory=list)
    receipts: list[PushReceipt] = field(default_factory=list)


def _uids_of(path: Path) -> tuple[str, str] | None:
    """(SOPClassUID, SOPInstanceUID) of a refused part, if it can be read."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    except Exception:  # not DICOM, or damaged
        return None


def _store(body: _Body, *, settings: Settings, engine: Any, provider_code: str, sender: str) -> _Result:
    """Check and stage every part, then make each study a submission (runs in a worker thread)."""
    result = _Result()
    staging = Staging(body.folder / "staging", settings)
    with Session(engine) as session:
        index = CaseIndex.load(session)
    for number, part in enumerate(body.parts, start=1):
        media = part.content_type.split(";")[0].strip().lower()
        if media not in ("", PART_TYPE):
            result.other.append((int(PushStatus.CANNOT_UNDERSTAND), _comment(f"part {number}: {media} not taken")))
            continue
        try:
            staging.receive(part.path, provider_code=provider_code, index=index, sender=sender)
        except InstanceRefusedError as refused:
            uids = _uids_of(part.path)
            if uids is None:
                result.other.append((int(refused.status), _comment(f"part {number}: {refused.comment}")))
            else:
                result.failed.append((*uids, int(refused.status), refused.comment))
    for provider, study, _ in staging.studies():
        receipt = staging.finalise(provider, study, index=index, via="STOW-RS")
        if receipt is None:
            continue
        result.receipts.append(receipt)
        if receipt.submission_id is not None:
            result.stored.extend(receipt.instances)
        else:
            code = int(receipt.status or PushStatus.CANNOT_UNDERSTAND)
            result.failed.extend((c, i, code, receipt.comment or "") for c, i in receipt.instances)
    return result


def _comment(text: str) -> str:
    """``text`` cut to the 64 characters of an (0000,0902) ErrorComment."""
    return text if len(text) <= COMMENT_MAX_CHARS else text[: COMMENT_MAX_CHARS - 3] + "..."


def _item(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def _response_dataset(result: _Result) -> Dataset:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-1), with an ErrorComment beside each reason."""
    ds = Dataset()
    if result.stored:
        ds.ReferencedSOPSequence = [_item(c, i) for c, i in result.stored]
    if result.failed:
        failed = []
        for c, i, code, reason in result.failed:
            item = _item(c, i)
            item.FailureReason = code
            item.ErrorComment = reason
            failed.append(item)
        ds.FailedSOPSequence = failed
    if result.other:
        other = []
        for code, reason in result.other:
            item = Dataset()
            item.FailureReason = code
            item.ErrorComment = reason
            other.append(item)
        ds.OtherFailuresSequence = other
    return ds


@router.post(
    "/studies",
    status_code=status.HTTP_200_OK,
    response_class=DicomJSONResponse,
    response_description="Every instance stored",
    responses={
        202: {"description": "Some instances stored (FailedSOPSequence lists the others)"},
        409: {"description": "No instance stored"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": 'multipart/related; type="application/dicom": one DICOM file (PS3.10) per part',
            "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def store_instances(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    provider: Annotated[str | None, Query(description="Provider code (staff); centres store for their own.")] = None,
) -> DicomJSONResponse:
    """STOW-RS: store the instances of one centre's submission (see the module docstring)."""
    settings: Settings = request.app.state.settings
    provider_code = _provider_for_upload(session, user, provider)
    boundary = _media_type(request)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > settings.max_upload_bytes + FORM_OVERHEAD_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"the request is {length} bytes, larger than the limit of {settings.max_upload_bytes} bytes "
            "(RTQA_MAX_UPLOAD_BYTES); send the instances in several requests",
        )
    sender = user.email
    session.rollback()  # hold no transaction while the body streams in
    with upload_folder(settings.uploads_dir) as folder:
        body = _Body(folder / f"parts-{uuid.uuid4().hex[:8]}", settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
        body.folder.mkdir()
        await _receive_body(request, body, boundary, settings.max_upload_bytes)
        result = await run_in_threadpool(
            _store, body, settings=settings, engine=request.app.state.engine, provider_code=provider_code, sender=sender
        )
    headers: dict[str, str] = {}
    submissions = [r.submission_id for r in result.receipts if r.submission_id is not None]
    for receipt in result.receipts:
        if receipt.created and receipt.submission_id is not None:
            request.app.state.runner.notify(receipt.submission_id)
    if submissions:
        headers["Link"] = ", ".join(f'<{status_url(s)}>; rel="related"' for s in submissions)
        if len(submissions) == 1:
            headers["Location"] = status_url(submissions[0])
    code = status.HTTP_200_OK
    if result.failed or result.other:
        code = status.HTTP_202_ACCEPTED if result.stored else status.HTTP_409_CONFLICT
    return DicomJSONResponse(_response_dataset(result).to_json_dict(), status_code=code, headers=headers)
