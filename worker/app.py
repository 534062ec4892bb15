"""The Celery app: a Redis or RabbitMQ broker, gpu/cpu queues, late acks for long ML tasks.

Importing it has no side effects: whoever sends or consumes tasks starts the embedded Redis first
(`worker.broker.ensure_embedded_redis`). Tasks name their queue when they are sent (see `worker.tasks`).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from convlens.ml.settings import settings
from convlens.worker.broker import broker_url
from convlens.worker.queues import QUEUES, QueueName


def make_app() -> Celery:
    url = broker_url()
    # Results live in the jobs table; Redis keeps Celery's task states too, RabbitMQ (amqp://) keeps none.
    backend = url if url.startswith(("redis", "rediss")) else None
    app = Celery("convlens", broker=url, backend=backend,
                 include=["convlens.worker.tasks", "convlens.worker.recovery"])
    # RabbitMQ: quorum queues (durable, replicated on a cluster); Celery then sets QoS per consumer, as they need.
    arguments = {"x-queue-type": "quorum"} if url.startswith("amqp") else None
    app.conf.update(
        task_queues=[Queue(name, queue_arguments=arguments) for name in QUEUES],
        task_default_queue=QueueName.CPU,
        # A worker killed mid-task leaves the message unacknowledged, so it is delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # A message taken by a worker that vanished entirely comes back after this many seconds.
            "visibility_timeout": settings().visibility_timeout,
        },
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        # A task that cannot finish (a hung read, a runaway job) frees its worker; the job fails with the reason.
        task_time_limit=settings().task_time_limit,
        task_soft_time_limit=settings().task_time_limit - 30,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


app = make_app()
