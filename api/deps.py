"""What the routes share: the declared error answers, the job lookup, the prediction filters and the page cursor
(the JSON API, the CSV download and the dashboard's pages all take them from here)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import AfterValidator, ValidationError

from convlens.api import queries
from convlens.api.auth import problem
from convlens.api.schemas import ErrorBody, JobView, PredictionFilter, parse_cursor
from convlens.ml.errors import one_line
from convlens.ml.params import value_problem
from convlens.worker.job_ids import resolve_id


def error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# What every authenticated endpoint may answer besides its success.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_doc("no token, or an invalid or revoked one"),
    403: error_doc("the token's scope does not allow this (or a cookie request without its CSRF token)"),
    422: error_doc("a malformed request: each problem with the field it is in"),
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 400: error_doc("a body that cannot be parsed (not UTF-8)")}
NOT_FOUND: dict[int | str, dict[str, Any]] = {**ERRORS, 404: error_doc("no such job, artifact or token")}
MAX_OFFSET = 10**12
# POST /predict's uploads; the request's size is refused from its Content-Length (api.http.BodyLimit).
MAX_FILES = 16
MAX_FILE_BYTES = 10 * 2**20
MAX_REQUEST_BYTES = 40 * 2**20
LOGIN_HELP = ("Not logged in: open the login URL that `convlens api` printed, or one made with a token from "
              "`convlens tokens create NAME --scope read`: http://HOST:PORT/?token=TOKEN")


def _text(value: str) -> str:
    problem_ = value_problem(value)
    if problem_:
        raise ValueError(problem_)
    return value


QueryText = Annotated[str, AfterValidator(_text)]


def job_or_404(job_id: str) -> JobView:
    """The job the path names, by its id or a unique prefix of 4+ characters (404 for none, a malformed id
    included; 422 listing them for several)."""
    job = queries.get_job(resolve_id(job_id))
    if job is None:  # gone between the two reads
        raise problem(404, f"job {job_id} not found")
    return job


ExistingJob = Annotated[JobView, Depends(job_or_404)]
# The JSON API's and the CSV's filters, documented in the OpenAPI schema field by field.
Filters = Annotated[PredictionFilter, Query()]


def page_filters(request: Request) -> PredictionFilter:
    """The same filters from a dashboard form, whose empty fields mean "not set"."""
    q = request.query_params
    try:
        return PredictionFilter.model_validate({k: v for k, v in q.items()
                                                if k in PredictionFilter.model_fields and v != ""})
    except ValidationError as exc:
        raise problem(422, "bad filter: " + one_line(exc)) from None


def page_cursor(after: str | None = Query(None, max_length=40, description="the previous page's next_after: "
                                          "fast at any depth")) -> tuple[int, int] | None:
    try:
        return parse_cursor(after)
    except ValueError as exc:
        raise problem(422, str(exc), [{"field": "after", "message": str(exc)}]) from None


Cursor = Annotated[tuple[int, int] | None, Depends(page_cursor)]
PageFilters = Annotated[PredictionFilter, Depends(page_filters)]
