"""The HTTP API (FastAPI). OpenAPI at /openapi.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ValidationError

from api import queries
from db.models import JOB_STATUSES
from db.session import home
from worker import params as P

app = FastAPI(title="convlens", version="0.1.0",
              description="Submit training, k-fold, layer-analysis and bulk-classification jobs; query results.")


class JobRequest(BaseModel):
    kind: Literal["train", "kfold", "layers", "classify"]
    params: dict[str, Any] = {}


def _unprocessable(message: str, errors: list | None = None) -> HTTPException:
    return HTTPException(status_code=422, detail={"message": message, "errors": errors or []})


@app.post("/jobs", status_code=201)
def create_job(req: JobRequest) -> dict[str, Any]:
    from worker.paths import FolderRefused, check_folder

    try:
        params = P.validate(req.kind, req.params)
    except ValidationError as exc:
        errors = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        raise _unprocessable(f"bad params for a {req.kind} job: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in errors), errors) from None
    if req.kind == "classify":
        try:
            params["folder"] = str(check_folder(params["folder"], require_roots=True))
        except FolderRefused as exc:
            raise HTTPException(status_code=403, detail={"message": str(exc)}) from None
    from worker.tasks import submit

    job_id = submit(req.kind, params)
    return queries.get_job(job_id)


@app.get("/jobs")
def list_jobs(status: Literal[JOB_STATUSES] | None = None, kind: str | None = None,  # type: ignore[valid-type]
              parent_id: str | None = None, limit: int = Query(50, ge=1, le=1000),
              offset: int = Query(0, ge=0)) -> dict[str, Any]:
    jobs = queries.list_jobs(status, kind, parent_id, limit, offset)
    return {"jobs": jobs, "limit": limit, "offset": offset}


def _job_or_404(job_id: str) -> dict[str, Any]:
    job = queries.get_job(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail={"message": f"job {job_id} not found"})
    return job


@app.get("/jobs/{job_id}")
def get_job(job_id: str) -> dict[str, Any]:
    return _job_or_404(job_id)


@app.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str) -> dict[str, Any]:
    _job_or_404(job_id)
    from worker.tasks import cancel

    cancel(job_id)
    return _job_or_404(job_id)


@app.get("/jobs/{job_id}/metrics")
def job_metrics(job_id: str) -> dict[str, Any]:
    _job_or_404(job_id)
    return {"job_id": job_id, "metrics": queries.metrics(job_id)}


@app.get("/jobs/{job_id}/predictions")
def job_predictions(job_id: str, label: str | None = None, min_confidence: float | None = Query(None, ge=0, le=1),
                    misclassified: bool = False, errors: bool | None = None,
                    limit: int = Query(100, ge=1, le=10000), offset: int = Query(0, ge=0)) -> dict[str, Any]:
    _job_or_404(job_id)
    rows = queries.predictions(job_id, label, min_confidence, misclassified, errors, limit, offset)
    return {"job_id": job_id, "predictions": rows, "limit": limit, "offset": offset}


@app.get("/artifacts/{artifact_id}")
def get_artifact(artifact_id: int) -> FileResponse:
    art = queries.artifact(artifact_id)
    if art is None:
        raise HTTPException(status_code=404, detail={"message": f"artifact {artifact_id} not found"})
    path = Path(art["path"]).resolve()
    if not path.is_relative_to(home()) or not path.is_file():
        raise HTTPException(status_code=404, detail={"message": f"artifact {artifact_id}: file is gone"})
    return FileResponse(path)
