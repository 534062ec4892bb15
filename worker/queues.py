"""The queues jobs are sent to, defined once (the app declares them, kinds pick one, the transport reads them)."""

from __future__ import annotations

from enum import StrEnum


class QueueName(StrEnum):
    GPU = "gpu"  # training and inference: workers with an accelerator, or any worker
    CPU = "cpu"  # planning, aggregation, composite jobs' steps: any worker


QUEUES: tuple[QueueName, ...] = tuple(QueueName)
