"""Celery tasks: thin wrappers that route worker.jobs bodies to queues and fan out folds and shards.

Task ids are job ids, so revoking a job revokes exactly its task.
"""

from __future__ import annotations

import kombu.exceptions
import redis
from celery import chord
from sqlalchemy.exc import OperationalError

from worker import jobs
from worker.app import app

# Transient database and broker errors: retried with exponential back-off.
RETRY = {
    "autoretry_for": (OperationalError, redis.ConnectionError, kombu.exceptions.OperationalError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_kwargs": {"max_retries": 6},
}


@app.task(name="convlens.train", bind=True, **RETRY)
def train(self, job_id: str) -> None:
    jobs.run_train(job_id, self.request.hostname)


@app.task(name="convlens.layers", bind=True, **RETRY)
def layers(self, job_id: str) -> None:
    jobs.run_layers(job_id, self.request.hostname)


@app.task(name="convlens.kfold", bind=True, **RETRY)
def kfold(self, job_id: str) -> None:
    children = jobs.plan_kfold(job_id, self.request.hostname)
    if children:
        chord([kfold_fold.si(c).set(task_id=c) for c in children])(kfold_aggregate.si(job_id))


@app.task(name="convlens.kfold_fold", bind=True, **RETRY)
def kfold_fold(self, child_id: str) -> None:
    jobs.run_fold(child_id, self.request.hostname)


@app.task(name="convlens.kfold_aggregate", bind=True, **RETRY)
def kfold_aggregate(self, job_id: str) -> None:
    jobs.aggregate_kfold(job_id, self.request.hostname)


@app.task(name="convlens.classify", bind=True, **RETRY)
def classify(self, job_id: str) -> None:
    children = jobs.plan_classify(job_id, self.request.hostname)
    if children:
        chord([classify_shard.si(c).set(task_id=c) for c in children])(classify_aggregate.si(job_id))


@app.task(name="convlens.classify_shard", bind=True, **RETRY)
def classify_shard(self, child_id: str) -> None:
    jobs.run_classify_shard(child_id, self.request.hostname)


@app.task(name="convlens.classify_aggregate", bind=True, **RETRY)
def classify_aggregate(self, job_id: str) -> None:
    jobs.aggregate_classify(job_id, self.request.hostname)


ENTRY = {"train": train, "kfold": kfold, "layers": layers, "classify": classify}


def submit(kind: str, params: dict) -> str:
    """Records a queued job and enqueues its task; returns the job id."""
    job_id = jobs.create_job(kind, params)
    ENTRY[kind].apply_async(args=[job_id], task_id=job_id)
    return job_id


def cancel(job_id: str) -> list[str]:
    ids = jobs.mark_cancelled(job_id)
    app.control.revoke(ids, terminate=True)
    return ids
