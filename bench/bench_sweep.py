"""Sweeps side by side: random search without pruning (the baseline) against TPE with median pruning, on the
`seed` preset over a small CIFAR-10 subset, each with one and with two real workers (embedded default: SQLite
and the embedded Redis, in a temporary CONVLENS_HOME).

The baseline spends `--trials` x `--epochs` trial-epochs. TPE with pruning gets the same budget: it is given
more trials (`--trials * --extra`), its pruned trials stop early, and the figure compared is the trial-epochs
each really spent next to the best validation accuracy each reached. Wall time runs from submit to the sweep's
end by the job's own timestamps.

    python bench/bench_sweep.py [--trials 8] [--epochs 4] [--limit 5000] [--workers 1 2] [--extra 1.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

SPACE = ["learning_rate=log:1e-4:3e-2", "batch_size=choice:64,128,256"]


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], env=env, capture_output=True,
                          text=True, check=True)


def run_sweep(n_workers: int, sampler: str, pruner: str, trials: int, epochs: int, limit: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    env = {k: v for k, v in os.environ.items() if k not in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL")}
    env["CONVLENS_HOME"] = str(home)
    workers = [subprocess.Popen([sys.executable, "-m", "convlens.api.cli", "worker", "--concurrency", "1",
                                 "--hostname", f"b{i}@bench"], env=env, stdout=(home / f"w{i}.log").open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True) for i in range(n_workers)]
    try:
        for i in range(n_workers):
            while "ready." not in (home / f"w{i}.log").read_text():
                time.sleep(0.5)
        args = ["submit", "sweep", "--trials", str(trials), "--parallel", "2", "--sampler", sampler, "--pruner",
                pruner, "--epochs", str(epochs), "--limit", str(limit), "--preset", "seed", "--patience", "0"]
        for s in SPACE:
            args += ["--space", s]
        job = json.loads(_cli(env, *args, "--wait", "--json").stdout)
        assert job["status"] == "succeeded", job.get("error")
        r = job["result"]
        wall = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()
        return {"best": r["best"]["value"], "trial_epochs": sum(t["epochs"] for t in r["trials"]),
                "trials": len(r["trials"]), "pruned": sum(t["state"] == "pruned" for t in r["trials"]),
                "wall_s": round(wall, 1)}
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGTERM)
            w.wait(60)
        _cli(env, "services", "stop")
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--limit", type=int, default=5000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--extra", type=float, default=1.5, help="TPE's trials, as a multiple of the baseline's")
    a = ap.parse_args()
    searches = [("random, no pruning (baseline)", "random", "none", a.trials),
                ("TPE + median pruning", "tpe", "median", round(a.trials * a.extra))]
    print(f"budget {a.trials * a.epochs} trial-epochs; seed preset, {a.limit} CIFAR-10 training images, "
          f"{a.epochs} epochs per trial, --parallel 2, space {' '.join(SPACE)}")
    print(f"{'search':32} {'workers':>7} {'trials':>6} {'pruned':>6} {'trial-epochs':>12} {'best val_acc':>12} "
          f"{'wall s':>7}")
    for label, sampler, pruner, trials in searches:
        for n in a.workers:
            r = run_sweep(n, sampler, pruner, trials, a.epochs, a.limit)
            print(f"{label:32} {n:>7} {r['trials']:>6} {r['pruned']:>6} {r['trial_epochs']:>12} {r['best']:>12.4f} "
                  f"{r['wall_s']:>7}", flush=True)


if __name__ == "__main__":
    main()
