"""Server-rendered pages (Jinja2, plain forms, a little vendored-free JavaScript) for centres, QA staff and
commissioners. Every asset is served from ``portal/static``; nothing is fetched from a CDN, the API docs included.

Pages use the same dependencies as the API (:mod:`portal.deps`), so one authorisation policy serves both. Errors on
page routes render as pages: 401 sends the browser to the sign-in page, other statuses show their detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.auth import user_for_token
from models.enums import Role
from models.tables import User
from portal.deps import CSRF_FIELD, SESSION_COOKIE, csrf_token_for

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=HERE / "templates")

API_PREFIXES = ("/api/", "/dicomweb", "/health", "/openapi.json", "/static/")
"""Paths answered as JSON (or files) whatever the client accepts; everything else is a page."""


@dataclass(frozen=True)
class NavLink:
    path: str
    label: str


NAV: dict[Role, tuple[NavLink, ...]] = {
    Role.CENTRE: (
        NavLink("/centre", "Credentials"),
        NavLink("/cases", "Benchmark cases"),
        NavLink("/upload", "Upload"),
        NavLink("/submissions", "Submissions"),
        NavLink("/questionnaire", "Questionnaire"),
    ),
    Role.STAFF: (
        NavLink("/staff/queue", "Queue"),
        NavLink("/staff/audit", "Audit log"),
        NavLink("/staff/users", "Users and tokens"),
        NavLink("/staff/flows", "Flows"),
        NavLink("/network", "Networks"),
        NavLink("/trials", "Trials"),
        NavLink("/expiring", "Expiring"),
        NavLink("/national", "National view"),
    ),
    Role.COMMISSIONER: (
        NavLink("/network", "Networks"),
        NavLink("/trials", "Trials"),
        NavLink("/expiring", "Expiring"),
        NavLink("/national", "National view"),
    ),
}
"""The navigation bar per role; the first link is the role's home page."""


def home_path(user: User) -> str:
    """Where a signed-in user lands."""
    return NAV[user.role][0].path


def render(request: Request, name: str, user: User | None = None, status_code: int = 200, **context: Any) -> Response:
    """Render template ``name`` with the signed-in ``user``, the navigation and the form CSRF token."""
    cookie = request.cookies.get(SESSION_COOKIE)
    csrf = csrf_token_for(request.app.state.settings, cookie) if cookie and user is not None else ""
    return templates.TemplateResponse(
        request,
        name,
        {"user": user, "nav": NAV.get(user.role, ()) if user else (), "csrf_token": csrf, "csrf_field": CSRF_FIELD}
        | context,
        status_code=status_code,
    )


def signed_in_user(request: Request) -> User | None:
    """The user behind the page session cookie, if any (for pages that anyone may see, and error pages)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    with Session(request.app.state.engine) as session:
        user = user_for_token(session, cookie)
        if user is not None:
            session.expunge(user)
        return user


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(API_PREFIXES)


async def _page_errors(request: Request, exc: StarletteHTTPException) -> Response:
    if not _is_page(request):
        return await http_exception_handler(request, exc)
    if exc.status_code == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(target)}", status_code=303)
    user = await run_in_threadpool(signed_in_user, request)  # database I/O: not on the event loop
    return render(request, "error.html", user, status_code=exc.status_code, status=exc.status_code, detail=exc.detail)


def install_pages(app: FastAPI) -> None:
    """Mount the static files, the vendored API docs, the page error handler and the page routers on ``app``."""
    from portal.pages import (
        auth,
        centre,
        commissioning,
        questionnaire,
        staff_audit,
        staff_flows,
        staff_queue,
        staff_review,
        staff_users,
        submissions,
    )
    from portal.pages import national as national_pages
    from portal.pages import report as report_pages

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(StarletteHTTPException, _page_errors)  # type: ignore[arg-type]

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="rtqa API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.include_router(auth.router)
    app.include_router(commissioning.router)
    app.include_router(centre.router)
    app.include_router(submissions.router)
    app.include_router(questionnaire.router)
    app.include_router(staff_queue.router)
    app.include_router(staff_review.router)
    app.include_router(staff_audit.router)
    app.include_router(staff_users.router)
    app.include_router(staff_flows.router)
    app.include_router(report_pages.router)
    app.include_router(national_pages.router)
