"""The `fast` preset on the full CIFAR-10, one child process per seed: test accuracy, train+eval wall time,
peak RSS, images/s, time to 90% test accuracy, and test accuracy reached at 2.5 and 5 minutes.

The per-epoch test accuracies are measured for this report only (the recipe never looks at the test set);
their evaluation time is excluded from the clock. Usage: python bench/bench_fast.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_child  # noqa: E402

CHILD = r"""
import json, tempfile, time, keras, numpy as np
from ml import settings
from ml.data.cifar import load_cifar10
from ml.train import TrainConfig, train, predict_probs
SEED = {seed}
t0 = time.perf_counter()
data = load_cifar10(settings.data_dir())

class Clock(keras.callbacks.Callback):
    # Test accuracy (raw weights, no TTA) after each epoch; the evaluation's own time is not counted.
    def __init__(self):
        super().__init__(); self.paused = 0.0; self.points = []
    def on_epoch_end(self, epoch, logs=None):
        t = time.perf_counter()
        acc = float(np.mean(predict_probs(self.model, data.x_test).argmax(1) == data.y_test))
        self.points.append((round(t - t0 - self.paused, 1), round(acc, 4)))
        self.paused += time.perf_counter() - t

clock = Clock()
r = train(TrainConfig(preset="fast", seed=SEED), tempfile.mkdtemp(prefix="bench-fast-"), data=data,
          callbacks=[clock])
wall = time.perf_counter() - t0 - clock.paused
n = r["n_train"] * r["epochs_run"]
print("RESULT:" + json.dumps({{"seed": SEED, "test_accuracy": r["metrics"]["test"]["accuracy"],
    "train_eval_wall_s": round(wall, 1), "fit_s": r["timings"]["fit_s"],
    "train_images_per_s": round(n / (r["timings"]["fit_s"] - clock.paused), 1), "per_epoch": clock.points}}))
"""


def at(points: list, seconds: float) -> float | None:
    reached = [acc for t, acc in points if t <= seconds]
    return reached[-1] if reached else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    accs = []
    for seed in args.seeds:
        r = run_child(CHILD.format(seed=seed))
        hit = next((t for t, acc in r["per_epoch"] if acc >= 0.90), None)
        accs.append(r["test_accuracy"])
        print(f"seed {seed}: test accuracy {r['test_accuracy']:.4f} (flip TTA), train+eval {r['train_eval_wall_s']} s "
              f"(process {r['wall_s']} s), peak RSS {r['peak_rss_mb']} MB, {r['train_images_per_s']} train images/s; "
              f"time to 90%: {hit if hit is not None else 'not reached'} s; "
              f"accuracy at 150 s: {at(r['per_epoch'], 150)}, at 300 s: {at(r['per_epoch'], 300)}", flush=True)
        print("  per epoch (s, test accuracy):", json.dumps(r["per_epoch"]), flush=True)
    print(f"mean test accuracy over seeds {args.seeds}: {sum(accs) / len(accs):.4f} (target >= 0.94, floor 0.93)")


if __name__ == "__main__":
    main()
