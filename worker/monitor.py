"""What the fleet is doing right now: live workers (Celery's broadcast ping and stats) and queue depths.

Both are asked of the broker, never of a database; what each worker runs comes from the jobs table (the
`worker` of running jobs), which is the record a dashboard can trust after restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kombu.exceptions import OperationalError

from convlens.worker.app import app
from convlens.worker.transport import QueueDepths, transport


@dataclass
class WorkerInfo:
    name: str
    queues: list[str] = field(default_factory=list)
    concurrency: int | None = None
    tasks_done: int = 0
    pid: int | None = None


def queue_depths() -> QueueDepths:
    """Messages waiting in each queue, or why the broker could not be reached."""
    return transport().depths()


def live_workers(timeout: float = 1.0) -> list[WorkerInfo]:
    """Workers that answer a broadcast within `timeout` seconds, with their queues and counters."""
    try:
        inspect = app.control.inspect(timeout=timeout)
        stats = inspect.stats() or {}
        queues = inspect.active_queues() or {} if stats else {}
    except (OperationalError, OSError, ConnectionError):
        return []
    workers = []
    for name, info in sorted(stats.items()):
        pool = info.get("pool") or {}
        workers.append(WorkerInfo(name=name, queues=sorted(q["name"] for q in queues.get(name, [])),
                                  concurrency=pool.get("max-concurrency"), pid=info.get("pid"),
                                  tasks_done=sum((info.get("total") or {}).values())))
    return workers


def stop_workers(names: list[str], wait_s: float) -> list[str]:
    """Asks these workers for a warm shutdown; the names still answering after `wait_s` seconds."""
    app.control.shutdown(destination=names)
    deadline = time.monotonic() + wait_s
    left = names
    while left and time.monotonic() < deadline:
        time.sleep(1)
        alive = {w.name for w in live_workers()}
        left = [n for n in names if n in alive]
    return left
