"""The service itself: health, the dashboard's front door, Prometheus metrics, the caller's session, /docs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from convlens.api import dashboard
from convlens.api.auth import Reader, session_of, session_principal
from convlens.api.deps import ERRORS, LOGIN_HELP, MAX_OFFSET
from convlens.api.login import confirm_page
from convlens.api.observe import exposition
from convlens.api.schemas import Health, KindName, Session, Status

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
def health() -> Health:
    """Whether the API runs (no token needed)."""
    return Health()


@router.get("/", response_class=HTMLResponse, responses={
    200: {"content": {"text/html": {}}, "description": "the dashboard's jobs page"},
    401: {"content": {"text/html": {}}, "description": "no session, or a bad token in the login URL"},
    429: {"content": {"text/html": {}}, "description": "too many failed logins from this address (Retry-After)"},
    422: {"content": {"text/html": {}}, "description": "a bad filter"}})
def home(request: Request, token: str | None = None, status: Status | None = None, kind: KindName | None = None,
         offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> Any:
    """The dashboard. The login URL (`/?token=...`) asks to confirm, then sets an HttpOnly, SameSite session
    cookie (a server-side session's id) and redirects here."""
    if token is not None:
        return confirm_page(request, token)
    who = session_principal(request)
    if who is None:
        return dashboard.render_error(request, 401, LOGIN_HELP)
    return dashboard.jobs_page(request, who, status, kind, offset)


@router.get("/metrics", response_class=Response, responses={
    **ERRORS, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def prometheus_metrics(_: Reader) -> Response:
    """Jobs by kind and status, queue depths and job durations, for Prometheus (scrape with a read token)."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/session", response_model=Session, responses=ERRORS)
def session(request: Request, who: Reader) -> Session:
    """Who is calling; with a session cookie, also the CSRF token its POST and DELETE requests must send."""
    found = session_of(request)
    return Session(name=who.name, scope=who.scope, csrf_token=found.csrf if found and found.who == who else None)


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>convlens API</title>
<link rel="stylesheet" href="/static/swagger/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml"></head>
<body><div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI from this server's own files (no CDN, no inline script: the CSP holds here too)."""
    return HTMLResponse(DOCS_PAGE)
