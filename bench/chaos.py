"""Chaos: many small jobs while workers are killed (kill -9 of the whole process group) and the embedded Redis
is killed and restarted at random. Prints how many jobs ended succeeded, failed (with reasons) or lost
(not in a final state by the deadline: must be zero), and whether every succeeded job stored each file once.

    python bench/chaos.py [--jobs 200] [--workers 2] [--fault-every 6] [--deadline 1200] [--seed 0]

Uses the embedded default (SQLite and the embedded Redis) under a temporary CONVLENS_HOME, real CIFAR-10 test
images (CONVLENS_DATA_DIR) and an untrained seed model (the predictions do not matter here, only their rows).
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--jobs", type=int, default=200)
ap.add_argument("--workers", type=int, default=2)
ap.add_argument("--images", type=int, default=20)
ap.add_argument("--deadline", type=float, default=1200)
ap.add_argument("--fault-every", type=float, default=6, help="mean seconds between faults")
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
rng = random.Random(args.seed)

home = Path(tempfile.mkdtemp(prefix="convlens-chaos-"))
os.environ.update({"CONVLENS_HOME": str(home), "CONVLENS_HEARTBEAT_S": "1", "CONVLENS_STALE_AFTER_S": "8",
                   "CONVLENS_MAX_ATTEMPTS": "5", "TF_CPP_MIN_LOG_LEVEL": "2"})
for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS"):
    os.environ.pop(key, None)

from PIL import Image  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from convlens.db.models import Job, Prediction  # noqa: E402
from convlens.db.session import ensure_current, session_scope  # noqa: E402
from convlens.ml.data.cifar import load_cifar10  # noqa: E402
from convlens.ml.models import get_preset  # noqa: E402
from convlens.ml.saved import save_trained  # noqa: E402
from convlens.ml.settings import settings  # noqa: E402
from convlens.worker.broker import ensure_embedded_redis  # noqa: E402
from convlens.worker.tasks import submit  # noqa: E402

data = load_cifar10(settings().datasets_dir)
folder = home / "images"
for i in range(args.images):
    (folder / data.class_names[data.y_test[i]]).mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.x_test[i]).save(folder / data.class_names[data.y_test[i]] / f"{i:05d}.png")
model = save_trained(get_preset("seed").build((32, 32, 3), 10), home / "model" / "model.keras", data.class_names,
                     None, "seed")
ensure_current()
ensure_embedded_redis()


def start_worker(n: int) -> subprocess.Popen:
    log = (home / f"worker{n}.log").open("a")  # a restarted worker appends: every recovery line is kept
    return subprocess.Popen([sys.executable, "-m", "convlens.api.cli", "worker", "--hostname", f"chaos{n}@%h",
                             "--loglevel", "WARNING"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


workers = {n: start_worker(n) for n in range(args.workers)}
started = time.monotonic()
ids = [submit("classify", {"folder": str(folder), "model": str(model), "shard_size": args.images // 2}).job_id
       for _ in range(args.jobs)]
print(f"{args.jobs} classify jobs submitted ({args.images} images, 2 shards each) in "
      f"{time.monotonic() - started:.0f} s; {args.workers} workers", flush=True)


def statuses() -> Counter:
    with session_scope() as s:
        return Counter(dict(s.execute(select(Job.status, func.count()).where(Job.id.in_(ids))
                                      .group_by(Job.status)).all()))


def redis_pid() -> int | None:
    pidfile = home / "redis.pid"
    return int(pidfile.read_text()) if pidfile.exists() else None


events: Counter = Counter()
next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * args.fault_every
while time.monotonic() - started < args.deadline:
    counts = statuses()
    if counts["queued"] + counts["running"] == 0:
        break
    if time.monotonic() >= next_fault:
        if rng.random() < 0.6:
            n = rng.choice(list(workers))
            os.killpg(workers[n].pid, signal.SIGKILL)  # the whole worker: main process and pool child
            workers[n].wait()
            workers[n] = start_worker(n)
            events["worker killed"] += 1
        else:
            pid = redis_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)  # no goodbye: the append-only file is all that is left
                except ProcessLookupError:
                    pass
            time.sleep(rng.uniform(0.5, 3))
            ensure_embedded_redis()
            events["redis killed and restarted"] += 1
        next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * args.fault_every
    time.sleep(1)
elapsed = time.monotonic() - started

for w in workers.values():
    os.killpg(w.pid, signal.SIGTERM)
with session_scope() as s:
    jobs = list(s.scalars(select(Job).where(Job.id.in_(ids))))
    rows = dict(s.execute(select(Prediction.job_id, func.count()).where(Prediction.job_id.in_(ids))
                          .group_by(Prediction.job_id)).all())
final = Counter(j.status for j in jobs)
lost = [j.id for j in jobs if j.status in ("queued", "running")]
reasons = Counter((j.error or "")[:100] for j in jobs if j.status == "failed")
wrong_rows = [j.id for j in jobs if j.status == "succeeded" and rows.get(j.id) != args.images]
print(f"faults: {dict(events)}")
print(f"after {elapsed:.0f} s: succeeded {final['succeeded']}, failed {final['failed']}, cancelled "
      f"{final['cancelled']}, lost {len(lost)}")
for reason, n in reasons.most_common():
    print(f"  failed x{n}: {reason}")
print(f"succeeded jobs whose rows are not exactly one per file: {len(wrong_rows)}")
recovered: Counter = Counter()
for log in home.glob("worker*.log"):
    for line in log.read_text(errors="replace").splitlines():
        if "recovery: {" in line:
            recovered.update(ast.literal_eval(line[line.index("{"):]))
print(f"recovery actions in the worker logs: {dict(recovered)}; home {home}")
sys.exit(1 if lost or wrong_rows else 0)
