"""Celery tasks, generic over job kinds: a job's first step, its parts, its aggregation.

A job or part message is a ticket for the next unit fair share picks on its queue (worker.scheduler); each
message has its own task id, and a unit's row names the task running it, which is what a cancel stops. Queues are
chosen per kind when sending.
The part that finishes last sends the aggregation (not a chord): a part re-sent by recovery, which a chord
would not count, still leads to it; aggregating twice is harmless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import kombu.exceptions
import redis
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy.exc import OperationalError

from convlens.db.models import JobStatus
from convlens.worker import audit, dependencies, lifecycle, scheduler, steps
from convlens.worker.app import app
from convlens.worker.broker import broker_url, ensure_embedded_redis
from convlens.worker.kinds import PART_KINDS, get_kind
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
    take_turn(job_id, self.request.hostname, self.request.id)


@app.task(name="convlens.part", bind=True, **RETRY)
def part(self, part_id: str) -> None:
    take_turn(part_id, self.request.hostname, self.request.id)


def take_turn(offered: str, hostname: str | None, task_id: str) -> None:
    """A message is a ticket for one unit of work on its queue: runs the unit fair share picks for this slot
    (worker.scheduler), or the next one when another slot claimed it first."""
    for unit_id in scheduler.choices(offered):
        if run_unit(unit_id, hostname, task_id):
            return


def run_unit(unit_id: str, hostname: str | None, task_id: str) -> bool:
    """Runs a unit as what it is (a part of a fan-out, or a job of its own); False when it was not this task's
    to run (claimed by another process, or no longer queued)."""
    kind = lifecycle.kind_of(unit_id)
    if kind is None:
        return False
    if kind in PART_KINDS:
        try:
            parent_id = steps.run_part(unit_id, hostname, task_id)
        except Exception:
            ended(unit_id)  # a failed part failed its parent: what waited for that fails too
            raise
        if parent_id is not None:
            send_aggregate(parent_id)
        return lifecycle.task_of(unit_id) == task_id
    try:
        for part_id in steps.begin(unit_id, hostname, task_id):
            send_part(part_id, kind)
        ran = lifecycle.task_of(unit_id) == task_id
        if ran and get_kind(kind).composite:
            run_advance(unit_id, hostname)
        return ran
    finally:
        ended(unit_id)


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
        stop_tasks(advanced.cancel)


def ended(job_id: str) -> None:
    """After a step of a job: queue what waited for it, and move on the composite jobs it belongs to."""
    send_released()
    for composite in lifecycle.composite_ancestors(job_id):
        send_advance(composite)


def ticket_id(unit_id: str) -> str:
    """Each message its own task id: a message may run another unit than the one it was sent with, so revoking
    by a unit's id could stop the wrong work; a cancel stops the task a unit's row names (lifecycle.start)."""
    return f"{unit_id}-{uuid.uuid4().hex[:8]}"


def send_job(job_id: str, kind_name: str, **options: Any) -> None:
    job.apply_async(args=[job_id, kind_name], task_id=ticket_id(job_id), queue=get_kind(kind_name).entry_queue,
                    **options)


def send_part(part_id: str, kind_name: str) -> None:
    part.apply_async(args=[part_id], task_id=ticket_id(part_id), queue=get_kind(kind_name).queue)


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


def stop_tasks(unit_ids: list[str]) -> None:
    """Stops the tasks running these (just cancelled) units; a queued one's message stays, a ticket for others."""
    task_ids = lifecycle.tasks_of(unit_ids)
    if task_ids:
        app.control.revoke(task_ids, terminate=True)


def cancel(job_id: str) -> list[str]:
    ids = lifecycle.mark_cancelled(job_id)
    audit.record(audit.Action.CANCEL, job_id, stopped=len(ids))
    ensure_embedded_redis()
    stop_tasks(ids)
    ended(job_id)
    return ids
