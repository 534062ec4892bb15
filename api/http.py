"""The HTTP API (FastAPI): typed responses, so /openapi.json documents every body."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import ValidationError

from convlens.api import queries
from convlens.api.schemas import ErrorBody, JobList, JobRequest, JobView, MetricsView, PredictionsView, Status
from convlens.ml.settings import settings
from convlens.worker.kinds import KINDS
from convlens.worker.lifecycle import JobError
from convlens.worker.paths import FolderRefused

app = FastAPI(title="convlens", version="0.1.0",
              description="Submit jobs (" + "; ".join(f"{k.name}: {k.title}" for k in KINDS.values())
              + "), follow them and query their results.")
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such job or artifact"}}


def _problem(status: int, message: str, errors: list | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail={"message": message, "errors": errors or []})


@app.post("/jobs", status_code=201, response_model=JobView,
          responses={403: {"model": ErrorBody, "description": "a folder outside the allowed roots"},
                     422: {"model": ErrorBody, "description": "bad params"}})
def create_job(req: JobRequest) -> JobView:
    from convlens.worker.tasks import submit

    try:
        job_id = submit(req.kind, req.params, strict_paths=True)
    except ValidationError as exc:
        errors = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        raise _problem(422, f"bad params for a {req.kind} job: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in errors), errors) from None
    except FolderRefused as exc:
        raise _problem(403, str(exc)) from None
    return queries.get_job(job_id)


@app.get("/jobs", response_model=JobList)
def list_jobs(status: Status | None = None, kind: str | None = None, parent_id: str | None = None,
              limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)) -> JobList:
    return JobList(jobs=queries.list_jobs(status, kind, parent_id, limit, offset), limit=limit, offset=offset)


def _job_or_404(job_id: str) -> JobView:
    job = queries.get_job(job_id)
    if job is None:
        raise _problem(404, f"job {job_id} not found")
    return job


@app.get("/jobs/{job_id}", response_model=JobView, responses=NOT_FOUND)
def get_job(job_id: str) -> JobView:
    return _job_or_404(job_id)


@app.post("/jobs/{job_id}/cancel", response_model=JobView, responses=NOT_FOUND)
def cancel_job(job_id: str) -> JobView:
    from convlens.worker.tasks import cancel

    try:
        cancel(job_id)
    except JobError as exc:
        raise _problem(404, str(exc)) from None
    return _job_or_404(job_id)


@app.get("/jobs/{job_id}/metrics", response_model=MetricsView, responses=NOT_FOUND)
def job_metrics(job_id: str) -> MetricsView:
    _job_or_404(job_id)
    return MetricsView(job_id=job_id, metrics=queries.metrics(job_id))


@app.get("/jobs/{job_id}/predictions", response_model=PredictionsView, responses=NOT_FOUND)
def job_predictions(job_id: str, label: str | None = None, min_confidence: float | None = Query(None, ge=0, le=1),
                    misclassified: bool = False, errors: bool | None = None,
                    limit: int = Query(100, ge=1, le=10000), offset: int = Query(0, ge=0)) -> PredictionsView:
    _job_or_404(job_id)
    rows = queries.predictions(job_id, label, min_confidence, misclassified, errors, limit, offset)
    return PredictionsView(job_id=job_id, predictions=rows, limit=limit, offset=offset)


@app.get("/artifacts/{artifact_id}", response_class=FileResponse, responses={
    **NOT_FOUND, 200: {"content": {"application/octet-stream": {}}, "description": "the file"}})
def get_artifact(artifact_id: int) -> FileResponse:
    art = queries.artifact(artifact_id)
    if art is None:
        raise _problem(404, f"artifact {artifact_id} not found")
    path = Path(art.path).resolve()
    if not path.is_relative_to(settings().home_dir) or not path.is_file():
        raise _problem(404, f"artifact {artifact_id}: file is gone")
    return FileResponse(path)
