"""Bulk classification through each job path, side by side, on the same model and the same PNG folder:

- in-process: `ml.classify.classify_files` over every file in one warm process (the model's own pace, decode
  included): the baseline;
- inline: `convlens run classify` (plans, runs every shard and stores its rows in its own process);
- queue: `convlens submit classify --wait` with one warm worker, and with two workers on the same machine.

"(job)" figures run from the job's creation (submit) to its end (every prediction stored), by the job's own
timestamps; "(command)" figures are the CLI's wall time, which adds its process start-up (TensorFlow-free, about
a second) and, for --wait, its once-a-second polling.

Each path runs on SQLite (the embedded default) and PostgreSQL, with and without Grad-CAM overlays, and every
run is checked: one row per file, each file once. The queue path runs with each artifact store in --store: `home`
(outputs stay files) and `database` (every overlay also written into the results database, as a fleet without a
shared disk needs). Also reported: PNG decode throughput per core against the
model's own rate on decoded arrays (what a GPU would need from the decoding threads).

    python bench/bench_jobs.py [--n 10000 100000] [--db sqlite pg] [--gradcam no yes] [--store home database]
                               [--model M.keras]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from _report import Table, write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def make_folder(folder: Path, n: int) -> None:
    """n PNGs of real CIFAR-10 test images (cycled), in class folders so accuracy can be checked."""
    from PIL import Image

    from convlens.ml.data.cifar import load_cifar10
    from convlens.ml.settings import settings

    data = load_cifar10(settings().datasets_dir)
    for i in range(n):
        j = i % len(data.y_test)
        d = folder / data.class_names[data.y_test[j]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.x_test[j]).save(d / f"{i:06d}.png")


def in_process(model: str, folder: Path, gradcam: bool, out: Path) -> dict:
    """The baseline, in a fresh child process: warm-up on 512 files, then every file, timed."""
    code = f"""
import json, time
from pathlib import Path
from convlens.ml.classify import SetOptions, classify_files
from convlens.ml.listing import list_folder
from convlens.ml.saved import load_trained
trained = load_trained({model!r})
files = list_folder(Path({str(folder)!r}))
kw = dict(gradcam={gradcam}, out_dir=Path({str(out)!r}), batch_size=256, within=Path({str(folder)!r}),
          conformal=SetOptions())
classify_files(trained, files[:512], **kw)
start = time.perf_counter()
rows = classify_files(trained, files, **kw)
print("RESULT:" + json.dumps({{"seconds": time.perf_counter() - start, "rows": len(rows)}}))
"""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT:"))
    return json.loads(line[7:])


def decode_rates(model: str, folder: Path, n: int = 4000) -> dict:
    """PNG decode (+ resize) per core, one thread, against the model's forward pass on decoded arrays."""
    import tensorflow as tf

    from convlens.ml.classify import _predictor
    from convlens.ml.data.images import decode_rgb, resize
    from convlens.ml.listing import list_folder
    from convlens.ml.saved import load_trained

    files = list_folder(folder)[:n]
    start = time.perf_counter()
    arrays = [resize(decode_rgb(f), (32, 32)) for f in files]
    decode = len(files) / (time.perf_counter() - start)
    trained = load_trained(model)
    predict = _predictor(trained.model)
    x = tf.constant(np.stack(arrays[:256]).astype(np.float32) / 255.0)
    predict(x)
    start = time.perf_counter()
    for _ in range(len(files) // 256):
        predict(x).numpy()
    forward = (len(files) // 256) * 256 / (time.perf_counter() - start)
    return {"decode_per_core": decode, "forward": forward}


class Services:
    """A database (a temp SQLite home, or a throwaway PostgreSQL database) and an empty Redis db index."""

    def __init__(self, db: str, work: Path, store: str = "home") -> None:
        from services import create_pg_database, free_redis_db

        self.home = work / f"home-{db}-{uuid.uuid4().hex[:6]}"
        self.home.mkdir(parents=True)
        self.pg = create_pg_database() if db == "pg" else None
        self.broker = free_redis_db()
        self.env = {**os.environ, "CONVLENS_HOME": str(self.home), "CONVLENS_BROKER_URL": self.broker,
                    "CONVLENS_ALLOWED_ROOTS": str(work), "CONVLENS_ARTIFACT_STORE": store}
        if self.pg:
            self.env["CONVLENS_DATABASE_URL"] = self.pg
            subprocess.run([sys.executable, "-m", "convlens.api.cli", "db", "upgrade"], env=self.env, check=True,
                           capture_output=True)
        else:
            self.env.pop("CONVLENS_DATABASE_URL", None)

    def cli(self, *args: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", *args, "--json"], env=self.env,
                              capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"convlens {' '.join(args)}: {proc.stderr[-3000:]}")
        return json.loads(proc.stdout)

    def check(self, job: dict, n: int) -> None:
        """Every file exactly once."""
        from sqlalchemy import func, select

        from convlens.db.models import Prediction
        from convlens.db.session import _engine, session_scope

        url = self.pg or f"sqlite:///{self.home / 'convlens.db'}"
        with session_scope(url) as s:
            rows = s.scalar(select(func.count()).select_from(Prediction).where(Prediction.job_id == job["id"]))
            paths = s.scalar(select(func.count(func.distinct(Prediction.path))).where(
                Prediction.job_id == job["id"]))
        _engine.cache_clear()
        assert job["status"] == "succeeded" and rows == paths == n, (job["status"], rows, paths, n)

    def close(self) -> None:
        import redis

        from services import drop_pg_database

        redis.Redis.from_url(self.broker).flushdb()
        if self.pg:
            drop_pg_database(self.pg)


def span(job: dict) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()


def queued(svc: Services, model: str, folder: Path, warm: Path, gradcam: bool, workers: int) -> tuple[float, float]:
    """(seconds from submit to every prediction stored, by the job's own timestamps; the CLI's wall time,
    which adds its start-up and its once-a-second polling)."""
    from services import Worker

    procs = [Worker(svc.env, f"bench{i}-{uuid.uuid4().hex[:4]}@bench", svc.home) for i in range(workers)]
    try:
        for w in procs:
            w.wait_ready(120)
        flag = ["--gradcam"] if gradcam else []
        # Each worker loads the model and traces its forward pass once (small shards reach every worker).
        svc.cli("submit", "classify", str(warm), "--model", model, *flag, "--shard-size", "100", "--wait")
        start = time.perf_counter()
        job = svc.cli("submit", "classify", str(folder), "--model", model, *flag, "--wait")
        wall = time.perf_counter() - start
        svc.check(job, n_files(folder))
        return span(job), wall
    finally:
        for w in procs:
            w.stop()


def _table(table: list[dict], rates: dict) -> Table:
    """One row per path and case, each beside the in-process baseline of the same run."""
    rows = [[f"{line['n']:,}", "yes" if line["gradcam"] else "no", path, f"{v:,.0f}", f"{line['in-process']:,.0f}",
             f"{v / line['in-process']:.0%}"] for line in table for path, v in line.items()
            if path not in ("n", "gradcam", "in-process")]
    first = table[0]
    queue = next((k for k in first if k.startswith("queue") and k.endswith("(job)")), None)
    headline = (f"bulk classify through the queue at {first[queue] / first['in-process']:.0%} of the bare model "
                f"({first[queue]:,.0f} vs {first['in-process']:,.0f} images/s, {first['n']:,} PNGs, "
                f"{queue.removesuffix(' (job)')})" if queue else "no queued run")
    return Table(name="bulk-classify", title="Bulk classification: each job path against the bare model",
                 headline=headline, columns=["images", "Grad-CAM", "path", "images/s", "bare model images/s", "share"],
                 rows=rows, notes=(
                     f"The bare model: `ml.classify.classify_files` over every file in one warm process, decode "
                     f"included. \"(job)\": from submit to every row stored, by the job's timestamps; \"(command)\": "
                     f"the CLI's wall time. Decode bound: PNG decode and resize {rates['decode_per_core']:,.0f} "
                     f"images/s per core; the model's forward pass on decoded arrays {rates['forward']:,.0f} "
                     f"images/s (all cores). Target: the queue at 85% of the bare model or more."))


def n_files(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--db", nargs="+", default=["sqlite", "pg"], choices=["sqlite", "pg"])
    ap.add_argument("--gradcam", nargs="+", default=["no", "yes"], choices=["no", "yes"])
    ap.add_argument("--store", nargs="+", default=["home", "database"], choices=["home", "database"])
    ap.add_argument("--two-workers-at", type=int, default=100_000, help="image count of the two-worker run")
    ap.add_argument("--model", help="a trained .keras model (default: the seed preset trained briefly)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.model:  # jobs may read only under the allowed root: a copy (with its sidecar) goes there
            shutil.copytree(Path(args.model).parent, work / "model")
            model = str(work / "model" / Path(args.model).name)
        else:
            from convlens.ml.config import TrainConfig
            from convlens.ml.train import train

            model = train(TrainConfig(limit=5000, epochs=2), work / "model")["paths"]["model"]
        warm = work / "warm"
        make_folder(warm, 600)
        rates = decode_rates(model, warm, 600)
        table = []
        for n in args.n:
            folder = work / f"images-{n}"
            make_folder(folder, n)
            for gradcam in (g == "yes" for g in args.gradcam):
                base = in_process(model, folder, gradcam, work / "overlays-inproc")
                shutil.rmtree(work / "overlays-inproc", ignore_errors=True)
                line = {"n": n, "gradcam": gradcam, "in-process": n / base["seconds"]}
                for db in args.db:
                    svc = Services(db, work)
                    try:
                        flag = ["--gradcam"] if gradcam else []
                        start = time.perf_counter()
                        job = svc.cli("run", "classify", str(folder), "--model", model, *flag)
                        line[f"inline {db} (command)"] = n / (time.perf_counter() - start)
                        line[f"inline {db} (job)"] = n / span(job)
                        svc.check(job, n)
                        job_s, wall = queued(svc, model, folder, warm, gradcam, 1)
                        line[f"queue {db} (job)"], line[f"queue {db} (command)"] = n / job_s, n / wall
                        if n == args.two_workers_at and db == args.db[0]:
                            line[f"queue {db}, 2 workers (job)"] = n / queued(svc, model, folder, warm, gradcam,
                                                                              2)[0]
                    finally:
                        svc.close()
                    for store in args.store[1:] if args.store[0] == "home" else args.store:
                        svc = Services(db, work, store)
                        try:
                            job_s, _ = queued(svc, model, folder, warm, gradcam, 1)
                            line[f"queue {db}, {store} store (job)"] = n / job_s
                        finally:
                            svc.close()
                table.append(line)
                print(json.dumps(line), flush=True)
        print(f"\nPNG decode+resize: {rates['decode_per_core']:,.0f} images/s per core; the model's forward pass "
              f"on decoded arrays: {rates['forward']:,.0f} images/s (all cores)")
        print("images/s; in parentheses, the share of the in-process rate (target: queue >= 85%)")
        for line in table:
            base = line["in-process"]
            print(f"{line['n']:>7,} images, Grad-CAM {'yes' if line['gradcam'] else 'no ':3s}: " + "; ".join(
                f"{k} {v:,.0f}" + ("" if k == "in-process" else f" ({v / base:.0%})") for k, v in line.items()
                if k not in ("n", "gradcam")))
        write(_table(table, rates))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
