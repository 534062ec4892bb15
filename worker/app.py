"""The Celery app: Redis broker and result backend, gpu/cpu queues, late acks for long ML tasks."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from worker.broker import broker_url, ensure_embedded_redis

GPU_TASKS = ["convlens.train", "convlens.kfold_fold", "convlens.layers", "convlens.classify_shard"]
CPU_TASKS = ["convlens.kfold", "convlens.kfold_aggregate", "convlens.classify", "convlens.classify_aggregate"]


def make_app() -> Celery:
    ensure_embedded_redis()
    url = broker_url()
    app = Celery("convlens", broker=url, backend=url, include=["worker.tasks"])
    app.conf.update(
        task_queues=[Queue("gpu"), Queue("cpu")],
        task_default_queue="cpu",
        task_routes={**{n: {"queue": "gpu"} for n in GPU_TASKS}, **{n: {"queue": "cpu"} for n in CPU_TASKS}},
        # A worker killed mid-task leaves the message unacknowledged, so it is delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # A message taken by a worker that vanished entirely comes back after this many seconds.
            "visibility_timeout": int(os.environ.get("CONVLENS_VISIBILITY_TIMEOUT", "21600")),
        },
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


app = make_app()
