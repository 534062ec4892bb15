"""Nothing stuck, nothing lost: every worker's main process reconciles the database with reality every few seconds.

- A running job whose heartbeat went stale (its whole worker was killed, its machine vanished) is re-queued and
  resumes from its checkpoint; after `max_attempts` it fails with the reason.
- A fanned-out job whose parts all succeeded but whose aggregation never ran gets it sent again.
- A queue holding fewer messages than queued units (the broker lost some) gets its stale units sent again (a
  message is a ticket for any unit on its queue: worker.scheduler).

Several workers may reconcile at once: each change is a compare-and-set on the job's lease, and a duplicate
message is harmless because a job is claimed by one process only (`lifecycle.start`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import timedelta

from celery.signals import worker_ready
from sqlalchemy import select, update

from convlens.db.models import FINISHED, Job, utcnow
from convlens.db.session import session_scope
from convlens.ml.settings import settings
from convlens.worker import lifecycle, tasks
from convlens.worker.broker import ensure_embedded_redis
from convlens.worker.kinds import PART_KINDS, UnknownKind, get_kind, unit_queue
from convlens.worker.transport import Held, transport

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
    held = transport().held(cutoff.timestamp()) if queued or aggregate else None
    if held is not None:
        counts["resent"] = _top_up(held, queued)
        ids = {h.id for h in held}
        for job_id in aggregate:
            if tasks.aggregate_task_id(job_id) not in ids:
                tasks.send_aggregate(job_id)
                counts["aggregated"] += 1
    if any(counts.values()):
        log.warning("recovery: %s", counts)
    return counts


def _top_up(held: list[Held], stale: list[Job]) -> int:
    """Sends a message for queued units that have none: a message is a ticket for any unit on its queue
    (worker.scheduler), so a queue needs as many messages as it has queued units; the stale ones, oldest first,
    are sent again for those missing."""
    tickets = Counter(h.queue for h in held if h.task in (tasks.job.name, tasks.part.name))
    with session_scope() as s:
        needed = Counter(_queue_of(kind, queue) for kind, queue in
                         s.execute(select(Job.kind, Job.queue).where(Job.status == "queued")).all())
    missing = {q: n - tickets[q] for q, n in needed.items() if n > tickets[q]}
    sent = 0
    for job in sorted(stale, key=lambda j: j.created_at):
        q = _queue_of(job.kind, job.queue)
        if missing.get(q, 0) > 0:
            _send(job)
            missing[q] -= 1
            sent += 1
    return sent


def _queue_of(kind: str, queue: str | None) -> str:
    """The queue a unit is sent to (rows from before fair share do not name it)."""
    return queue or unit_queue(kind)


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
