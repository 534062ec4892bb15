"""Typed views of jobs and results: what the HTTP API returns (its OpenAPI schema) and the CLI prints as JSON."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from convlens.db.models import JOB_STATUSES, SCOPES
from convlens.db.rows import ArtifactRow, MetricRow, PredictionRow
from convlens.ml.progress import ProgressEvent
from convlens.ml.provenance import Provenance
from convlens.worker.kinds import KINDS
from convlens.worker.labels import PRIORITY_HELP, JobLabels, PriorityName

KindName = Literal[tuple(KINDS)]  # type: ignore[valid-type]
Status = Literal[JOB_STATUSES]  # type: ignore[valid-type]
Scope = Literal[SCOPES]  # type: ignore[valid-type]
# Every result a job row may hold: each kind's, and each part's.
_RESULTS = tuple(dict.fromkeys([*(k.result_model for k in KINDS.values()),
                                *(k.part_result_model for k in KINDS.values() if k.part_result_model)]))
JobResult = Union[_RESULTS]  # type: ignore[valid-type]  # noqa: UP007


class JobView(BaseModel):
    id: str
    kind: str = Field(description="a job kind, or KIND_PART for a part (kfold_fold, classify_shard)")
    status: Status
    name: str | None = Field(None, description="what its submitter called it")
    tags: list[str] = []
    note: str | None = None
    metrics: dict[str, float] | None = Field(None, description="its headline figures once it succeeded (what "
                                             "filters and sorts compare as metrics.NAME)")
    headline: str | None = Field(None, description="the kind's headline figure once it succeeded")
    progress: ProgressEvent | None = Field(None, description="the latest progress (fraction in [0, 1])")
    params: dict[str, Any] = Field(description="the validated params (a shard's: its file count)")
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = Field(None, description="the Celery worker (or inline@host) that ran it last")
    submitted_by: str | None = Field(None, description="the name of the API token that submitted it (None: the CLI)")
    priority: PriorityName = Field("normal", description=PRIORITY_HELP)
    error: str | None = Field(None, description="why it failed")
    waits_for: list[str] | None = Field(None, description="jobs that must succeed before it is queued")
    provenance: Provenance | None = Field(None, description="versions, machine, precision, seed, data fingerprint")
    parent_id: str | None = Field(None, description="the job a part belongs to")
    part: int | None = Field(None, description="a part's index among its siblings (fold, shard)")
    result: JobResult | None = Field(None, description="the kind's typed result once it succeeded")
    children: list[JobView] | None = Field(None, description="its parts (GET /jobs/{id} only)")
    history: list[dict[str, float]] | None = Field(None, description="the epochs finished so far, each with its "
                                                   "figures (GET /jobs/{id} only)")
    artifacts: list[ArtifactRow] | None = Field(None, description="its files (GET /jobs/{id} only)")


class JobList(BaseModel):
    jobs: list[JobView]
    limit: int
    offset: int


class JobRequest(JobLabels):
    model_config = ConfigDict(extra="forbid")

    kind: KindName = Field(description="the job kind; its params are described by the schemas named *Params")
    params: dict[str, Any] = {}
    after: list[Annotated[str, Field(pattern=r"^[0-9a-f]{4,32}$")]] = Field(
        [], max_length=32, description="jobs that must succeed first (ids, or their first 4 or more characters): the "
        "job waits (status waiting) and fails if one of them fails or is cancelled")


class HistoryView(BaseModel):
    job_id: str
    epochs: list[dict[str, float]] = Field(description="one per finished epoch: epoch, loss, accuracy, val_loss, "
                                           "val_accuracy, learning_rate, images_per_s (as far as recorded)")


class MetricsView(BaseModel):
    job_id: str
    metrics: list[MetricRow]


def _plain_text(value: str | None) -> str | None:
    if value is not None and ("\x00" in value or not value.isprintable()):
        raise ValueError("must be printable text (no NUL or control characters)")
    return value


CURSOR = re.compile(r"([0-9]{1,9})\.([0-9]{1,18})")


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    """A page cursor "SHARD.ID" (a previous page's next_after): ASCII digits only, so int() never sees "²"."""
    if not text:
        return None
    found = CURSOR.fullmatch(text)
    if found is None:
        raise ValueError("after must be SHARD.ID (ASCII digits) as given by the previous page's next_after")
    return int(found.group(1)), int(found.group(2))


class PredictionFilter(BaseModel):
    """Which rows of a classify job to show: the one definition behind HTTP, the dashboard, the CSV and the CLI.
    Booleans take true/false/1/0 (yes/no, on/off) wherever they come from."""

    label: Annotated[str | None, Field(max_length=128, description="only this predicted class"),
                     AfterValidator(_plain_text)] = None
    true_label: Annotated[str | None, Field(max_length=128, description="only this true class (the folder's name)"),
                          AfterValidator(_plain_text)] = None
    min_confidence: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description="only confidence >= P")
    misclassified: bool = Field(False, description="only files whose folder names another class")
    uncertain: bool = Field(False, description="decided uncertain (threshold or conformal decision)")
    errors: bool | None = Field(None, description="true: only unreadable files; false: only readable ones")
    set_size: int | None = Field(None, ge=0, le=10000, description="conformal sets of exactly N classes")
    min_set_size: int | None = Field(None, ge=0, le=10000, description="conformal sets of N classes or more")

    def query(self) -> dict[str, str]:
        """The filters that are set, as URL query values (a page's links keep them)."""
        return {k: ("true" if v is True else "false" if v is False else str(v))
                for k, v in self.model_dump(exclude_defaults=True).items()}


class PredictionsView(BaseModel):
    job_id: str
    predictions: list[PredictionRow]
    limit: int
    offset: int
    next_after: str | None = Field(None, description="pass as `after` for the next page (None: this was the last)")


class Problem(BaseModel):
    """An error: a readable message, and for bad params the field each problem is in."""

    message: str
    errors: list[dict[str, str]] = []


class ErrorBody(BaseModel):
    detail: Problem


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    scope: Scope = "read"
    max_jobs: int | None = Field(None, ge=1, le=1_000_000, description="at most this many of its jobs unfinished "
                                 "(waiting, queued or running) at once; children and parts do not count")


class Session(BaseModel):
    name: str = Field(description="the token's name")
    scope: Scope
    csrf_token: str | None = Field(None, description="with a session cookie: send it as X-CSRF-Token on changes")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
