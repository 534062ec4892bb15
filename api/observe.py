"""Prometheus metrics, computed from the jobs table and the broker at each scrape: every API process answers
the same figures (no per-process counters to add up), and they survive restarts."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode

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
        for queue, n in queue_depths().counts.items():
            if n is not None:
                depth.add_metric([queue], n)
        yield depth


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(JobsCollector())


def exposition() -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(REGISTRY)


# A token's 43 URL-safe characters (secrets.token_urlsafe(32)); ids are 32 hex characters, kept.
SECRET_LIKE = re.compile(r"[A-Za-z0-9_-]{40,}")


def without_secrets(path: str) -> str:
    """A request's path with its query as the app parses it (percent-decoded names: `%74oken` is `token`),
    every value of a parameter whose name holds "token", and anything shaped like a token, replaced."""
    base, sep, query = path.partition("?")
    if not sep:
        return SECRET_LIKE.sub("[hidden]", base)
    kept = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        hidden = "token" in re.sub(r"[^a-z]", "", name.lower()) or SECRET_LIKE.search(value)
        kept.append((SECRET_LIKE.sub("[hidden]", name), "[hidden]" if hidden else value))
    return f"{SECRET_LIKE.sub('[hidden]', base)}?{urlencode(kept, safe='[]')}"


class NoSecrets(logging.Filter):
    """Blanks tokens in access-log lines (uvicorn's arguments: client, method, path, version, status): a login
    URL must not leave its secret in the server's log, however its parameter is spelled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = without_secrets(args[2])
            record.args = tuple(args)
        return True
