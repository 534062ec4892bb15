"""The HTTP API (FastAPI): every endpoint behind a token (api.auth), typed responses and declared errors, so
/openapi.json documents every status each endpoint can answer with its real body."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import fastapi_offline
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import AfterValidator, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from convlens.api import dashboard, queries
from convlens.api.auth import Admin, Reader, Submitter, clean, problem, session_of, session_principal
from convlens.api.dashboard import render_error
from convlens.api.files import confined_response
from convlens.api.login import confirm_page
from convlens.api.login import router as login_router
from convlens.api.observe import exposition
from convlens.api.predictions_csv import csv_text
from convlens.api.schemas import (
    ErrorBody,
    Health,
    JobList,
    JobRequest,
    JobView,
    KindName,
    MetricsView,
    PredictionFilter,
    PredictionsView,
    Session,
    Status,
    TokenRequest,
    parse_cursor,
)
from convlens.api.tokens import (
    NewToken,
    TokenError,
    TokenList,
    TokenView,
    create_token,
    list_tokens,
    revoke_token,
)
from convlens.db.rows import PredictionRow
from convlens.ml.params import value_problem
from convlens.ml.settings import settings
from convlens.worker.dependencies import DependencyRefused
from convlens.worker.kinds import KINDS
from convlens.worker.lifecycle import JobError
from convlens.worker.paths import JOB_ID, PathRefused

app = FastAPI(title="convlens", version="0.1.0",
              description="Submit jobs (" + "; ".join(f"{k.name}: {k.title}" for k in KINDS.values())
              + "), follow them and query their results. Every endpoint but /health needs a token: "
              "`Authorization: Bearer TOKEN`.", docs_url=None, redoc_url=None)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# What every authenticated endpoint may answer besides its success.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("no token, or an invalid or revoked one"),
    403: _error("the token's scope does not allow this (or a cookie request without its CSRF token)"),
    422: _error("a malformed request: each problem with the field it is in"),
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 400: _error("a body that cannot be parsed (not UTF-8)")}
NOT_FOUND: dict[int | str, dict[str, Any]] = {**ERRORS, 404: _error("no such job, artifact or token")}
ARTIFACT_TYPES = ("image/png", "application/json", "text/csv", "text/html", "application/octet-stream")


def _text(value: str) -> str:
    problem_ = value_problem(value)
    if problem_:
        raise ValueError(problem_)
    return value


QueryText = Annotated[str, AfterValidator(_text)]
MAX_OFFSET = 10**12


LOGIN_HELP = ("Not logged in: open the login URL that `convlens api` printed, or one made with a token from "
              "`convlens tokens create NAME --scope read`: http://HOST:PORT/?token=TOKEN")
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


class BodyLimit:
    """Refuses a body over MAX_BODY (413) before it is read, and one of unknown length (411): every body must
    say its size, which the server then holds it to."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            refusal = None
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                refusal = (413, f"the body is over {MAX_BODY:,} bytes")
            elif length is None and b"transfer-encoding" in headers:
                refusal = (411, "send the body with a Content-Length header")
            if refusal is not None:
                response = JSONResponse(status_code=refusal[0], content={"detail": {"message": refusal[1],
                                                                                    "errors": []}})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


app.add_middleware(BodyLimit)


def _is_page(request: Request) -> bool:
    return request.url.path == "/" or request.url.path.startswith("/ui/")


app.mount("/static/swagger", StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="swagger")
app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")


@app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI from this server's own files (no CDN, no inline script: the CSP holds here too)."""
    return HTMLResponse(DOCS_PAGE)


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>convlens API</title>
<link rel="stylesheet" href="/static/swagger/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml"></head>
<body><div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""
app.include_router(dashboard.router)
app.include_router(login_router)


@app.exception_handler(StarletteHTTPException)
def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's and FastAPI's own errors (an unparsable body, an unknown path) in the one error shape; a
    page of the dashboard gets it as a page."""
    detail = exc.detail if isinstance(exc.detail, dict) else {"message": clean(str(exc.detail)), "errors": []}
    if _is_page(request):
        return render_error(request, exc.status_code, LOGIN_HELP if exc.status_code == 401 else detail["message"])
    return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)


@app.exception_handler(RequestValidationError)
def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]} for e in exc.errors()]
    message = "bad request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    if _is_page(request):
        return render_error(request, 422, clean(message))
    return JSONResponse(status_code=422, content={"detail": {"message": clean(message), "errors": [
        {k: clean(v) for k, v in e.items()} for e in errors]}})


@app.get("/health", response_model=Health, tags=["service"])
def health() -> Health:
    """Whether the API runs (no token needed)."""
    return Health()


@app.get("/", response_class=HTMLResponse, tags=["service"], responses={
    200: {"content": {"text/html": {}}, "description": "the dashboard's jobs page"},
    401: {"content": {"text/html": {}}, "description": "no session, or a bad token in the login URL"},
    422: {"content": {"text/html": {}}, "description": "a bad filter"}})
def home(request: Request, token: str | None = None, status: Status | None = None, kind: KindName | None = None,
         offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> Any:
    """The dashboard. The login URL (`/?token=...`) asks to confirm, then sets an HttpOnly, SameSite session
    cookie (a server-side session's id) and redirects here."""
    if token is not None:
        return confirm_page(request, token)
    who = session_principal(request)
    if who is None:
        return render_error(request, 401, LOGIN_HELP)
    return dashboard.jobs_page(request, who, status, kind, offset)


@app.get("/metrics", response_class=Response, tags=["service"], responses={
    **ERRORS, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def prometheus_metrics(_: Reader) -> Response:
    """Jobs by kind and status, queue depths and job durations, for Prometheus (scrape with a read token)."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


@app.get("/session", response_model=Session, responses=ERRORS, tags=["service"])
def session(request: Request, who: Reader) -> Session:
    """Who is calling; with a session cookie, also the CSRF token its POST and DELETE requests must send."""
    found = session_of(request)
    return Session(name=who.name, scope=who.scope, csrf_token=found.csrf if found and found.who == who else None)


@app.post("/jobs", status_code=201, response_model=JobView, tags=["jobs"],
          responses={**BODY_ERRORS, 403: _error("the token may not submit, or a path outside the allowed roots")})
def create_job(req: JobRequest, who: Submitter) -> JobView:
    from convlens.worker.tasks import submit

    try:
        job_id = submit(req.kind, req.params, strict_paths=True, submitted_by=who.name, after=req.after)
    except ValidationError as exc:
        errors = [{"field": ".".join(map(str, e["loc"])) or "params", "message": e["msg"].removeprefix("Value error, ")}
                  for e in exc.errors()]
        raise problem(422, f"bad params for a {req.kind} job: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in errors), errors) from None
    except PathRefused as exc:
        raise problem(403, str(exc)) from None
    except DependencyRefused as exc:
        raise problem(422, str(exc), [{"field": "after", "message": str(exc)}]) from None
    return queries.get_job(job_id)


@app.get("/jobs", response_model=JobList, tags=["jobs"], responses=ERRORS)
def list_jobs(_: Reader, status: Status | None = None,
              kind: Annotated[QueryText | None, Query(max_length=32)] = None,
              parent_id: Annotated[str | None, Query(pattern=f"^{JOB_ID.pattern}$")] = None,
              limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> JobList:
    return JobList(jobs=queries.list_jobs(status, kind, parent_id, limit, offset), limit=limit, offset=offset)


def _job_or_404(job_id: str) -> JobView:
    job = queries.get_job(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise problem(404, f"job {job_id} not found")
    return job


@app.get("/jobs/{job_id}", response_model=JobView, responses=NOT_FOUND, tags=["jobs"])
def get_job(job_id: str, _: Reader) -> JobView:
    return _job_or_404(job_id)


@app.post("/jobs/{job_id}/cancel", response_model=JobView, tags=["jobs"], responses={
    **NOT_FOUND, 403: _error("not the token's own job (only admin tokens cancel any job)")})
def cancel_job(job_id: str, who: Submitter) -> JobView:
    from convlens.worker.tasks import cancel

    job = _job_or_404(job_id)
    if job.submitted_by != who.name and not who.allows("admin"):
        raise problem(403, f"job {job_id} was not submitted by token {who.name!r}; only admin tokens cancel "
                           "others' jobs")
    try:
        cancel(job_id)
    except JobError as exc:
        raise problem(404, str(exc)) from None
    return _job_or_404(job_id)


@app.get("/jobs/{job_id}/metrics", response_model=MetricsView, responses=NOT_FOUND, tags=["results"])
def job_metrics(job_id: str, _: Reader) -> MetricsView:
    _job_or_404(job_id)
    return MetricsView(job_id=job_id, metrics=queries.metrics(job_id))


Filters = Annotated[PredictionFilter, Query()]


def _page(job_id: str, filters: PredictionFilter, limit: int, offset: int = 0,
          after: str | None = None) -> list[PredictionRow]:
    try:
        cursor = parse_cursor(after)
    except ValueError as exc:
        raise problem(422, str(exc), [{"field": "after", "message": str(exc)}]) from None
    return queries.predictions(job_id, filters, limit=limit, offset=offset, after=cursor)


@app.get("/jobs/{job_id}/predictions", response_model=PredictionsView, responses=NOT_FOUND, tags=["results"])
def job_predictions(job_id: str, _: Reader, filters: Filters, limit: int = Query(100, ge=1, le=10000),
                    offset: int = Query(0, ge=0, le=MAX_OFFSET),
                    after: str | None = Query(None, max_length=40,
                                              description="the previous page's next_after: fast at any depth")
                    ) -> PredictionsView:
    _job_or_404(job_id)
    rows = _page(job_id, filters, limit, offset, after)
    return PredictionsView(job_id=job_id, predictions=rows, limit=limit, offset=offset,
                           next_after=queries.next_cursor(rows, limit))


@app.get("/jobs/{job_id}/predictions.csv", response_class=StreamingResponse, tags=["results"], responses={
    **NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "every row the filters select, as CSV"}})
def job_predictions_csv(job_id: str, _: Reader, filters: Filters) -> StreamingResponse:
    """All rows the filters select, streamed page by page (keyset-paged: no deep offsets)."""
    _job_or_404(job_id)

    def lines() -> Iterator[str]:
        after, header = None, True
        while True:
            rows = _page(job_id, filters, 5000, after=after)
            yield csv_text(rows, header)
            header, after = False, queries.next_cursor(rows, 5000)
            if after is None:
                return

    return StreamingResponse(lines(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{job_id}-predictions.csv"'})


@app.get("/artifacts/{key}", response_class=Response, tags=["results"], responses={
    **NOT_FOUND, 200: {"content": {t: {} for t in ARTIFACT_TYPES}, "description": "the file"}})
def get_artifact(key: str, _: Reader) -> Response:
    """A job's file by its random key (listed in the job's `artifacts`)."""
    art = queries.artifact(key) if re.fullmatch(r"[0-9a-f]{32}", key) else None
    if art is None:
        raise problem(404, f"artifact {key} not found")
    media = mimetypes.guess_type(art.path)[0]
    media = media if media in ARTIFACT_TYPES else "application/octet-stream"
    return confined_response(art.path, settings().home_dir / "runs" / art.job_id, media, f"artifact {key}",
                             REPORT_HEADERS if media == "text/html" else None)


# A report (HTML that convlens wrote) may show inside the dashboard's own pages, and run nothing at all.
REPORT_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                                             "frame-ancestors 'self'; sandbox", "X-Frame-Options": "SAMEORIGIN"}


@app.get("/tokens", response_model=TokenList, responses=ERRORS, tags=["tokens"])
def get_tokens(_: Admin) -> TokenList:
    return TokenList(tokens=list_tokens())


@app.post("/tokens", status_code=201, response_model=NewToken, tags=["tokens"], responses={
    **BODY_ERRORS, 409: _error("that name is taken (names are never reused)")})
def post_token(req: TokenRequest, _: Admin) -> NewToken:
    """A new token; its secret is in this response only."""
    try:
        return create_token(req.name, req.scope)
    except TokenError as exc:
        raise problem(409, str(exc)) from None


@app.delete("/tokens/{name}", response_model=TokenView, responses=NOT_FOUND, tags=["tokens"])
def delete_token(name: Annotated[str, AfterValidator(_text)], _: Admin) -> TokenView:
    """Revokes a token: every request with it (and every session made from it) is refused from now on."""
    try:
        return revoke_token(name)
    except TokenError as exc:
        raise problem(404, str(exc)) from None
