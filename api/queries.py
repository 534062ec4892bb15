"""Read-side queries shared by the CLI and the HTTP API; they return the typed views of api.schemas."""

from __future__ import annotations

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.orm import Session

from convlens.api.job_search import JobSearch, SearchError, json_value
from convlens.api.schemas import JobView, PredictionFilter
from convlens.db.models import Artifact, Job, JobPriority, Metric, Prediction, TrainedModelRow
from convlens.db.rows import ArtifactRow, MetricRow, PredictionRow
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.worker.kinds import KINDS, PART_KINDS, UnknownKind, get_kind
from convlens.worker.paths import JOB_ID, localized, overlay_path


def job_view(job: Job, with_result: bool = True) -> JobView:
    try:
        kind = get_kind(job.kind)
        is_part = job.kind in PART_KINDS  # a composite's children are jobs of their own kind, not parts
        params = kind.public_params(job.params or {}, is_part=is_part)
        result_model = kind.part_result_model if is_part else kind.result_model
    except UnknownKind:  # a row written by a newer or older convlens: shown as it is
        params, result_model = job.params or {}, None
    typed, headline = None, None
    if job.result is not None and result_model is not None:
        try:
            typed = result_model.model_validate(localized(job.result))  # its paths under this home
        except ValueError:  # a result of another version's shape: shown as stored, without a headline
            typed = None
    if job.status == "succeeded" and typed is not None and job.kind not in PART_KINDS:
        headline = get_kind(job.kind).headline(typed)
    result = typed if with_result else None
    return JobView(id=job.id, kind=job.kind, headline=headline, status=job.status, name=job.name, tags=job.tags,
                   note=job.note, metrics=job.summary, progress=job.progress, params=params,
                   created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
                   worker=job.worker, submitted_by=job.submitted_by, error=job.error, waits_for=job.waits_for,
                   priority=JobPriority(job.priority).name.lower(),
                   provenance=job.provenance,
                   parent_id=job.parent_id,
                   part=job.part, result=result)


def _job_filter(q, status: str | None, kind: str | None, parent_id: str | None, top_level: bool):  # noqa: ANN001, ANN202
    if status:
        q = q.where(Job.status == status)
    if kind:
        q = q.where(Job.kind == kind)
    if parent_id:
        return q.where(Job.parent_id == parent_id)
    return q.where(Job.parent_id.is_(None)) if top_level else q


KEYS_SCANNED = 20_000  # the newest runs whose params and metrics name the keys a search may use


def check_search_keys(s: Session, search: JobSearch) -> None:
    """A filter or sort on a params. or metrics. key that no run has is a typo, not an empty table: refused,
    listing the keys runs do have (each kind's params, and what the newest runs recorded). A key some run holds
    a value for costs one query that stops at the first such run (the dashboard polls with its filter); only a
    key that finds none has the runs' keys gathered."""
    params = {f for k in KINDS.values() for f in k.params_model.model_fields}
    wanted = [(field, key) for field, key in search.keys() if key.source == "metrics"
              or (key.source == "params" and key.name not in params)]
    wanted = [(field, key) for field, key in wanted
              if s.scalar(select(literal(1)).where(json_value(key).is_not(None)).limit(1)) is None]
    if not wanted:
        return
    known: dict[str, set[str]] = {"params": params, "metrics": set()}
    for run_params, summary in s.execute(select(Job.params, Job.summary).order_by(Job.created_at.desc())
                                         .limit(KEYS_SCANNED)):
        known["params"].update(run_params or {})
        known["metrics"].update(summary or {})
    for field, key in wanted:
        if key.name not in known[key.source]:
            names = ", ".join(sorted(known[key.source])[:40]) or "none yet"
            raise SearchError(f"{field}: no run has {key.source}.{key.name}; {key.source} keys: {names}",
                              field=field)


def list_jobs(status: str | None = None, kind: str | None = None, parent_id: str | None = None,
              limit: int = 50, offset: int = 0, top_level: bool = True, search: JobSearch | None = None
              ) -> list[JobView]:
    """A page of jobs, newest first unless `search` sorts them (filters and sorts run in SQL); a key no run has
    is refused (check_search_keys)."""
    search = search or JobSearch()
    with session_scope() as s:
        check_search_keys(s, search)
        q = search.apply(_job_filter(select(Job), status, kind, parent_id, top_level)).order_by(*search.order())
        return [job_view(j, with_result=False) for j in s.scalars(q.limit(limit).offset(offset))]


def count_jobs(status: str | None = None, kind: str | None = None, parent_id: str | None = None,
               top_level: bool = True, search: JobSearch | None = None) -> int:
    q = _job_filter(select(func.count()).select_from(Job), status, kind, parent_id, top_level)
    with session_scope() as s:
        return s.scalar((search or JobSearch()).apply(q)) or 0


def get_job(job_id: str) -> JobView | None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        view = job_view(job)
        view.history = job.history
        children = s.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.part)).all()
        view.children = [job_view(c, with_result=False) for c in children]
        listed = select(Artifact).where(Artifact.job_id == job_id, Artifact.kind != "gradcam_overlay")
        view.artifacts = [ArtifactRow.of(a) for a in s.scalars(listed.order_by(Artifact.id))]
        return view


def metrics(job_id: str) -> list[MetricRow]:
    with session_scope() as s:
        rows = s.scalars(select(Metric).where(Metric.job_id == job_id).order_by(Metric.split, Metric.fold,
                                                                                  Metric.class_name, Metric.name))
        return [MetricRow.of(m) for m in rows]


def _class_names(s: Session, job: Job) -> list[str] | None:
    """The classes of the model a classify job used, from the registry (None when it cannot be told)."""
    ref = (job.params or {}).get("model", "")
    row = s.scalars(select(TrainedModelRow).where(TrainedModelRow.job_id == ref)).first() if JOB_ID.fullmatch(ref) \
        else None
    return list(row.class_names) if row is not None else None


def check_prediction_query(s: Session, job_id: str, f: PredictionFilter) -> None:
    """A question that has no answer is an error, not an empty page: predictions of a job that makes none, a
    label that is none of the job's classes."""
    job = s.get(Job, job_id)
    if job is None:
        return
    try:
        predicts = get_kind(job.kind).predicts
    except UnknownKind:
        return
    if not predicts:
        raise QueryMistake(f"job {job_id[:8]} is a {job.kind} job, which stores no predictions (classify jobs do): "
                           f"`convlens results metrics {job_id[:8]}` or `convlens jobs show {job_id[:8]}` shows its "
                           "figures", field="job")
    classes = _class_names(s, job)
    for field, label in (("label", f.label), ("true_label", f.true_label)):
        if label is not None and classes is not None and label not in classes:
            raise QueryMistake(f"--{field.replace('_', '-')} {label}: not one of this job's classes "
                               f"({', '.join(classes[:30])})", field=field)


class QueryMistake(ConvlensError):
    """A question about results that names something the job does not have."""


def predictions(job_id: str, filters: PredictionFilter | None = None, limit: int | None = None, offset: int = 0,
                after: tuple[int, int] | None = None) -> list[PredictionRow]:
    """A page of rows in listing order; `after` (shard, id) of the previous page's last row pages without an
    offset, which stays fast however deep the page is. The first page checks the question (a job with no
    predictions, an unknown label: QueryMistake)."""
    f = filters or PredictionFilter()
    with session_scope() as s:
        if after is None and not offset:
            check_prediction_query(s, job_id, f)
        # Shards are contiguous slices of the sorted listing (by path parts) and each stores its rows in that
        # order, so (shard, id) is the listing's order, and an index walk: no sort of a million rows per page.
        q = select(Prediction).where(Prediction.job_id == job_id).order_by(Prediction.shard, Prediction.id)
        if f.label:
            q = q.where(Prediction.predicted == f.label)
        if f.true_label:
            q = q.where(Prediction.true_label == f.true_label)
        if f.min_confidence is not None:
            q = q.where(Prediction.confidence >= f.min_confidence)
        if f.misclassified:
            q = q.where(Prediction.true_label.is_not(None), Prediction.predicted != Prediction.true_label)
        if f.set_size is not None:
            q = q.where(Prediction.set_size == f.set_size)
        if f.min_set_size is not None:
            q = q.where(Prediction.set_size >= f.min_set_size)
        if f.uncertain:
            q = q.where(Prediction.decision == "uncertain")
        if f.errors is True:
            q = q.where(Prediction.error.is_not(None))
        elif f.errors is False:
            q = q.where(Prediction.error.is_(None))
        if after is not None:
            q = q.where(tuple_(Prediction.shard, Prediction.id) > tuple_(*after))
        q = q.offset(offset)
        if limit:
            q = q.limit(limit)
        rows = [PredictionRow.of(p) for p in s.scalars(q)]
        job = s.get(Job, job_id)
        overlays = (job.result or {}).get("overlay_dir") if job is not None else None
    if overlays:  # named by path, as the classify job wrote them
        for r in rows:
            r.overlay = None if r.error else str(overlay_path(overlays, r.path))
    return rows


def next_cursor(rows: list[PredictionRow], limit: int) -> str | None:
    """The `after` of the page following `rows` ("SHARD.ID"), or None when that was the last page."""
    return f"{rows[-1].shard or 0}.{rows[-1].id}" if len(rows) == limit and rows[-1].id is not None else None


def artifact(key: str) -> Artifact | None:
    with session_scope() as s:
        return s.scalars(select(Artifact).where(Artifact.key == key)).first()

