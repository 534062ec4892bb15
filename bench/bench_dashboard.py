"""The dashboard at scale: server time per page with 10,000 jobs and a classify job of 1,000,000 prediction
rows, on SQLite and PostgreSQL side by side (target: every page under 200 ms).

    python bench/bench_dashboard.py [--jobs 10000] [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/test]

Pages are requested in-process (Starlette's TestClient, a session cookie like a browser's), so the figure is
the server's time: queries plus rendering, without a network. Median of 5 requests after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import uuid
from datetime import UTC, datetime, timedelta

from bench_store import fill, timed, use_database

KINDS = ("train", "classify", "layers", "kfold")
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "queued", "running")


def result_of(kind: str, rng: random.Random) -> dict:
    """Just what a job list shows of each kind's result (its headline)."""
    acc = rng.random()
    return {"train": {"accuracy": acc},
            "classify": {"classified": rng.randrange(10**6), "unreadable": rng.randrange(100)},
            "layers": {"rows": [{"layer": "conv3", "probe_accuracy": acc}]},
            "kfold": {"metrics": {"accuracy": {"mean": acc, "std": 0.01}}}}[kind]


def add_jobs(n: int) -> None:
    from convlens.db.models import Job, JobTag
    from convlens.db.session import session_scope

    rng = random.Random(0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows, tags = [], []
    for i in range(n):
        kind, status = KINDS[i % 4], rng.choice(STATUSES)
        began = start + timedelta(minutes=i)
        job_id = uuid.uuid4().hex
        result = result_of(kind, rng) if status == "succeeded" else None
        tags += [{"job_id": job_id, "tag": t} for t in (["lr-sweep"] if i % 10 == 0 else []) + [f"batch-{i % 7}"]]
        rows.append({"id": job_id, "kind": kind, "status": status, "name": f"run {i}",
                     "params": {"limit": 1000, "learning_rate": 10 ** rng.uniform(-4, -2), "preset": "seed"},
                     "summary": {"accuracy": result["accuracy"]} if result and kind == "train" else None,
                     "created_at": began, "started_at": began if status != "queued" else None,
                     "finished_at": began + timedelta(seconds=rng.randrange(5, 3600))
                     if status in ("succeeded", "failed", "cancelled") else None,
                     "worker": f"w{i % 8}@bench", "submitted_by": "bench",
                     "result": result,
                     "progress": {"stage": "train", "fraction": 0.5} if status == "running" else None})
    with session_scope() as s:
        s.execute(Job.__table__.insert(), rows)
        s.execute(JobTag.__table__.insert(), tags)


def finish(job_id: str) -> None:
    """The filled classify job as its aggregation leaves it (statistics refreshed, as a finished classify job does)."""
    from convlens.db.models import Job
    from convlens.db.session import session_scope
    from convlens.worker.kinds.classify import refresh_planner_statistics

    with session_scope() as s:
        refresh_planner_statistics(s, 10**6)
        job = s.get(Job, job_id)
        job.status, job.started_at, job.finished_at = "succeeded", datetime.now(UTC), datetime.now(UTC)
        job.result = {"files": 10**6, "classified": 10**6, "unreadable": 0, "shards": 50,
                      "per_class": {c: 10**5 for c in ("airplane", "cat", "dog")}}


def pages(client, job_id: str) -> dict[str, float]:
    def get(url: str):
        def fetch():
            r = client.get(url)
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
        return fetch

    deep = client.get(f"/jobs/{job_id}/predictions", params={"limit": 1, "offset": args.rows // 2}).json()
    cursor = deep["next_after"]
    job = f"/ui/jobs/{job_id}"
    return {
        "jobs, first page": timed(get("/")),
        "jobs, last page": timed(get(f"/?offset={(args.jobs // 50 - 1) * 50}")),
        "jobs, failed train jobs": timed(get("/?status=failed&kind=train")),
        "jobs rows (the live poll)": timed(get("/ui/jobs/rows")),
        "jobs, tag lr-sweep, sorted by accuracy": timed(get("/?tag=lr-sweep&sort=-metrics.accuracy&columns="
                                                            "params.learning_rate,metrics.accuracy")),
        "jobs, filter accuracy and lr, sorted": timed(get(
            "/?filter=metrics.accuracy+%3E+0.5+and+params.learning_rate+%3C+0.001&sort=-params.learning_rate")),
        "API /jobs, filter name ~ 99, sort name": timed(get("/jobs?filter=name+~+99&sort=name&limit=100")),
        "classify grid, first page": timed(get(job)),
        f"classify grid, page at row {args.rows // 2:,}": timed(get(f"{job}?after={cursor}")),
        "classify grid, label cat": timed(get(f"{job}?label=cat")),
        "classify grid, misclassified": timed(get(f"{job}?misclassified=1")),
        "classify grid, uncertain": timed(get(f"{job}?uncertain=1")),
        "classify grid, unreadable": timed(get(f"{job}?errors=1")),
        "classify grid, confidence >= 0.999": timed(get(f"{job}?min_confidence=0.999")),
        "CSV, cat with confidence >= 0.99": timed(get(f"/jobs/{job_id}/predictions.csv?label=cat&min_confidence=0.99"),
                                                   repeat=3),
        "/metrics (Prometheus)": timed(get("/metrics")),
    }


def run_on(url: str | None) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from convlens.api.auth import SESSION_COOKIE
    from convlens.api.http import app
    from convlens.api.sessions import start_session
    from convlens.api.tokens import create_token

    use_database(url)
    add_jobs(args.jobs)
    job_id, _ = fill(args.rows)
    finish(job_id)
    client = TestClient(app)
    cookie, _ = start_session(create_token(f"bench-{uuid.uuid4().hex[:6]}", "read").token)
    client.cookies.set(SESSION_COOKIE, cookie)
    return pages(client, job_id)


def main() -> None:
    import psycopg

    with tempfile.TemporaryDirectory() as home:
        os.environ["CONVLENS_HOME"] = home
        os.environ["CONVLENS_BROKER_URL"] = "redis://127.0.0.1:6379/15"  # queue depths: an empty db
        sqlite = run_on(None)
        name = f"convlens_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            pg = run_on(args.pg.rsplit("/", 1)[0] + "/" + name)
        finally:
            from convlens.db.session import _engine

            _engine.cache_clear()
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{args.jobs:,} jobs, a classify job of {args.rows:,} rows; server ms per page, median of 5 "
          "(target: under 200)")
    print(f"{'page':40s} {'SQLite':>10s} {'PostgreSQL':>12s}")
    for key in sqlite:
        print(f"{key:40s} {sqlite[key]:>10.1f} {pg[key]:>12.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    main()
