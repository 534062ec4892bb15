"""The HTTP API (FastAPI): the app, its middlewares and error handlers, and one table of its routers (one per
resource under api/routes, plus the dashboard's pages and the login). Every endpoint but /health is behind a token
(api.auth), with typed responses and declared errors, so /openapi.json documents every status each endpoint can
answer with its real body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from convlens.api import dashboard
from convlens.api.auth import clean, problem
from convlens.api.dashboard import render_error
from convlens.api.deps import LOGIN_HELP, MAX_REQUEST_BYTES
from convlens.api.login import router as login_router
from convlens.api.routes import audit, jobs, models, predict, results, service, tokens
from convlens.ml.errors import ConvlensError, problems
from convlens.worker.audit import Actor, acting_as
from convlens.worker.kinds import KINDS

app = FastAPI(title="convlens", version="0.1.0",
              description="Submit jobs (" + "; ".join(f"{k.name}: {k.title}" for k in KINDS.values())
              + "), follow them and query their results. Every endpoint but /health needs a token: "
              "`Authorization: Bearer TOKEN`.", docs_url=None, redoc_url=None)


# What every response carries: scripts and styles from this origin only, no framing, no referrer (a login
# URL holds a token), and no guessing of content types.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


@app.middleware("http")
async def _security_headers(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


MAX_BODY = 1 << 20  # bytes: the largest job request is a few kB; parsing 10 MB of JSON took seconds of CPU
BODY_LIMITS = {"/predict": MAX_REQUEST_BYTES}  # image uploads


class BodyLimit:
    """Refuses a body over MAX_BODY (or its path's own limit, BODY_LIMITS) with 413 before it is read, and one
    of unknown length (411): every body must say its size, which the server then holds it to."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            refusal = None
            limit = BODY_LIMITS.get(scope["path"], MAX_BODY)
            if length is not None and (not length.isdigit() or int(length) > limit):
                refusal = (413, f"the body is over {limit:,} bytes")
            elif length is None and b"transfer-encoding" in headers:
                refusal = (411, "send the body with a Content-Length header")
            if refusal is not None:
                response = JSONResponse(status_code=refusal[0], content={"detail": {"message": refusal[1],
                                                                                    "errors": []}})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


app.add_middleware(BodyLimit)


class AuditActor:
    """Says who asks for each request's changes (worker.audit): the client's address now, the token's name once
    authentication knows it (api.auth fills it into the same object)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        with acting_as(Actor(address=client[0] if client else None)):
            await self.app(scope, receive, send)


app.add_middleware(AuditActor)


def _is_page(request: Request) -> bool:
    return request.url.path == "/" or request.url.path.startswith("/ui/")


app.mount("/static/swagger", StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="swagger")
app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")


for router in (service.router, jobs.router, results.router, models.router, predict.router, tokens.router,
               audit.router, dashboard.router, login_router):
    app.include_router(router)


@app.exception_handler(StarletteHTTPException)
def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's and FastAPI's own errors (an unparsable body, an unknown path) in the one error shape; a
    page of the dashboard gets it as a page."""
    detail = exc.detail if isinstance(exc.detail, dict) else {"message": clean(str(exc.detail)), "errors": []}
    if _is_page(request):
        return render_error(request, exc.status_code, LOGIN_HELP if exc.status_code == 401 else detail["message"])
    return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)


@app.exception_handler(ConvlensError)
def _user_error(request: Request, exc: ConvlensError) -> Response:
    """Every error a user can act on, from any layer, translated here once: a message that names the field as
    the CLI does (`--after X: ...`) names it as the request does (`after X: ...`)."""
    message, flag = str(exc), f"--{exc.field}"
    if exc.field and message.startswith(flag):
        message = exc.field + message[len(flag):]
    errors = [{"field": exc.field, "message": message}] if exc.field else None
    return _http_error(request, problem(exc.http_status, message, errors))


@app.exception_handler(RequestValidationError)
def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = [{"field": p.field, "message": p.message} for p in problems(exc)]
    message = "bad request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    if _is_page(request):
        return render_error(request, 422, clean(message))
    return JSONResponse(status_code=422, content={"detail": {"message": clean(message), "errors": [
        {k: clean(v) for k, v in e.items()} for e in errors]}})
