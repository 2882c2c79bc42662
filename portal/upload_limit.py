"""The upload size limit, enforced on the request body while it arrives (a pure ASGI middleware).

For ``POST`` to a path in :data:`UPLOAD_PATHS` the middleware answers 413 itself:

- at once, before any body is read, when ``Content-Length`` already exceeds the limit;
- otherwise as soon as the body bytes counted so far exceed it: the body may come without ``Content-Length``
  (``Transfer-Encoding: chunked``), which the multipart parser would otherwise spool whole to disk before the route
  runs. The application then receives ``http.disconnect`` instead of more body, so the route never runs, and
  whatever it tries to answer afterwards is dropped. The server closes the connection after the 413.

The limit is ``max_upload_bytes`` (``RTQA_MAX_UPLOAD_BYTES``) plus :data:`FORM_OVERHEAD_BYTES` for the multipart
headers and form fields; the route itself still counts the file bytes against ``max_upload_bytes`` exactly.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FORM_OVERHEAD_BYTES", "UPLOAD_PATHS", "UploadSizeLimit"]

UPLOAD_PATHS: Final = frozenset({"/api/v1/submissions", "/dicomweb/studies"})
"""Paths whose ``POST`` bodies are uploads, limited while streaming (a trailing slash is ignored)."""

FORM_OVERHEAD_BYTES: Final = 1 << 20
"""Allowance for multipart headers and form fields on top of ``max_upload_bytes``, in bytes."""

_log = logging.getLogger(__name__)


class UploadSizeLimit:
    """ASGI middleware: 413 for an upload body over ``max_upload_bytes`` + :data:`FORM_OVERHEAD_BYTES`, judged from
    ``Content-Length`` before reading and from the bytes received while streaming.

    Args:
        app: the application to wrap.
        max_upload_bytes: the configured limit (``RTQA_MAX_UPLOAD_BYTES``), named in the answer.
    """

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_upload_bytes + FORM_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_upload(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(
                send,
                f"the upload is {declared} bytes, larger than the limit of {self.max_upload_bytes} bytes "
                "(RTQA_MAX_UPLOAD_BYTES); send the submission in parts or ask the QA team",
            )
            return

        received = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    if not started:
                        await self._refuse(
                            send,
                            f"the upload is larger than the limit of {self.max_upload_bytes} bytes "
                            f"(RTQA_MAX_UPLOAD_BYTES): more than {self.max_body_bytes} bytes arrived; send the "
                            "submission in parts or ask the QA team",
                        )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the application's own answer to the cut-off request
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            _log.debug("upload refused at %d bytes; the application's error afterwards is ignored", received)

    @staticmethod
    async def _refuse(send: Send, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _is_upload(scope: Scope) -> bool:
    path = str(scope.get("path", ""))
    return scope["type"] == "http" and scope.get("method") == "POST" and (path.rstrip("/") or "/") in UPLOAD_PATHS
