"""What jobs stored: metrics, predictions (JSON pages and one CSV) and artifacts."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from convlens.api import queries
from convlens.api.auth import Reader, problem
from convlens.api.deps import MAX_OFFSET, NOT_FOUND, Cursor, ExistingJob, Filters
from convlens.api.files import artifact_response
from convlens.api.predictions_csv import csv_text
from convlens.api.schemas import HistoryView, MetricsView, PredictionsView, parse_cursor
from convlens.worker.kinds.sweep import SweepResult
from convlens.worker.sweeps import sweep_view

router = APIRouter(tags=["results"])
ARTIFACT_TYPES = ("image/png", "application/json", "text/csv", "text/html", "application/octet-stream")
CSV_PAGE = 5000  # rows read per query while the CSV streams
# A report (HTML that convlens wrote) may show inside the dashboard's own pages, and run nothing at all.
REPORT_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                                             "frame-ancestors 'self'; sandbox", "X-Frame-Options": "SAMEORIGIN"}


@router.get("/jobs/{job_id}/metrics", response_model=MetricsView, responses=NOT_FOUND)
def job_metrics(job: ExistingJob, _: Reader) -> MetricsView:
    return MetricsView(job_id=job.id, metrics=queries.metrics(job.id))


@router.get("/jobs/{job_id}/history", response_model=HistoryView, responses=NOT_FOUND)
def job_history(job: ExistingJob, _: Reader) -> HistoryView:
    """The epochs a training job has finished so far (while it runs too): poll it for live curves."""
    return HistoryView(job_id=job.id, epochs=job.history or [])


@router.get("/jobs/{job_id}/trials", response_model=SweepResult, responses=NOT_FOUND)
def sweep_trials(job: ExistingJob, _: Reader) -> SweepResult:
    """A sweep's trials (so far, while it runs) and its best trial: poll it to follow the search."""
    return sweep_view(job.id)


@router.get("/jobs/{job_id}/predictions", response_model=PredictionsView, responses=NOT_FOUND)
def job_predictions(job: ExistingJob, _: Reader, filters: Filters, after: Cursor,
                    limit: int = Query(100, ge=1, le=10000),
                    offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> PredictionsView:
    rows = queries.predictions(job.id, filters, limit=limit, offset=offset, after=after)
    return PredictionsView(job_id=job.id, predictions=rows, limit=limit, offset=offset,
                           next_after=queries.next_cursor(rows, limit))


@router.get("/jobs/{job_id}/predictions.csv", response_class=StreamingResponse, responses={
    **NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "every row the filters select, as CSV"}})
def job_predictions_csv(job: ExistingJob, _: Reader, filters: Filters) -> StreamingResponse:
    """All rows the filters select, streamed page by page (keyset-paged: no deep offsets)."""

    def lines() -> Iterator[str]:
        after, header = None, True
        while True:
            rows = queries.predictions(job.id, filters, limit=CSV_PAGE, after=after)
            yield csv_text(rows, header)
            header, after = False, parse_cursor(queries.next_cursor(rows, CSV_PAGE))
            if after is None:
                return

    return StreamingResponse(lines(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{job.id}-predictions.csv"'})


@router.get("/jobs/{job_id}/predictions.parquet", response_class=StreamingResponse, responses={
    **NOT_FOUND, 200: {"content": {"application/vnd.apache.parquet": {}},
                       "description": "every row the filters select, as Parquet (a row group per page)"}})
def job_predictions_parquet(job: ExistingJob, _: Reader, filters: Filters) -> StreamingResponse:
    """All rows the filters select, streamed as Parquet while it is written (typed columns, lists kept)."""
    from convlens.api.predictions_parquet import parquet_chunks

    queries.predictions(job.id, filters, limit=1)  # a mistake (an unknown label) is a 422 before the first byte
    return StreamingResponse(parquet_chunks(job.id, filters), media_type="application/vnd.apache.parquet",
                             headers={"Content-Disposition": f'attachment; filename="{job.id}-predictions.parquet"'})


@router.get("/artifacts/{key}", response_class=Response, responses={
    **NOT_FOUND, 200: {"content": {t: {} for t in ARTIFACT_TYPES}, "description": "the file"}})
def get_artifact(key: str, _: Reader) -> Response:
    """A job's file by its random key (listed in the job's `artifacts`)."""
    art = queries.artifact(key) if re.fullmatch(r"[0-9a-f]{32}", key) else None
    if art is None:
        raise problem(404, f"artifact {key} not found")
    media = mimetypes.guess_type(art.path)[0]
    media = media if media in ARTIFACT_TYPES else "application/octet-stream"
    return artifact_response(art.path, art.job_id, media, f"artifact {key}",
                             REPORT_HEADERS if media == "text/html" else None)
