"""A job's life in the database: started, reporting progress, finished,
failed or cancelled. Shared by every job kind, queued or inline."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, defer

from convlens.db.models import FINISHED, Job, JobStatus, utcnow
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.ml.progress import ProgressEvent, epoch_figures
from convlens.ml.settings import settings
from convlens.worker.errors import AlreadyFinished, JobNotFound
from convlens.worker.paths import relocatable

TRANSIENT: tuple[type[BaseException], ...] = (OperationalError,)


class JobCancelled(Exception):
    pass


def hostname_or_inline(hostname: str | None) -> str:
    return hostname or f"inline@{socket.gethostname()}"


def this_runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _runner_is_dead(runner: str | None) -> bool:
    """True when the process that held a lease ran on this machine and has exited (a killed pool child)."""
    host, _, pid = (runner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def start(job_id: str, hostname: str | None, task_id: str | None = None) -> Job | None:
    """Claims the job and marks it running; None when it ended or another live process runs it.

    The claim is a compare-and-set on `lease`, so two deliveries of one job (a re-sent message, a broker
    restoring an unacknowledged one) never run it at once. A running job can be claimed when its heartbeat is
    stale or the process holding it is known dead: a redelivery after a killed pool child resumes at once.
    `task_id`: the Celery task that runs it now (what cancelling it stops).
    """
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found")
        if job.status in FINISHED or job.status == JobStatus.WAITING:
            return None
        if job.status == "running" and not (is_stale(job.heartbeat_at or job.started_at)
                                            or _runner_is_dead(job.runner)):
            return None
        now = utcnow()
        claimed = s.execute(update(Job).where(Job.id == job_id, Job.lease == job.lease, Job.status == job.status)
                            .values(status="running", worker=hostname_or_inline(hostname), error=None,
                                    runner=this_runner(), heartbeat_at=now, lease=job.lease + 1, task_id=task_id,
                                    started_at=job.started_at or now))
        if claimed.rowcount != 1:
            return None
        s.refresh(job)
        return job


def kind_of(job_id: str) -> str | None:
    """The job's kind; None when there is no such job (deleted since its message was sent)."""
    with session_scope() as s:
        return s.scalar(select(Job.kind).where(Job.id == job_id))


def task_of(job_id: str) -> str | None:
    """The Celery task that last claimed the job."""
    with session_scope() as s:
        return s.scalar(select(Job.task_id).where(Job.id == job_id))


def tasks_of(job_ids: list[str]) -> list[str]:
    with session_scope() as s:
        return [t for t in s.scalars(select(Job.task_id).where(Job.id.in_(job_ids))) if t]


def is_stale(at: datetime | None, cutoff: datetime | None = None) -> bool:
    """Whether a heartbeat at `at` is older than `cutoff` (default: stale_after_s ago)."""
    cutoff = cutoff or utcnow() - timedelta(seconds=settings().stale_after_s)
    return at is None or (at if at.tzinfo else at.replace(tzinfo=UTC)) < cutoff  # SQLite hands back naive UTC


@contextmanager
def heartbeat(job_id: str, lease: int) -> Iterator[None]:
    """While the body runs, refreshes the job's heartbeat (as long as this lease still holds it)."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(settings().heartbeat_s):
            try:
                with session_scope() as s:
                    s.execute(update(Job).where(Job.id == job_id, Job.lease == lease).values(heartbeat_at=utcnow()))
            except OperationalError:
                pass  # the database is away for a moment: the next beat tries again

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def finish(job: Job, result: BaseModel | None = None) -> None:
    """Marks the job succeeded with its typed result, and the headline figures (`summary_of`) lists compare."""
    from convlens.worker.kinds.base import summary_of

    job.status, job.finished_at, job.heartbeat_at = "succeeded", utcnow(), None
    if result is not None:
        job.result, job.summary = relocatable(result.model_dump(mode="json")), summary_of(result)
    progress = job.progress or {}
    # A finished job's progress says so, not the last step it reported ("probe 2/3").
    job.progress = {**progress, "stage": "done", "fraction": 1.0,
                    **({"done": progress["total"]} if progress.get("total") is not None else {})}


def fail(job_id: str, error: str) -> None:
    """Fails the job, and the job it belongs to (a part's fan-out job, a child's composite job) with its reason."""
    from convlens.worker.kinds import PART_KINDS

    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is not None and job.status not in FINISHED:
            job.status, job.error, job.finished_at = "failed", error, utcnow()
            if job.parent_id:
                parent = s.get(Job, job.parent_id)
                if parent is not None and parent.status not in FINISHED:
                    parent.status, parent.finished_at = "failed", utcnow()
                    parent.error = f"part {job.part} failed: {error}" if job.kind in PART_KINDS \
                        else f"{job.kind} job {job.id} failed: {error}"


def status_of(job_id: str) -> str | None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        return job.status if job is not None else None


def is_cancelled(job_id: str) -> bool:
    with session_scope() as s:
        job = s.get(Job, job_id)
        return job is None or job.status == "cancelled"


def children(s: Session, job_id: str) -> list[Job]:
    """A job's parts in order; their params (a shard's thousands of paths) are read only if asked for."""
    return list(s.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.part).options(defer(Job.params))))


def descendants(s: Session, job_id: str) -> list[Job]:
    """A job's children, their children (a composite's k-fold child's folds), and so on."""
    found, frontier = [], [job_id]
    while frontier:
        kids = list(s.scalars(select(Job).where(Job.parent_id.in_(frontier)).options(defer(Job.params))))
        found += kids
        frontier = [k.id for k in kids]
    return found


def cancel_descendants(s: Session, job_id: str) -> list[str]:
    """Marks every unfinished descendant cancelled; returns their ids (to revoke)."""
    now, ids = utcnow(), []
    for j in descendants(s, job_id):
        if j.status not in FINISHED:
            j.status, j.finished_at = "cancelled", now
            ids.append(j.id)
    return ids


def composite_ancestors(job_id: str) -> list[str]:
    """The composite jobs a job belongs to (a composite's child, or a part of one of its fan-out children)."""
    from convlens.worker.kinds import UnknownKind, get_kind

    found = []
    with session_scope() as s:
        job = s.get(Job, job_id)
        while job is not None and job.parent_id is not None:
            job = s.get(Job, job.parent_id)
            try:
                if job is not None and get_kind(job.kind).composite:
                    found.append(job.id)
            except UnknownKind:
                pass
    return found


def mark_cancelled(job_id: str) -> list[str]:
    """Marks the job and its unfinished descendants cancelled; returns every id to revoke. AlreadyFinished
    when the job has ended and none of them is left running."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found")
        finished = job.status in FINISHED
        if not finished:
            job.status, job.finished_at = "cancelled", utcnow()
        descendants = cancel_descendants(s, job_id)
        if finished and not descendants:
            raise AlreadyFinished(f"job {job_id} already {job.status}: nothing to cancel")
        return [job.id, *descendants]


class Reporter:
    """Progress callback for ml/: writes job.progress at most once a second and stops cancelled jobs.

    `watch`: the jobs whose cancellation stops this one (a part watches its parent too).
    """

    def __init__(self, job_id: str, every_s: float = 1.0, watch: list[str] | None = None) -> None:
        self.job_id, self.every_s, self.last = job_id, every_s, 0.0
        self.watch = watch or [job_id]

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and event.stage not in ("epoch", "evaluate"):
            return
        self.last = now
        with session_scope() as s:
            job = s.get(Job, self.job_id)
            watched = [s.get(Job, j) for j in self.watch]
            if job is None or any(w is not None and w.status == "cancelled" for w in watched):
                raise JobCancelled(self.job_id)
            job.progress = {**(job.progress or {}), **event.with_fraction().model_dump(exclude_none=True)}
            figures = epoch_figures(event)
            if figures is not None:  # a resumed run reports its epochs again from where it resumed
                job.history = [e for e in job.history or [] if e["epoch"] < figures["epoch"]] + [figures]


class JobFailed(Exception):
    """The job failed for good and the failure is recorded: Celery must not retry it."""


DISK_FULL_WAIT_S = 900  # how long a failure waits for space to record itself before it gives up
_FULL = ("database or disk is full", "No space left on device", "Disk quota exceeded")


def disk_full(exc: BaseException) -> str | None:
    """The OS's reason when exc (or what caused it) is a full disk: a file write, SQLite's SQLITE_FULL,
    PostgreSQL's disk_full (53100), or a Redis that stopped writes because its own file could not be written."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{cause.strerror}" + (f": {cause.filename}" if cause.filename else "")
        if getattr(cause, "sqlstate", None) == "53100" or any(text in str(cause) for text in _FULL):
            text = str(getattr(cause, "orig", None) or cause).splitlines()[0]
            return text if "No space left" in text else f"No space left on device ({text})"
        cause = getattr(cause, "orig", None) or cause.__cause__ or cause.__context__
    return None


def record_failure(job_id: str, reason: str) -> None:
    """fail(), retried while the disk is full: the reason is written as soon as space allows a write."""
    deadline = time.monotonic() + DISK_FULL_WAIT_S
    while True:
        try:
            fail(job_id, reason)
            return
        except Exception as exc:
            if disk_full(exc) is None or time.monotonic() > deadline:
                raise
            time.sleep(2)


def _reason(exc: Exception) -> str:
    """What a failed job shows: the message of an error a user can act on, the type too of anything else."""
    if isinstance(exc, ConvlensError | ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Marks the job failed on a permanent error (transient DB errors are left to the caller's retry). A full disk
    is permanent: the job fails with the OS's reason once it can be written, and is not retried."""

    def wrapper(job_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(job_id, *args, **kwargs)
        except JobCancelled:
            return None
        except Exception as exc:
            full = disk_full(exc)
            if full is None and isinstance(exc, TRANSIENT):
                raise
            record_failure(job_id, full or _reason(exc))
            if full is not None:
                from convlens.worker.broker import wait_until_writable

                wait_until_writable(DISK_FULL_WAIT_S)  # the task's acknowledgement is a write to the broker
                raise JobFailed(full) from exc
            if not isinstance(exc, ConvlensError | ValueError | DBAPIError):
                traceback.print_exc()
            raise

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper
