"""Celery tasks, generic over job kinds: a job's first step, its parts, its aggregation.

Task ids are job ids, so revoking a job revokes exactly its task. Queues are chosen per kind when sending.
The part that finishes last sends the aggregation (not a chord): a part re-sent by recovery, which a chord
would not count, still leads to it; aggregating twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kombu.exceptions
import redis
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy.exc import OperationalError

from convlens.db.models import JobStatus
from convlens.worker import dependencies, lifecycle, steps
from convlens.worker.app import app
from convlens.worker.broker import broker_url, ensure_embedded_redis
from convlens.worker.kinds import get_kind
from convlens.worker.labels import JobLabels

# Transient database and broker errors: retried with exponential back-off.
RETRY = {
    "autoretry_for": (OperationalError, redis.ConnectionError, kombu.exceptions.OperationalError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_kwargs": {"max_retries": 6},
}


@app.task(name="convlens.job", bind=True, **RETRY)
def job(self, job_id: str, kind_name: str) -> None:
    try:
        for part_id in steps.begin(job_id, self.request.hostname):
            send_part(part_id, kind_name)
        if get_kind(kind_name).composite:
            run_advance(job_id, self.request.hostname)
    finally:
        ended(job_id)


@app.task(name="convlens.part", bind=True, **RETRY)
def part(self, part_id: str) -> None:
    try:
        parent_id = steps.run_part(part_id, self.request.hostname)
    except Exception:
        ended(part_id)  # a failed part failed its parent: what waited for that fails too
        raise
    if parent_id is not None:
        send_aggregate(parent_id)


@app.task(name="convlens.aggregate", bind=True, **RETRY)
def aggregate(self, job_id: str) -> None:
    try:
        steps.aggregate(job_id, self.request.hostname)
    finally:
        ended(job_id)


@app.task(name="convlens.advance", bind=True, **RETRY)
def advance(self, job_id: str) -> None:
    try:
        run_advance(job_id, self.request.hostname)
    finally:
        ended(job_id)


def run_advance(job_id: str, hostname: str | None) -> None:
    advanced = steps.advance(job_id, hostname)
    if advanced is None:
        return
    for child_id, kind_name in advanced.send:
        send_job(child_id, kind_name)
    if advanced.cancel:
        app.control.revoke(advanced.cancel, terminate=True)


def ended(job_id: str) -> None:
    """After a step of a job: queue what waited for it, and move on the composite jobs it belongs to."""
    send_released()
    for composite in lifecycle.composite_ancestors(job_id):
        send_advance(composite)


def send_job(job_id: str, kind_name: str, **options: Any) -> None:
    job.apply_async(args=[job_id, kind_name], task_id=job_id, queue=get_kind(kind_name).entry_queue, **options)


def send_part(part_id: str, kind_name: str) -> None:
    part.apply_async(args=[part_id], task_id=part_id, queue=get_kind(kind_name).queue)


def aggregate_task_id(job_id: str) -> str:
    return f"{job_id}-aggregate"


def send_aggregate(job_id: str) -> None:
    aggregate.apply_async(args=[job_id], task_id=aggregate_task_id(job_id), queue="cpu")


def send_advance(job_id: str) -> None:
    advance.apply_async(args=[job_id], queue="cpu")


def send_released() -> None:
    """Queues every waiting job whose jobs have all succeeded (and fails those whose jobs did not)."""
    for job_id, kind_name in dependencies.release():
        send_job(job_id, kind_name)


@dataclass(frozen=True)
class Submitted:
    job_id: str
    unsent: str | None = None  # why its message could not be sent now; recovery sends it once the broker is back


# Sending a submit's message: one quick retry, so an unreachable broker is said in seconds, not after kombu's
# default back-off.
SUBMIT_RETRY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def submit(kind_name: str, params: dict, strict_paths: bool = False, submitted_by: str | None = None,
           after: list[str] | None = None, labels: JobLabels | None = None) -> Submitted:
    """Validates params, records the job and enqueues its first step (or leaves it waiting for `after` and
    its model's train job). The job row is the outbox: a message the broker could not take now is sent by the
    workers' recovery once it can (a queued job whose message no queue holds is sent again), so a submit with
    the broker away stores the job and says so instead of failing half-way."""
    job_id = steps.create_job(kind_name, params, strict_paths, submitted_by, after, labels=labels)
    try:
        ensure_embedded_redis()
        if lifecycle.status_of(job_id) == JobStatus.QUEUED:
            # ignore_result: nobody waits on Celery's result (the jobs table is the record), and subscribing to
            # it would be one more connection to fail.
            send_job(job_id, kind_name, retry_policy=SUBMIT_RETRY, ignore_result=True)
        else:
            send_released()  # what it waits for may have ended while it was being stored
    except (kombu.exceptions.OperationalError, redis.ConnectionError, OSError) as exc:
        where, why = maybe_sanitize_url(broker_url()), str(exc).splitlines()[0]
        return Submitted(job_id, f"the broker ({where}) cannot be reached now ({why}): the job is stored as queued "
                                 "and will be sent when a worker's recovery reaches it")
    return Submitted(job_id)


def cancel(job_id: str) -> list[str]:
    ids = lifecycle.mark_cancelled(job_id)
    ensure_embedded_redis()
    app.control.revoke(ids, terminate=True)
    ended(job_id)
    return ids
