"""Prometheus metrics, computed from the jobs table and the broker at each scrape: every API process answers
the same figures (no per-process counters to add up), and they survive restarts."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import func, select

from convlens.db.models import FINISHED, JOB_STATUSES, Job
from convlens.db.session import session_scope
from convlens.worker.kinds import KINDS
from convlens.worker.monitor import queue_depths

# Seconds: from a smoke test's few seconds to a long training run's hours.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600)


class JobsCollector:
    """convlens_jobs{kind,status}, convlens_queue_depth{queue}, convlens_job_duration_seconds{kind,status}."""

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("convlens_jobs", "Top-level jobs by kind and status", labels=["kind", "status"])
        durations = HistogramMetricFamily("convlens_job_duration_seconds", "Run time of finished top-level jobs",
                                          labels=["kind", "status"])
        with session_scope() as s:
            top = Job.parent_id.is_(None)
            counts = dict(((k, st), n) for k, st, n in s.execute(
                select(Job.kind, Job.status, func.count()).where(top).group_by(Job.kind, Job.status)))
            finished = s.execute(select(Job.kind, Job.status, Job.started_at, Job.finished_at).where(
                top, Job.status.in_(FINISHED), Job.started_at.is_not(None), Job.finished_at.is_not(None))).all()
        for kind in sorted({*KINDS, *(k for k, _ in counts)}):
            for status in JOB_STATUSES:
                jobs.add_metric([kind, status], counts.get((kind, status), 0))
        seconds: dict[tuple[str, str], list[float]] = {}
        for kind, status, started, ended in finished:
            seconds.setdefault((kind, status), []).append(max(0.0, (ended - started).total_seconds()))
        for (kind, status), values in sorted(seconds.items()):
            buckets = [(str(b), sum(v <= b for v in values)) for b in DURATION_BUCKETS]
            durations.add_metric([kind, status], [*buckets, ("+Inf", len(values))], sum_value=sum(values))
        yield jobs
        yield durations
        depth = GaugeMetricFamily("convlens_queue_depth", "Messages waiting in each broker queue (absent: broker "
                                  "unreachable)", labels=["queue"])
        for queue, n in queue_depths().items():
            if n is not None:
                depth.add_metric([queue], n)
        yield depth


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(JobsCollector())


def exposition() -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(REGISTRY)


SECRET_IN_URL = re.compile(r"(token=)[^&\s]*", re.IGNORECASE)


class NoSecrets(logging.Filter):
    """Blanks `token=...` in access-log lines: a login URL must not leave its secret in the server's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(SECRET_IN_URL.sub(r"\1[hidden]", a) if isinstance(a, str) else a
                                for a in record.args)
        return True
