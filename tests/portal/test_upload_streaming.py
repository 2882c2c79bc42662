"""The upload size limit while the body streams (:mod:`portal.upload_limit`): 413 as soon as the bytes received pass
the limit, without Content-Length, the route never run and nothing written."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import portal.api_submissions
from models.settings import Settings
from models.tables import Submission
from portal.app import create_app
from portal.upload_limit import FORM_OVERHEAD_BYTES, UPLOAD_PATHS, UploadSizeLimit

URL = "/api/v1/submissions"
LIMIT = 10_000
CHUNK = 64 << 10
THRESHOLD = LIMIT + FORM_OVERHEAD_BYTES
"""Body bytes the middleware lets through before answering 413."""

BOUNDARY = "rtqa-streaming-test"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="case"\r\n\r\nlung-sabr-outlining-mini\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="archive"; filename="big.zip"\r\n'
    "Content-Type: application/zip\r\n\r\n"
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


class Body:
    """A multipart body of ``total`` bytes, produced chunk by chunk; counts what was taken from it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.taken = 0
        self.chunks = 0

    def __iter__(self) -> Iterator[bytes]:
        self.taken, self.chunks = len(HEAD), 1
        yield HEAD
        while self.taken < self.total:
            chunk = bytes(min(CHUNK, self.total - self.taken))
            self.taken += len(chunk)
            self.chunks += 1
            yield chunk
        yield TAIL


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Calls that reach the upload route's work (unpacking or storing)."""
    calls: list[str] = []
    real_unpack, real_store = portal.api_submissions._unpack, portal.api_submissions.store_submission

    def unpack(*args: Any, **kwargs: Any) -> Any:
        calls.append("unpack")
        return real_unpack(*args, **kwargs)

    def store(*args: Any, **kwargs: Any) -> Any:
        calls.append("store")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(portal.api_submissions, "_unpack", unpack)
    monkeypatch.setattr(portal.api_submissions, "store_submission", store)
    return calls


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_bytes": LIMIT})


def _nothing_written(settings: Settings, engine: Engine) -> None:
    for root in (settings.uploads_dir, settings.submissions_dir):
        assert not root.exists() or list(root.rglob("*")) == []
    with Session(engine) as session:
        assert session.exec(select(Submission)).all() == []


class TestThroughTheClient:
    def test_a_chunked_body_over_the_limit_is_refused_and_the_route_never_runs(
        self, limited: Settings, engine: Engine, tokens: dict[str, str], route_calls: list[str]
    ) -> None:
        body = Body(3 * THRESHOLD)
        sent: list[httpx.Request] = []
        with TestClient(create_app(limited, engine=engine)) as client:
            client.event_hooks["request"] = [sent.append]
            response = client.post(
                URL,
                headers={
                    "Authorization": f"Bearer {tokens['centre']}",
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                },
                content=iter(body),
            )
        assert "content-length" not in sent[0].headers and sent[0].headers["transfer-encoding"] == "chunked"
        assert response.status_code == 413
        detail = response.json()["detail"]
        assert f"limit of {LIMIT} bytes (RTQA_MAX_UPLOAD_BYTES)" in detail and f"more than {THRESHOLD} bytes" in detail
        assert route_calls == []
        _nothing_written(limited, engine)

    def test_a_body_under_the_threshold_reaches_the_route_which_counts_the_file(
        self, limited: Settings, engine: Engine, tokens: dict[str, str], route_calls: list[str]
    ) -> None:
        body = Body(LIMIT + 5 * CHUNK)  # over max_upload_bytes, under the middleware's allowance for the form
        with TestClient(create_app(limited, engine=engine)) as client:
            response = client.post(
                URL,
                headers={
                    "Authorization": f"Bearer {tokens['centre']}",
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                },
                content=iter(body),
            )
        assert response.status_code == 413 and response.json()["detail"].startswith("big.zip: the upload is larger")
        assert route_calls == ["unpack"]
        _nothing_written(limited, engine)

    def test_other_paths_and_methods_are_not_counted(self, limited: Settings, engine: Engine) -> None:
        assert {"/api/v1/submissions", "/dicomweb/studies"} == UPLOAD_PATHS
        with TestClient(create_app(limited, engine=engine)) as client:
            response = client.post("/api/v1/submissions/1/override", content=iter([bytes(THRESHOLD + 1)]))
        assert response.status_code == 401  # judged by the route (no token), not refused for its size


def _asgi_request(
    app: Any, body: Body, headers: list[tuple[bytes, bytes]], path: str = URL
) -> tuple[list[dict[str, Any]], int]:
    """Drive ``app`` with ``body`` one chunk per ``receive``; returns the messages sent and the receives made."""
    chunks = iter(body)
    sent: list[dict[str, Any]] = []
    receives = 0

    async def receive() -> dict[str, Any]:
        nonlocal receives
        receives += 1
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent, receives


class TestTheBodyIsNotReadPastTheLimit:
    def test_the_application_stops_receiving_once_the_limit_is_passed(
        self, limited: Settings, engine: Engine, tokens: dict[str, str], route_calls: list[str]
    ) -> None:
        body = Body(1 << 30)  # 1 GiB if it were all read
        headers = [
            (b"authorization", f"Bearer {tokens['centre']}".encode()),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"transfer-encoding", b"chunked"),
        ]
        sent, receives = _asgi_request(create_app(limited, engine=engine), body, headers)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
        assert b"RTQA_MAX_UPLOAD_BYTES" in sent[1]["body"]
        assert THRESHOLD < body.taken <= THRESHOLD + CHUNK  # stopped at the first chunk past the limit
        assert receives == body.chunks  # one receive per chunk, none after the refusal
        assert route_calls == []
        _nothing_written(limited, engine)

    def test_stow_rs_is_cut_off_the_same_way(self, limited: Settings, engine: Engine, tokens: dict[str, str]) -> None:
        body = Body(1 << 30)
        headers = [
            (b"authorization", f"Bearer {tokens['centre']}".encode()),
            (b"content-type", f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'.encode()),
            (b"transfer-encoding", b"chunked"),
        ]
        sent, receives = _asgi_request(create_app(limited, engine=engine), body, headers, path="/dicomweb/studies")
        assert sent[0]["status"] == 413 and b"RTQA_MAX_UPLOAD_BYTES" in sent[1]["body"] and len(sent) == 2
        assert THRESHOLD < body.taken <= THRESHOLD + CHUNK and receives == body.chunks
        _nothing_written(limited, engine)

    def test_a_declared_length_over_the_limit_is_refused_before_any_receive(
        self, limited: Settings, engine: Engine
    ) -> None:
        body = Body(1 << 30)
        headers = [(b"content-length", str(1 << 30).encode()), (b"content-type", b"application/zip")]
        sent, receives = _asgi_request(create_app(limited, engine=engine), body, headers)
        assert sent[0]["status"] == 413 and receives == 0 and body.taken == 0
        assert sent[1]["body"].startswith(b'{"detail": "the upload is 1073741824 bytes')

    def test_the_applications_late_answer_is_dropped(self) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"parse error"})
            raise RuntimeError("the body was cut off")

        sent, _ = _asgi_request(UploadSizeLimit(app, max_upload_bytes=LIMIT), Body(1 << 30), [])
        assert [m.get("status") for m in sent] == [413, None] and len(sent) == 2


class TestOverTheNetwork:
    """A real server on a loopback port and a client streaming without Content-Length."""

    def test_the_server_answers_413_long_before_the_body_ends(
        self, limited: Settings, engine: Engine, tokens: dict[str, str], route_calls: list[str]
    ) -> None:
        config = uvicorn.Config(
            create_app(limited, engine=engine), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            while not server.started:
                threading.Event().wait(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            body = Body(1 << 30)
            with httpx.Client(timeout=60) as client:
                response = client.post(
                    f"http://127.0.0.1:{port}{URL}",
                    headers={
                        "Authorization": f"Bearer {tokens['centre']}",
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    },
                    content=iter(body),
                )
        finally:
            server.should_exit = True
            thread.join(10)
        assert response.status_code == 413 and "RTQA_MAX_UPLOAD_BYTES" in response.json()["detail"]
        assert body.taken < 64 * THRESHOLD  # the client stopped when the server closed; 1 GiB was never sent
        assert route_calls == []
        _nothing_written(limited, engine)
