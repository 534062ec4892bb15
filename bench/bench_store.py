"""The results store at scale: 1,000,000 generated prediction rows of one classify job (plus a smaller job
beside it), then each filtered query the CLI and the API run, timed on SQLite and PostgreSQL side by side.

    python bench/bench_store.py [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/test]

Rows are written through the same bulk path the workers use (worker.steps.store), one shard at a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _rows(n: int, seed: int):
    from convlens.db.rows import PredictionRow

    rng = np.random.default_rng(seed)
    pred, true = rng.integers(0, 10, n), rng.integers(0, 10, n)
    conf = rng.random(n)
    sizes = rng.integers(0, 4, n)
    for i in range(n):
        if i % 997 == 0:
            yield PredictionRow(path=f"/data/junk/{i:07d}.png", error="corrupt image: truncated")
            continue
        c, t = CLASSES[pred[i]], CLASSES[true[i]]
        yield PredictionRow(path=f"/data/{t}/{i:07d}.png", predicted=c, confidence=float(conf[i]),
                            top_k=[(c, float(conf[i]))], decision=c if sizes[i] == 1 else "uncertain", true_label=t,
                            prediction_set=CLASSES[:sizes[i]])


def fill(n: int, shard_size: int = 20_000) -> tuple[str, float]:
    from convlens.db.session import session_scope
    from convlens.worker import steps
    from convlens.worker.kinds.base import Output
    from convlens.worker.kinds.classify import ShardResult

    steps.create_job("classify", {"folder": "/", "model": "0" * 32})  # a neighbour of 10,000 rows
    job_id = steps.create_job("classify", {"folder": "/", "model": "0" * 32})
    rows = _rows(n, 0)
    started = time.perf_counter()
    for shard in range((n + shard_size - 1) // shard_size):
        chunk = [next(rows) for _ in range(min(shard_size, n - shard * shard_size))]
        with session_scope() as s:
            steps.store(s, job_id, shard, Output(result=ShardResult(classified=len(chunk), errors=0),
                                                 predictions=chunk))
    return job_id, time.perf_counter() - started


def timed(fn, repeat: int = 5) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def queries(job_id: str) -> dict[str, float]:
    from sqlalchemy import func, select

    from convlens.api import queries as q
    from convlens.db.models import Prediction
    from convlens.db.session import session_scope

    def per_class():
        with session_scope() as s:
            return s.execute(select(Prediction.predicted, func.count()).where(Prediction.job_id == job_id)
                             .group_by(Prediction.predicted)).all()

    return {
        "first page (100, path order)": timed(lambda: q.predictions(job_id, limit=100)),
        "page at offset 500,000": timed(lambda: q.predictions(job_id, limit=100, offset=500_000)),
        "--label cat (first 100)": timed(lambda: q.predictions(job_id, "cat", limit=100)),
        "--misclassified (first 100)": timed(lambda: q.predictions(job_id, misclassified=True, limit=100)),
        "--min-confidence 0.999 (first 100)": timed(lambda: q.predictions(job_id, min_confidence=0.999, limit=100)),
        "--errors (first 100)": timed(lambda: q.predictions(job_id, errors=True, limit=100)),
        "--set-size 3 (first 100)": timed(lambda: q.predictions(job_id, limit=100, set_size=3)),
        "counts per class": timed(per_class),
    }


def run_on(url: str | None, n: int) -> dict[str, float]:
    from convlens.db.session import _engine, ensure_current, upgrade

    _engine.cache_clear()
    if url:
        os.environ["CONVLENS_DATABASE_URL"] = url
        upgrade(url)
    else:
        os.environ.pop("CONVLENS_DATABASE_URL", None)
        ensure_current()
    job_id, fill_s = fill(n)
    return {"write (rows/s)": n / fill_s, **queries(job_id)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import psycopg

    with tempfile.TemporaryDirectory() as home:
        os.environ["CONVLENS_HOME"] = home
        sqlite = run_on(None, args.rows)
        name = f"convlens_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            pg = run_on(args.pg.rsplit("/", 1)[0] + "/" + name, args.rows)
        finally:
            from convlens.db.session import _engine

            _engine.cache_clear()
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{args.rows:,} prediction rows in one job; median of 5 runs, ms (target: under 200)")
    print(f"{'query':40s} {'SQLite':>10s} {'PostgreSQL':>12s}")
    for key in sqlite:
        fmt = "{:>10,.0f}" if key.startswith("write") else "{:>10.1f}"
        print(f"{key:40s} {fmt.format(sqlite[key])} {fmt.format(pg[key]):>12s}")


if __name__ == "__main__":
    main()
