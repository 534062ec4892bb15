"""The steps every job walks, whatever its kind: created (params validated once, here), begun (run whole, or
parts planned), each part run, aggregated.

The Celery tasks and `convlens run` (inline) call exactly these. Each step stores its rows in one transaction
that first deletes what an earlier attempt of the same step stored: a whole job or an aggregation replaces the
job's rows outside any part, a part replaces its own part's rows (metrics by fold, predictions by shard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from convlens.db.models import FINISHED, Artifact, Job, JobStatus, Metric, Prediction, Token, utcnow
from convlens.db.rows import STORED_COLUMNS
from convlens.db.session import session_scope
from convlens.ml.model_layout import model_files
from convlens.ml.progress import ProgressEvent
from convlens.worker import audit, dependencies, lifecycle, registry, sweeps
from convlens.worker.artifacts import artifact_store
from convlens.worker.children import child_view
from convlens.worker.errors import JobError, QuotaExceeded
from convlens.worker.kinds import get_kind, unit_queue
from convlens.worker.kinds.base import Context, Done, Output
from convlens.worker.labels import JobLabels
from convlens.worker.lifecycle import Reporter, guarded
from convlens.worker.paths import job_dir, stored

# Each table's column that says which part wrote a row.
PART_COLUMN = {Metric: Metric.fold, Artifact: Artifact.part, Prediction: Prediction.shard}


def create_job(kind: str, params: dict[str, Any], strict_paths: bool = False, submitted_by: str | None = None,
               after: list[str] | None = None, may_wait: bool = True, labels: JobLabels | None = None) -> str:
    """Validates params for `kind` (pydantic's ValidationError, or PathRefused and DependencyRefused, all
    ValueErrors, when bad) and records the job: queued, or waiting for the jobs named in `after` and for the
    train job its model comes from while that has not finished.

    strict_paths: folders and models must lie under CONVLENS_ALLOWED_ROOTS (requests from the HTTP API).
    submitted_by: the name of the API token that asked for it.
    may_wait: False for a job run here and now, which cannot wait for another.
    labels: its name, tags and note.
    """
    job = new_job(kind, params, strict_paths, submitted_by, after, may_wait)
    if labels is not None:
        labels.apply(job)
    with session_scope() as s:
        if submitted_by is not None:
            check_quota(s, submitted_by)
        s.add(job)
        s.flush()
        audit.record(audit.Action.IMPORT if kind == "import" else audit.Action.SUBMIT, job.id, s, kind=kind,
                     name=job.name, priority=labels.priority if labels is not None else None)
        return job.id


def check_quota(s: Session, token: str) -> None:
    """QuotaExceeded when the token has as many unfinished top-level jobs as its `max_jobs` (children and parts
    do not count). The token's row is written first, which serialises its submits on both databases (a row lock on
    PostgreSQL, the write lock on SQLite), so two at once cannot both take the last place."""
    s.execute(update(Token).where(Token.name == token).values(max_jobs=Token.max_jobs))
    limit = s.scalar(select(Token.max_jobs).where(Token.name == token))
    if limit is None:
        return
    in_flight = s.scalar(select(func.count()).select_from(Job).where(
        Job.submitted_by == token, Job.parent_id.is_(None), Job.status.not_in(FINISHED)))
    if in_flight >= limit:
        raise QuotaExceeded(f"token {token!r} may have at most {limit} unfinished jobs (waiting, queued or "
                            f"running) and has {in_flight}: wait for one to end, or cancel one")


def new_job(kind: str, params: dict[str, Any], strict_paths: bool = False, submitted_by: str | None = None,
            after: list[str] | None = None, may_wait: bool = True, **row: Any) -> Job:
    """The row of a new job, validated (see create_job); `row`: more columns (a composite's child's parent)."""
    if isinstance(params.get("model"), str):  # a registered name or SWEEP:best is stored as its train job's id
        params = {**params, "model": registry.resolve_ref(params["model"])}
    validated = get_kind(kind).validate(params, strict_paths)
    waits = dependencies.check_after(after or [])
    model_job = dependencies.model_job(validated["model"]) if isinstance(validated.get("model"), str) else None
    if model_job is not None and model_job not in waits:
        waits.append(model_job)
    if waits and not may_wait:
        raise dependencies.DependencyRefused(f"job {waits[0]} has not finished; `convlens submit` can wait for it, "
                                             "a job run here cannot")
    return Job(kind=kind, params=validated, status=JobStatus.WAITING if waits else JobStatus.QUEUED,
               submitted_by=submitted_by, waits_for=waits or None, queue=unit_queue(kind), **row)


def store(s: Session, job_id: str, part: int | None, out: Output) -> None:
    # Outputs go to the artifact store first, in this transaction: no row names a file other machines lack.
    files = [*(a.path for a in out.artifacts), *(model_files(Path(out.model.path)) if out.model is not None else [])]
    artifact_store().publish(s, job_id, dict.fromkeys(map(str, files)))
    for table, column in PART_COLUMN.items():
        s.execute(delete(table).where(table.job_id == job_id, column.is_(None) if part is None else column == part))
    s.add_all(m.model_copy(update={"fold": part}).orm(job_id) for m in out.metrics)
    if out.artifacts:  # a classify shard with Grad-CAM has one per image: one executemany, no ORM objects
        s.execute(insert(Artifact.__table__), [{"job_id": job_id, "kind": a.kind, "path": stored(a.path), "part": part}
                                               for a in out.artifacts])
    if out.predictions:
        insert_predictions(s, [(job_id, part, *p.stored()) for p in out.predictions])
    if out.model is not None:
        registry.register(s, job_id, stored(out.model.path), out.model.preset, out.model.class_names,
                          out.model.thresholds)


PREDICTION_COLUMNS = ("job_id", "shard", *STORED_COLUMNS)


def insert_predictions(s: Session, rows: list[tuple[Any, ...]]) -> None:
    """Rows of PREDICTION_COLUMNS' values, JSON encoded. PostgreSQL: one COPY in the session's transaction
    (several times an INSERT's rows/s); SQLite: one executemany on the driver (no per-row parameter processing)."""
    connection = s.connection()
    if connection.dialect.name != "postgresql":
        marks = ", ".join("?" * len(PREDICTION_COLUMNS))
        connection.exec_driver_sql(f"INSERT INTO predictions ({', '.join(PREDICTION_COLUMNS)}) VALUES ({marks})",
                                   rows)
        return
    statement = f"COPY predictions ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN"
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


@guarded
def begin(job_id: str, hostname: str | None = None, task_id: str | None = None) -> list[str]:
    """Runs a job that runs whole; for one that fans out, creates its parts (once) and returns their ids."""
    job = lifecycle.start(job_id, hostname, task_id)
    if job is None:
        return []
    record_provenance(job_id, job.params)
    kind = get_kind(job.kind)
    if kind.composite:
        return []  # its stages are started by advance()
    ctx = Context(job_id, kind.parse(job.params), job_dir(job_id), Reporter(job_id),
                  should_stop=sweeps.pruning_for(job_id, job.parent_id))
    with lifecycle.heartbeat(job_id, job.lease):  # listing a large folder takes a while too
        if kind.fans_out:
            plans = kind.plan(ctx)
        else:
            out = kind.run(ctx)
    if not kind.fans_out:
        with session_scope() as s:
            store(s, job_id, None, out)
            lifecycle.finish(s.get(Job, job_id), out.result)
        return []
    with session_scope() as s:
        parts = lifecycle.children(s, job_id)
        if not parts:
            parts = [Job(kind=kind.part_kind, params=p, parent_id=job_id, part=i, size=kind.part_size(p),
                         submitted_by=job.submitted_by, priority=job.priority,
                         queue=unit_queue(kind.part_kind))
                     for i, p in enumerate(plans)]
            s.add_all(parts)
            total = sum(p.size for p in parts)
            s.get(Job, job_id).progress = _parts_progress(kind.part_name, 0, total)
            s.flush()
        return [p.id for p in parts]


def record_provenance(job_id: str, params: dict[str, Any], with_fingerprint: bool = True) -> None:
    """What ran this job: versions, machine, precision, seed, and a fingerprint of the data it reads."""
    from convlens.ml.provenance import provenance

    data = params.get("dataset") or params.get("folder")
    found = provenance(params.get("seed"), data, params.get("mixed_precision", True), with_fingerprint)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(provenance=found.model_dump(mode="json")))


def _parts_progress(part_name: str | None, done: int, total: int) -> dict:
    stage = {"fold": "folds", "shard": "classify"}.get(part_name or "", part_name or "parts")
    return ProgressEvent(stage=stage, done=done, total=total).with_fraction().model_dump(exclude_none=True)


@guarded
def run_part(part_id: str, hostname: str | None = None, task_id: str | None = None) -> str | None:
    """Runs one part; returns its parent's id when every part has now succeeded (time to aggregate)."""
    part = lifecycle.start(part_id, hostname, task_id)
    if part is None:
        return None
    with session_scope() as s:
        parent = s.get(Job, part.parent_id)
        parent_id, parent_params = parent.id, parent.params
    record_provenance(part_id, parent_params, with_fingerprint=False)  # the parent fingerprinted the data
    kind = get_kind(part.kind)
    ctx = Context(parent_id, kind.parse(parent_params), job_dir(parent_id),
                  Reporter(part_id, watch=[part_id, parent_id]), part=part.part, part_params=part.params)
    with lifecycle.heartbeat(part_id, part.lease):
        out = kind.run_part(ctx)
    with session_scope() as s:
        store(s, parent_id, part.part, out)
        lifecycle.finish(s.get(Job, part_id), out.result)
        parent = s.get(Job, parent_id)
        # Sizes, not params: a shard's params hold its file list, and reading every sibling's at every part's end
        # grew with the square of the shard count.
        done = s.scalar(select(func.coalesce(func.sum(Job.size), 0))
                        .where(Job.parent_id == parent_id, Job.status == "succeeded"))
        # The total was fixed when the parts were planned.
        parent.progress = _parts_progress(kind.part_name, done, (parent.progress or {}).get("total") or done)
    # Read after this part's commit: of parts finishing together, the last to commit sees them all.
    with session_scope() as s:
        unfinished = s.scalar(select(func.count()).select_from(Job)
                              .where(Job.parent_id == parent_id, Job.status != "succeeded"))
        return parent_id if unfinished == 0 else None


@guarded
def aggregate(job_id: str, hostname: str | None = None) -> None:
    """Combines the parts once every one succeeded (a job that already ended is left as it is)."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.status in FINISHED:
            return
        parts = lifecycle.children(s, job_id)
        missing = [c.part for c in parts if c.status != "succeeded"]
        kind = get_kind(job.kind)
        if missing:
            raise JobError(f"{kind.part_name}s {missing} did not succeed")
        ctx = Context(job_id, kind.parse(job.params), job_dir(job_id), Reporter(job_id))
        out = kind.aggregate(ctx, [Done(p.id, p.kind, kind.part_result_model.model_validate(p.result), p.worker)
                                   for p in parts])
        store(s, job_id, None, out)
        lifecycle.finish(job, out.result)
    with session_scope() as s:
        kind.after_finish(s, job_id, out.result)


@dataclass
class Advanced:
    """What advancing a composite job asks of the queue: children to send, children to revoke."""

    send: list[tuple[str, str]] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


@guarded
def advance(job_id: str, hostname: str | None = None) -> Advanced:
    """Moves a composite job on as its kind's `next` says: new children, its own result, or nothing while
    children run. A failed or cancelled child fails it (with the child's reason; a sweep's trial does not) and
    what else of it still runs is cancelled. Safe to call any number of times: children are created under a
    compare-and-set on the job's lease, and an advance that loses it looks again at what the winner stored."""
    for _ in range(10):
        advanced = _advance_once(job_id)
        if advanced is not None:
            return advanced
    return Advanced()  # ten lost races in a row: the advances that won them carry the job on


def _advance_once(job_id: str) -> Advanced | None:
    """One advance; None when a concurrent advance claimed the job's lease first (look again)."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.status not in (JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED):
            return Advanced()
        kind = get_kind(job.kind)
        kids = list(s.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.part, Job.created_at)))
        bad = next((c for c in kids if c.status in (JobStatus.FAILED, JobStatus.CANCELLED)), None)
        if job.status == JobStatus.RUNNING and bad is not None and kind.fails_with_child:
            why = f": {bad.error}" if bad.error else ""
            job.status, job.finished_at = JobStatus.FAILED, utcnow()
            job.error = f"{kind.stages[bad.part or 0]} stage: {bad.kind} job {bad.id} {bad.status}{why}"
        if job.status != JobStatus.RUNNING:
            return Advanced(cancel=lifecycle.cancel_descendants(s, job_id))
        lease, submitted_by, priority = job.lease, job.submitted_by, job.priority
        ctx = Context(job_id, kind.parse(job.params), job_dir(job_id), Reporter(job_id))
        seen = [child_view(c) for c in kids]
    step = kind.next(ctx, seen)
    if step.compose:
        out = kind.compose(ctx, seen)
        with session_scope() as s:
            store(s, job_id, None, out)
            lifecycle.finish(s.get(Job, job_id), out.result)
        return Advanced()
    if not step.children:  # a child still runs: its end advances this job again
        if step.progress is not None:  # how far the stage under way has come
            with session_scope() as s:
                s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
                    progress=step.progress.with_fraction().model_dump(exclude_none=True)))
        return Advanced()
    # Two children ending together send two advances: both may make rows (next() is repeatable), but only the
    # one whose lease bump commits together with them stores any.
    rows = [new_job(c.kind, c.params, submitted_by=submitted_by, parent_id=job_id, part=c.part, trial=c.trial,
                    priority=priority) for c in step.children]
    progress = step.progress.with_fraction().model_dump(exclude_none=True) if step.progress else None
    with session_scope() as s:
        claimed = s.execute(update(Job).where(Job.id == job_id, Job.lease == lease, Job.status == "running")
                            .values(lease=lease + 1, heartbeat_at=utcnow(),
                                    **({"progress": progress} if progress else {})))
        if claimed.rowcount != 1:
            return None
        s.add_all(rows)
        s.flush()
        return Advanced(send=[(r.id, r.kind) for r in rows if r.status == JobStatus.QUEUED])


def execute_inline(job_id: str) -> None:
    """Runs a job in this process, part after part (a composite's children one after another), recorded like
    a queued one."""
    with session_scope() as s:
        composite = get_kind(s.get(Job, job_id).kind).composite
    ready = None
    for part_id in begin(job_id):
        ready = run_part(part_id)
    if ready is not None:
        aggregate(ready)
    while composite:
        advanced = advance(job_id)
        pending = [child_id for child_id, _ in (advanced.send if advanced else [])]
        if not pending:
            return
        while pending:  # a child may wait for a sibling: it is released once that one has succeeded
            for child_id in pending:
                execute_inline(child_id)
            pending = [child_id for child_id, _ in dependencies.release()]
