"""Celery tasks, generic over job kinds: a job's first step, its parts (a chord), its aggregation.

Task ids are job ids, so revoking a job revokes exactly its task. Queues are chosen per kind when sending.
"""

from __future__ import annotations

import kombu.exceptions
import redis
from celery import chord
from sqlalchemy.exc import OperationalError

from convlens.worker import lifecycle, steps
from convlens.worker.app import app
from convlens.worker.broker import ensure_embedded_redis
from convlens.worker.kinds import get_kind

# Transient database and broker errors: retried with exponential back-off.
RETRY = {
    "autoretry_for": (OperationalError, redis.ConnectionError, kombu.exceptions.OperationalError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_kwargs": {"max_retries": 6},
}


@app.task(name="convlens.job", bind=True, **RETRY)
def job(self, job_id: str, kind_name: str) -> None:
    parts = steps.begin(job_id, self.request.hostname)
    if parts:
        kind = get_kind(kind_name)
        chord([part.si(p).set(task_id=p, queue=kind.queue) for p in parts])(
            aggregate.si(job_id).set(queue="cpu"))


@app.task(name="convlens.part", bind=True, **RETRY)
def part(self, part_id: str) -> None:
    steps.run_part(part_id, self.request.hostname)


@app.task(name="convlens.aggregate", bind=True, **RETRY)
def aggregate(self, job_id: str) -> None:
    steps.aggregate(job_id, self.request.hostname)


def submit(kind_name: str, params: dict, strict_paths: bool = False) -> str:
    """Validates params, records a queued job and enqueues its first step; returns the job id."""
    job_id = steps.create_job(kind_name, params, strict_paths)
    ensure_embedded_redis()
    job.apply_async(args=[job_id, kind_name], task_id=job_id, queue=get_kind(kind_name).entry_queue)
    return job_id


def cancel(job_id: str) -> list[str]:
    ids = lifecycle.mark_cancelled(job_id)
    ensure_embedded_redis()
    app.control.revoke(ids, terminate=True)
    return ids
