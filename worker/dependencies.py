"""Jobs that wait for other jobs: `--after JOB` (and a `--model` naming a train job that has not finished yet).

A job submitted after others is stored `waiting` with the ids it waits for. Whenever a job ends (and on every
recovery pass, so nothing waits forever after a crash), `release()` moves each waiting job on: queued once
everything it waits for has succeeded, failed with the reason as soon as one of them failed or was cancelled.
Each move is a compare-and-set on the status, so several processes may release at once.
"""

from __future__ import annotations

from sqlalchemy import select, update

from convlens.db.models import Job, JobStatus, utcnow
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.worker.job_ids import expand
from convlens.worker.kinds import PART_KINDS
from convlens.worker.paths import JOB_ID

MAX_AFTER = 32
MODEL_KINDS = ("train", "import")  # the kinds whose jobs register a model


class DependencyRefused(ConvlensError, ValueError):
    """A job to wait for (or a model's train job) that does not exist or can never succeed."""


def _describe(job: Job) -> str:
    return f"{job.kind} job {job.id}"


def check_after(ids: list[str]) -> list[str]:
    """The ids a new job waits for, each checked to name an existing top-level job."""
    ids = list(dict.fromkeys(expand(job_id) for job_id in ids))
    if len(ids) > MAX_AFTER:
        raise DependencyRefused(f"--after: at most {MAX_AFTER} jobs, not {len(ids)}", field="after")
    with session_scope() as s:
        for job_id in ids:
            job = s.get(Job, job_id) if JOB_ID.fullmatch(job_id) else None
            if job is None:
                raise DependencyRefused(f"--after {job_id}: no such job", field="after")
            if job.kind in PART_KINDS:
                raise DependencyRefused(f"--after {job_id}: that is a part of job {job.parent_id}; name the job",
                                        field="after")
    return ids


def model_job(ref: str) -> str | None:
    """For a model given as a job id: that train job's id when it has not finished yet (wait for it), None
    when it has its model; refused when it is no train job or can never make a model."""
    if not JOB_ID.fullmatch(ref):
        return None
    with session_scope() as s:
        job = s.get(Job, ref)
        if job is None:
            raise DependencyRefused(f"--model {ref}: no job with that id (a model is a train job's id or a .keras "
                                    "file)", field="model")
        if job.kind not in MODEL_KINDS:
            raise DependencyRefused(f"--model {ref}: that is a {job.kind} job, not a train or import job; it has no "
                                    "model", field="model")
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise DependencyRefused(f"--model {ref}: that train job {job.status}, so it has no model", field="model")
        return None if job.status == JobStatus.SUCCEEDED else job.id


def _verdict(s, job: Job) -> tuple[JobStatus, str | None] | None:  # noqa: ANN001
    """Where a waiting job goes now: (queued, None), (failed, reason), or None to keep waiting."""
    waited = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(job.waits_for or [])))}
    for job_id in job.waits_for or []:
        dep = waited.get(job_id)
        if dep is None:
            return JobStatus.FAILED, f"waited for job {job_id}, which was deleted"
        if dep.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            why = f": {dep.error}" if dep.error else ""
            return JobStatus.FAILED, f"waited for {_describe(dep)}, which {dep.status}{why}"
    if all(waited[j].status == JobStatus.SUCCEEDED for j in job.waits_for or []):
        return JobStatus.QUEUED, None
    return None


def release() -> list[tuple[str, str]]:
    """Moves every waiting job whose fate is known; returns (id, kind) of those now queued, to be sent."""
    ready: list[tuple[str, str]] = []
    moved = True
    while moved:  # a failure travels down a chain of waiting jobs in one call
        moved = False
        with session_scope() as s:
            for job in s.scalars(select(Job).where(Job.status == JobStatus.WAITING)).all():
                verdict = _verdict(s, job)
                if verdict is None:
                    continue
                status, reason = verdict
                values = {"status": status, "error": reason}
                if status == JobStatus.FAILED:
                    values["finished_at"] = utcnow()
                done = s.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.WAITING)
                                 .values(**values))
                if done.rowcount == 1:
                    moved = True
                    if status == JobStatus.QUEUED:
                        ready.append((job.id, job.kind))
    return ready
