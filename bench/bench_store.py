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
    """A classify job of n rows in shards, each stored by the workers' store path and recorded as a succeeded
    part with its counts, as a worker leaves it."""
    from collections import Counter

    from convlens.db.models import Job
    from convlens.db.session import session_scope
    from convlens.worker import steps
    from convlens.worker.kinds.base import Output
    from convlens.worker.kinds.classify import ShardResult

    with session_scope() as s:  # the model's train job, finished (a classify job names a trained model)
        model = Job(kind="train", status="succeeded", params={})
        s.add(model)
        s.flush()
        model_id = model.id
    steps.create_job("classify", {"folder": "/", "model": model_id})  # a neighbour of 10,000 rows
    job_id = steps.create_job("classify", {"folder": "/", "model": model_id})
    rows = _rows(n, 0)
    spent = 0.0  # in the store only: generating the rows is not the store's work
    for shard in range((n + shard_size - 1) // shard_size):
        chunk = [next(rows) for _ in range(min(shard_size, n - shard * shard_size))]
        good = [r for r in chunk if r.error is None]
        result = ShardResult(classified=len(good), errors=len(chunk) - len(good),
                             per_class=dict(Counter(r.predicted for r in good)),
                             set_sizes={str(k): v for k, v in Counter(r.set_size for r in good).items()})
        started = time.perf_counter()
        with session_scope() as s:
            steps.store(s, job_id, shard, Output(result=result, predictions=chunk))
        spent += time.perf_counter() - started
        with session_scope() as s:
            s.add(Job(kind="classify_shard", parent_id=job_id, part=shard, size=len(chunk), status="succeeded",
                      params={}, result=result.model_dump()))
    return job_id, spent


def write_paths(n: int = 100_000, shard_size: int = 20_000) -> dict[str, float]:
    """Rows/s of the two bulk writes, on the same rows in the same run: one SQLAlchemy Core executemany of
    row dicts per shard, and steps.insert_predictions (COPY on PostgreSQL, the driver's executemany on SQLite)
    of the rows' stored() tuples, counting the encoding of each row into what the write takes."""
    from sqlalchemy import insert

    from convlens.db.models import Prediction
    from convlens.db.session import session_scope
    from convlens.worker import steps

    out = {}
    rows = list(_rows(n, 1))
    def core(s, job_id: str, k: int, batch: list) -> None:
        s.execute(insert(Prediction.__table__),
                  [{**r.model_dump(exclude={"id", "shard"}), "job_id": job_id, "shard": k} for r in batch])

    def store_path(s, job_id: str, k: int, batch: list) -> None:
        steps.insert_predictions(s, [(job_id, k, *r.stored()) for r in batch])

    for name, write in (("executemany", core), ("store path", store_path)):
        job_id = steps.create_job("classify", {"folder": "/", "model": "0" * 32})
        started = time.perf_counter()
        for k in range(n // shard_size):
            with session_scope() as s:
                write(s, job_id, k, rows[k * shard_size:(k + 1) * shard_size])
        out[f"write, {name} (rows/s)"] = n / (time.perf_counter() - started)
    return out


def timed(fn, repeat: int = 5) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def queries(job_id: str, n: int) -> dict[str, float]:
    from sqlalchemy import func, select

    from convlens.api import queries as q
    from convlens.db.models import Prediction
    from convlens.db.session import session_scope

    def per_class():
        with session_scope() as s:
            return s.execute(select(Prediction.predicted, func.count()).where(Prediction.job_id == job_id)
                             .group_by(Prediction.predicted)).all()

    half = n // 2
    middle = q.predictions(job_id, limit=1, offset=half)[0]
    cursor = (middle.shard, middle.id)
    aggregation = timed(lambda: aggregate(job_id), repeat=1)
    return {
        "first page (100, path order)": timed(lambda: q.predictions(job_id, limit=100)),
        f"page at offset {half:,} (offset=)": timed(lambda: q.predictions(job_id, limit=100, offset=half)),
        f"page after row {half:,} (after=)": timed(lambda: q.predictions(job_id, limit=100, after=cursor)),
        "--label cat (first 100)": timed(lambda: q.predictions(job_id, "cat", limit=100)),
        "--misclassified (first 100)": timed(lambda: q.predictions(job_id, misclassified=True, limit=100)),
        "--min-confidence 0.999 (first 100)": timed(lambda: q.predictions(job_id, min_confidence=0.999, limit=100)),
        "--errors (first 100)": timed(lambda: q.predictions(job_id, errors=True, limit=100)),
        "--set-size 3 (first 100)": timed(lambda: q.predictions(job_id, limit=100, set_size=3)),
        "counts per class, GROUP BY": timed(per_class),
        "aggregation (once per job)": aggregation,
        "counts per class, stored (metrics)": timed(
            lambda: [m for m in q.metrics(job_id) if m.name == "count"]),
    }


def aggregate(job_id: str) -> None:
    """What a classify job's last step does: sums its shards' counts, stores them as its metrics, and refreshes
    PostgreSQL's statistics once the job is finished."""
    from convlens.db.session import session_scope
    from convlens.worker import lifecycle, steps
    from convlens.worker.kinds.base import Context
    from convlens.worker.kinds.classify import Classify

    kind = Classify()
    with session_scope() as s:
        out = kind.aggregate(s, Context(job_id, None, Path("."), lambda e: None), lifecycle.children(s, job_id))
        steps.store(s, job_id, None, out)
    with session_scope() as s:
        kind.after_finish(s, job_id, out.result)


def use_database(url: str | None) -> None:
    """Points this process at `url` (None: the embedded SQLite of CONVLENS_HOME), migrated to head."""
    from convlens.db.session import _engine, ensure_current, upgrade

    _engine.cache_clear()
    if url:
        os.environ["CONVLENS_DATABASE_URL"] = url
        upgrade(url)
    else:
        os.environ.pop("CONVLENS_DATABASE_URL", None)
        ensure_current()


def run_on(url: str | None, n: int) -> dict[str, float]:
    use_database(url)
    job_id, fill_s = fill(n)
    return {**write_paths(), "write, 1M rows via steps.store (rows/s)": n / fill_s, **queries(job_id, n)}


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
    print(f"{'query':42s} {'SQLite':>10s} {'PostgreSQL':>12s}")
    for key in sqlite:
        fmt = "{:>10,.0f}" if key.startswith("write") else "{:>10.1f}"
        label = key.replace("1M rows", f"{args.rows:,} rows")
        print(f"{label:42s} {fmt.format(sqlite[key])} {fmt.format(pg[key]):>12s}")


if __name__ == "__main__":
    main()
