"""Reference recipe vs our `seed` preset on the full CIFAR-10: wall time, peak RSS, test accuracy.

(a) the original report's recipe exactly: seed model, 10 epochs, batch 32, float32 /255.0 arrays,
    Adam, balanced class weights, early stopping (patience 3) on the test set; with TensorFlow's defaults (it
    imports Keras before convlens, which would turn on oneDNN's kernels where TensorFlow leaves them off).
(b) `convlens`'s default seed preset (ml.train.train), in the precision ml.precision chooses
(bf16 where the CPU has it and a probe measured it faster than float32).
Each also prints its training images/s and achieved GFLOP/s against this CPU's peak (ml.hardware), and, from a
second short run traced by the TensorFlow profiler (bench/_profile.py), where its training steps' CPU time goes.
With --seeds, both run once per seed (the reference's and the preset's), and the table compares their means.
Writes docs/results/seed-vs-reference-CPUKIND.md (bench/_report.py).
Usage: python bench/bench_seed.py [--only a|b] [--no-profile] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_child, speed  # noqa: E402
from _profile import describe  # noqa: E402
from _report import Table, write  # noqa: E402

REFERENCE = r"""
import json, time, numpy as np, keras
from sklearn.utils.class_weight import compute_class_weight
from convlens.ml.settings import settings
from convlens.ml.data.cifar import load_cifar10
from convlens.ml.models.seed import build_seed
keras.utils.set_random_seed({seed})
d = load_cifar10(settings().datasets_dir)
x_train, x_test = d.x_train / 255.0, d.x_test / 255.0  # the reference's float64 copies
y_train, y_test = keras.utils.to_categorical(d.y_train, 10), keras.utils.to_categorical(d.y_test, 10)
w = compute_class_weight("balanced", classes=np.arange(10), y=d.y_train)
model = build_seed()
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
t = time.perf_counter()
{profile_setup}
h = model.fit(x_train, y_train, batch_size=32, epochs={epochs}, validation_data=(x_test, y_test), verbose=0,
          class_weight=dict(enumerate(w)),
          callbacks=[keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True), *extra])
fit_s = time.perf_counter() - t
acc = float(model.evaluate(x_test, y_test, verbose=0)[1])
from convlens.ml.hardware import forward_flops
print("RESULT:" + json.dumps({{"fit_s": round(fit_s, 1), "test_accuracy": round(acc, 4), "policy": "float32",
                              "images": len(h.history["loss"]) * len(x_train), "forward_flops": forward_flops(model),
                              "profile": extra[0].shares if extra else None}}))
"""

PRESET = r"""
import json, tempfile
from convlens.ml.config import TrainConfig
from convlens.ml.train import train
{profile_setup}
r = train(TrainConfig(preset="seed", seed={seed}{epochs}), tempfile.mkdtemp(prefix="bench-seed-"), callbacks=extra)
from convlens.ml.hardware import forward_flops
from convlens.ml.models.seed import build_seed
print("RESULT:" + json.dumps({{"fit_s": r["timings"]["fit_s"], "test_accuracy": r["metrics"]["test"]["accuracy"],
                              "epochs_run": r["epochs_run"], "policy": r["precision_policy"],
                              "images": r["steps_run"] * r["recipe"]["batch_size"],
                              "eval_s": round(r["timings"]["total_s"] - r["timings"]["fit_s"], 1),
                              "forward_flops": forward_flops(build_seed()),
                              "profile": extra[0].shares if extra else None}}))
"""


def _speed(r: dict) -> str:
    """Training speed over fit time (which includes each epoch's validation pass: a lower bound)."""
    return speed(r["images"], r["fit_s"], r["forward_flops"], r["policy"])


PROFILED = "import sys; sys.path.insert(0, {bench!r}); from _profile import ProfileWindow; extra = [ProfileWindow()]"
RUNS = {"a": ("(a) reference", REFERENCE, {"CUDA_VISIBLE_DEVICES": ""}, "10", "1"),
        "b": ("(b) seed preset", PRESET, None, "", ", epochs=1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["a", "b"])
    parser.add_argument("--no-profile", action="store_true", help="skip the short traced runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    bench = str(Path(__file__).resolve().parent)
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for key, (label, code, env, epochs, profiled_epochs) in RUNS.items():
            if args.only not in (None, key):
                continue
            r = run_child(code.format(profile_setup="extra = []", epochs=epochs, seed=seed), env)
            results.setdefault(key, []).append(r)
            print(f"{label}, seed {seed}:", json.dumps(r), flush=True)
            print("    " + _speed(r), flush=True)
            if not args.no_profile and seed == args.seeds[0]:
                traced = run_child(code.format(profile_setup=PROFILED.format(bench=bench), epochs=profiled_epochs,
                                               seed=seed), env)
                print("    " + describe(traced["profile"]), flush=True)
    if len(results) == 2:
        write(_table(args.seeds, results["a"], results["b"]))


def _table(seeds: list[int], a: list[dict], b: list[dict]) -> Table:
    """Per seed and in the mean: wall time, single-pass test accuracy, peak memory, each beside the reference's."""
    def mean(runs: list[dict], key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    speedup, gain = mean(a, "wall_s") / mean(b, "wall_s"), mean(b, "test_accuracy") - mean(a, "test_accuracy")
    rows = [[f"seed {s}", f"{ra['wall_s']:.1f}", f"{rb['wall_s']:.1f}", f"{ra['wall_s'] / rb['wall_s']:.1f}x",
             f"{ra['test_accuracy']:.4f}", f"{rb['test_accuracy']:.4f}",
             f"{rb['test_accuracy'] - ra['test_accuracy']:+.4f}", rb["policy"],
             f"{ra['peak_rss_mb']:,} / {rb['peak_rss_mb']:,}"] for s, ra, rb in zip(seeds, a, b, strict=True)]
    if len(seeds) > 1:
        rows.append([f"mean of {len(seeds)}", f"{mean(a, 'wall_s'):.1f}", f"{mean(b, 'wall_s'):.1f}", f"{speedup:.1f}x",
                     f"{mean(a, 'test_accuracy'):.4f}", f"{mean(b, 'test_accuracy'):.4f}", f"{gain:+.4f}", "", ""])
    return Table(
        name="seed-vs-reference", title="The seed preset against the reference code, side by side",
        headline=(f"the `seed` preset {speedup:.1f}x faster than the reference code (wall time), single-pass test "
                  f"accuracy {mean(b, 'test_accuracy'):.4f} vs {mean(a, 'test_accuracy'):.4f}"
                  + (f" (means of {len(seeds)} seeds)" if len(seeds) > 1 else "")),
        columns=["run", "reference s", "preset s", "speed-up", "reference accuracy", "preset accuracy",
                 "difference", "preset precision", "peak RSS MB (reference / preset)"],
        rows=rows,
        notes=("The reference: the original report's recipe (10 epochs, batch 32, Adam, class weights, early "
               "stopping on the test set) in float32 with TensorFlow's defaults. The preset: `convlens`'s default "
               "seed recipe (ml/models/seed.py), one forward pass per test image. Wall time of each child process, "
               "start-up and data loading included. Targets: at least 5x, accuracy at least the reference's."))


if __name__ == "__main__":
    main()
