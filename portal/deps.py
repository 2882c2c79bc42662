"""Request dependencies shared by the API routers and the pages: a database session per request, the user behind
the bearer token or the page session cookie, and the role checks. One authorisation policy serves every route: a
page and its API twin use the same dependencies, so they cannot disagree about who may see what.

A request authenticated by the session cookie must carry the CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``) on every unsafe method; bearer-token requests need none (a browser never sends those by itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from models.auth import TokenError, TokenHolder, hash_token, token_holder, user_for_token
from models.enums import Role
from models.settings import Settings
from models.tables import User

_bearer = HTTPBearer(auto_error=False, description="An rtqa API token (`rtqa tokens issue`).")

SESSION_COOKIE = "rtqa_session"
"""The cookie holding a page sign-in's session token (HttpOnly, SameSite=Lax, Secure behind https)."""

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ConnectionTickets:
    """At most as many requests using the database at once as the engine's pool has connections.

    Sync endpoints and dependencies run in worker threads, and a request moves between threads (authentication,
    endpoint, response validation) while its session holds a pooled connection. Without a bound, under load every
    worker thread could be waiting for a connection while the requests holding the connections wait for a thread,
    and the app stalls until the pool's timeout. A request therefore first waits, on the event loop and holding no
    thread, for a ticket; a request with a ticket always finds a connection. Half the pool is handed out as tickets,
    leaving room for the few requests that open a second session and for background work on the same engine.
    """

    def __init__(self, engine: Engine) -> None:
        pool = engine.pool
        capacity = pool.size() + max(0, pool._max_overflow) if isinstance(pool, QueuePool) else 0
        self.count = max(1, capacity // 2) if capacity else 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def semaphore(self) -> asyncio.Semaphore | None:
        """This event loop's semaphore (None when the pool never makes a caller wait, e.g. SQLite in memory)."""
        if not self.count:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a test client runs each app on a loop of its own
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.count)
        return self._semaphore


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A database session for one request, used under a :class:`ConnectionTickets` ticket.

    An async generator on purpose: waiting for the ticket and the clean-up (closing the session, returning the
    connection) run on the event loop, never holding a worker thread. Creating the session does no I/O; the
    endpoints and :func:`_authenticate` use it in worker threads, one at a time."""
    async with _ticket(request):
        with Session(request.app.state.engine) as session:
            yield session


def _ticket(request: Request) -> AbstractAsyncContextManager[object]:
    """Wait for (and hold) one of the app's :class:`ConnectionTickets`; nothing to wait for when the pool never makes
    a caller wait."""
    tickets: ConnectionTickets | None = getattr(request.app.state, "connection_tickets", None)
    semaphore = tickets.semaphore() if tickets is not None else None
    return semaphore if semaphore is not None else nullcontext()


SessionDep = Annotated[Session, Depends(get_session)]

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def in_one_thread(request: Request, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``work`` (which opens, uses and closes its own connection) in one worker thread, under a
    :class:`ConnectionTickets` ticket taken on the event loop, as :func:`get_session` does.

    The lean alternative to the dependency chain (:data:`SessionDep`, :data:`CurrentUser`) for a hot read-only
    route: authentication and the route's queries run in one thread hop and one pooled connection, which never
    waits for another thread while it is held."""
    async with _ticket(request):
        return await run_in_threadpool(work, *args, **kwargs)


def csrf_token_for(settings: Settings, session_token: str) -> str:
    """The CSRF token of a page session: HMAC-SHA256 of the session token's hash under the app's secret key."""
    return hmac.new(settings.resolved_secret_key(), hash_token(session_token).encode(), hashlib.sha256).hexdigest()


async def _check_csrf(request: Request, session_token: str) -> None:
    expected = csrf_token_for(request.app.state.settings, session_token)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get(CSRF_FIELD)  # type: ignore[assignment]
    if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="the form is out of date or was not sent by rtqa; reload it and try again"
        )


def _release_connection(session: Session) -> None:
    """End the authentication's transaction so its connection goes back to the pool before the endpoint's turn
    (the loaded user stays usable: nothing is expired)."""
    session.expire_on_commit = False
    session.commit()
    session.expire_on_commit = True


_BAD_TOKEN = "invalid, revoked or expired token"
_NO_TOKEN = "missing bearer token: send 'Authorization: Bearer <token>' (or sign in on the pages)"


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _authenticate(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tuple[User, str | None]:
    """The user behind the bearer token, else behind the session cookie (with that cookie); 401 when neither
    names an active user.

    A plain function, so FastAPI runs it in its thread pool: the token lookup is blocking database I/O and must not
    hold the event loop (under load, a loop blocked waiting for a pooled connection could never run the clean-up
    that returns one)."""
    if credentials is not None:
        user = user_for_token(session, credentials.credentials, touch=True)
        if user is None:
            raise _unauthorised(_BAD_TOKEN)
        _release_connection(session)
        return user, None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        user = user_for_token(session, cookie, touch=True)
        if user is not None:
            _release_connection(session)
            return user, cookie
    raise _unauthorised(_NO_TOKEN)


def authenticate_holder(connection: Connection, bearer: str | None, cookie: str | None) -> TokenHolder:
    """The user behind the bearer token, else behind the session cookie, as :func:`_authenticate` decides it (the
    same refusals), read with :func:`models.auth.token_holder` in one statement on ``connection``.

    For safe (read-only) methods only: a cookie-authenticated unsafe request needs :func:`current_user`'s CSRF check.
    Call it first in the connection's transaction (touching ``last_used_at`` may commit)."""
    if bearer is not None:
        try:
            return token_holder(connection, bearer, touch=True)
        except TokenError:
            raise _unauthorised(_BAD_TOKEN) from None
    if cookie:
        try:
            return token_holder(connection, cookie, touch=True)
        except TokenError:
            pass
    raise _unauthorised(_NO_TOKEN)


BEARER = _bearer
"""The bearer scheme every route authenticates with (``HTTPBearer``, credentials or None; its ``scheme_name`` names it
in the OpenAPI schema)."""


async def current_user(request: Request, auth: Annotated[tuple[User, str | None], Depends(_authenticate)]) -> User:
    """The signed-in user; a cookie-authenticated unsafe request must also carry the session's CSRF token."""
    user, cookie = auth
    if cookie is not None and request.method not in _SAFE_METHODS:
        await _check_csrf(request, cookie)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def staff_or_commissioner(user: CurrentUser) -> User:
    """The user, if they may see every provider (403 for centre tokens)."""
    if user.role is Role.CENTRE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="centre tokens may only read their own provider")
    return user


StaffOrCommissioner = Annotated[User, Depends(staff_or_commissioner)]


def staff_only(user: CurrentUser) -> User:
    """The user, if QA staff (403 otherwise)."""
    if user.role is not Role.STAFF:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"only QA staff may do this, not {user.role.value} users")
    return user


StaffOnly = Annotated[User, Depends(staff_only)]


def centre_only(user: CurrentUser) -> User:
    """The user, if a centre user with a provider (403 otherwise)."""
    if user.role is not Role.CENTRE or user.provider_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only centre users have this page")
    return user


CentreOnly = Annotated[User, Depends(centre_only)]
