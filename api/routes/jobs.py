"""/jobs: submit, list, show and cancel jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import ValidationError

from convlens.api import queries
from convlens.api.auth import Reader, Submitter, problem
from convlens.api.deps import BODY_ERRORS, ERRORS, MAX_OFFSET, NOT_FOUND, ExistingJob, QueryText, error_doc
from convlens.api.job_search import MAX_LENGTH, JobSearch
from convlens.api.schemas import JobList, JobRequest, JobView, KindName, Status
from convlens.ml.errors import problems
from convlens.worker.labels import MAX_TAGS, LabelEdit, edit_labels
from convlens.worker.paths import JOB_ID

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=201, response_model=JobView, responses={
    **BODY_ERRORS, 403: error_doc("the token may not submit, or a path outside the allowed roots"),
    202: {"model": JobView, "description": "stored as queued, but the broker could not be reached: the Warning "
                                           "header says so, and the workers' recovery sends it once it can"}})
def create_job(req: JobRequest, who: Submitter, response: Response) -> JobView:
    from convlens.worker.tasks import submit

    try:
        # The request is its own labels (a JobRequest is the JobLabels plus kind, params and after).
        submitted = submit(req.kind, req.params, strict_paths=True, submitted_by=who.name, after=req.after,
                           labels=req)
    except ValidationError as exc:
        errors = [{"field": p.field or "params", "message": p.message} for p in problems(exc)]
        raise problem(422, f"bad params for a {req.kind} job: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in errors), errors) from None
    if submitted.unsent:  # stored, not yet sent: accepted, with what happened
        response.status_code = 202
        response.headers["Warning"] = f'199 convlens "{submitted.unsent}"'
    return queries.get_job(submitted.job_id)


@router.get("/jobs", response_model=JobList, responses=ERRORS)
def list_jobs(_: Reader, status: Status | None = None,
              kind: KindName | None = None,
              parent_id: Annotated[str | None, Query(pattern=f"^{JOB_ID.pattern}$")] = None,
              tag: Annotated[list[QueryText], Query(max_length=MAX_TAGS, description="only runs with every one of "
                                                    "these tags")] = [],  # noqa: B006
              filter: Annotated[QueryText | None, Query(max_length=MAX_LENGTH, description=(  # noqa: A002
                  "conditions joined by `and`: KEY OP VALUE, e.g. `metrics.accuracy > 0.7 and params.epochs = 3`; "
                  "KEY: params.NAME, metrics.NAME, name, status, kind, id, tags; OP: = != < <= > >= ~"))] = None,
              sort: Annotated[QueryText | None, Query(max_length=80, description="KEY or -KEY (descending)")] = None,
              limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> JobList:
    search = JobSearch.parse(filter, sort, tag)
    return JobList(jobs=queries.list_jobs(status, kind, parent_id, limit, offset, search=search), limit=limit,
                   offset=offset)


@router.get("/jobs/{job_id}", response_model=JobView, responses=NOT_FOUND)
def get_job(job: ExistingJob, _: Reader) -> JobView:
    return job


@router.post("/jobs/{job_id}/cancel", response_model=JobView, responses={
    **NOT_FOUND, 403: error_doc("not the token's own job (only admin tokens cancel any job)"),
    409: error_doc("the job has already ended: nothing to cancel")})
def cancel_job(job: ExistingJob, who: Submitter) -> JobView:
    from convlens.worker.tasks import cancel

    if job.submitted_by != who.name and not who.allows("admin"):
        raise problem(403, f"job {job.id} was not submitted by token {who.name!r}; only admin tokens cancel "
                           "others' jobs")
    cancel(job.id)
    return queries.get_job(job.id)


@router.patch("/jobs/{job_id}", response_model=JobView, responses={
    **NOT_FOUND, **BODY_ERRORS, 403: error_doc("not the token's own job (only admin tokens edit any job)")})
def edit_job(job: ExistingJob, edit: LabelEdit, who: Submitter) -> JobView:
    """Renames, tags, untags or annotates a job (a name or note of "" clears it)."""
    if job.submitted_by != who.name and not who.allows("admin"):
        raise problem(403, f"job {job.id} was not submitted by token {who.name!r}; only admin tokens edit "
                           "others' jobs")
    if not who.allows("admin") and edit.priority is not None and edit.raises_priority_of(job.id):
        raise problem(403, f"only admin tokens raise a job's priority (job {job.id} is {job.priority})")
    edit_labels(job.id, edit)
    return queries.get_job(job.id)
