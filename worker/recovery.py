"""Nothing stuck, nothing lost: every worker's main process reconciles the database with reality every few seconds.

- A running job whose heartbeat went stale (its whole worker was killed, its machine vanished) is re-queued and
  resumes from its checkpoint; after `max_attempts` it fails with the reason.
- A fanned-out job whose parts all succeeded but whose aggregation never ran gets it sent again.
- A queued job whose message is in no broker queue (the broker lost it) is sent again.

Several workers may reconcile at once: each change is a compare-and-set on the job's lease, and a duplicate
message is harmless because a job is claimed by one process only (`lifecycle.start`).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery.signals import worker_ready
from sqlalchemy import select, update

from convlens.db.models import FINISHED, Job, utcnow
from convlens.db.session import session_scope
from convlens.ml.settings import settings
from convlens.worker import lifecycle, tasks
from convlens.worker.broker import ensure_embedded_redis
from convlens.worker.kinds import PART_KINDS, UnknownKind, get_kind
from convlens.worker.transport import transport

log = logging.getLogger("convlens.recovery")
def recover() -> dict[str, int]:
    """One reconciliation pass; returns how many jobs it re-queued, failed, re-sent and aggregated."""
    conf, now = settings(), utcnow()
    cutoff = now - timedelta(seconds=conf.stale_after_s)
    counts = {"requeued": 0, "failed": 0, "resent": 0, "aggregated": 0, "advanced": 0}
    requeue: list[Job] = []
    aggregate: list[str] = []
    advance: list[str] = []
    with session_scope() as s:
        for job in s.scalars(select(Job).where(Job.status == "running")):
            parts = lifecycle.children(s, job.id)
            if _is_composite(job):  # moves on when a child ends; stuck only if that message was lost
                # A sweep fills a free slot as soon as one trial ends: one that ended since its last advance will do.
                ended = [p for p in parts if p.status in FINISHED]
                moved = len(ended) == len(parts) or (get_kind(job.kind).open_ended and any(
                    p.finished_at and job.heartbeat_at and p.finished_at > job.heartbeat_at for p in ended))
                if moved and lifecycle.is_stale(job.heartbeat_at, cutoff):
                    advance.append(job.id)
                continue
            if parts:  # waiting on its parts; stuck only when they all succeeded and nobody aggregated
                if all(p.status == "succeeded" for p in parts) and lifecycle.is_stale(job.heartbeat_at, cutoff):
                    aggregate.append(job.id)
                continue
            if not lifecycle.is_stale(job.heartbeat_at or job.started_at, cutoff):
                continue
            if job.attempts + 1 >= conf.max_attempts:
                counts["failed"] += 1
                lifecycle.fail(job.id, f"worker {job.worker} went silent (no heartbeat for {conf.stale_after_s:g} s) "
                                       f"{job.attempts + 1} times; giving up")
                continue
            moved = s.execute(update(Job).where(Job.id == job.id, Job.lease == job.lease, Job.status == "running")
                              .values(status="queued", attempts=job.attempts + 1, lease=job.lease + 1,
                                      error=f"re-queued: worker {job.worker} went silent"))
            if moved.rowcount == 1:
                requeue.append(job)
        queued = list(s.scalars(select(Job).where(Job.status == "queued", Job.created_at < cutoff)))
    for job in requeue:
        _send(job)
        counts["requeued"] += 1
    for job_id in advance:
        tasks.send_advance(job_id)
        counts["advanced"] += 1
    # None: the broker holds more than can be read, and nothing is sent twice on a guess.
    waiting = transport().task_ids(cutoff.timestamp()) if queued or aggregate else None
    if waiting is not None:
        for job in queued:
            if job.id not in waiting:
                _send(job)
                counts["resent"] += 1
        for job_id in aggregate:
            if tasks.aggregate_task_id(job_id) not in waiting:
                tasks.send_aggregate(job_id)
                counts["aggregated"] += 1
    if any(counts.values()):
        log.warning("recovery: %s", counts)
    return counts


def _is_composite(job: Job) -> bool:
    try:
        return get_kind(job.kind).composite
    except UnknownKind:
        return False


def _send(job: Job) -> None:
    """A job as what it is: a part of a fan-out job, or a job of its own kind (a composite's children too)."""
    if job.kind in PART_KINDS:
        tasks.send_part(job.id, get_kind(job.kind).name)
    else:
        tasks.send_job(job.id, job.kind)


def _loop() -> None:
    while True:
        try:
            ensure_embedded_redis()  # the embedded broker died: whoever notices first starts it again
            recover()
            tasks.send_released()  # a job that ended while no process could release what waited for it
        except Exception:  # the broker or the database is away for a moment: try again next round
            log.exception("recovery pass failed")
        threading.Event().wait(settings().heartbeat_s)


@worker_ready.connect
def start_recovery(**_: object) -> None:
    threading.Thread(target=_loop, name="convlens-recovery", daemon=True).start()
