"""The `fast` preset on the full CIFAR-10 under its wall-clock budget, one child process per run.

The preset trains for whatever its budget allows on this machine (the learning rate and weight averaging
follow the clock), so "accuracy at 2.5 and 5 minutes" is measured as whole runs with those budgets.
Prints per run: test accuracy, train+eval wall time, peak RSS, training images/s, epochs completed; before them, from
a short run traced by the TensorFlow profiler (bench/_profile.py), where its training steps' CPU time goes.
Writes docs/results/fast-preset-CPUKIND.md (bench/_report.py) from the seeds' runs.
Usage: python bench/bench_fast.py [--seeds 0 1 2] [--budget 600] [--short-budgets 150 300]
       [--no-profile | --profile-only]
       [--widths 64,128,256 32,64,128] [--epochs 40]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_child, speed  # noqa: E402
from _profile import describe  # noqa: E402
from _report import Table, write  # noqa: E402

CHILD = r"""
import json, tempfile, time
from convlens.ml.settings import settings
from convlens.ml.data.cifar import load_cifar10
from convlens.ml.config import TrainConfig
from convlens.ml.train import train
from convlens.ml.hardware import forward_flops
from convlens.ml.models import get_preset
{widths_setup}
{profile_setup}
t0 = time.perf_counter()
data = load_cifar10(settings().datasets_dir)
r = train(TrainConfig(preset="fast", seed={seed}, time_budget_s={budget}, epochs={epochs}),
          tempfile.mkdtemp(prefix="bench-fast-"), data=data, callbacks=extra)
model = get_preset("fast").build((32, 32, 3), 10)  # built in the run's policy: its widths
print("RESULT:" + json.dumps({{"accuracy": r["metrics"]["test"]["accuracy"],
    "tta_accuracy": r["metrics"].get("test_tta", {{}}).get("accuracy"), "policy": r["precision_policy"],
    "train_eval_s": r["timings"]["total_s"], "fit_s": r["timings"]["fit_s"],
    "evaluate_s": r["timings"]["evaluate_s"], "report_s": r["timings"]["report_s"],
    "images_per_s": round(r["steps_run"] * r["recipe"]["batch_size"] / r["timings"]["fit_s"], 1),
    "epochs": round(r["steps_run"] * r["recipe"]["batch_size"] / r["n_train"], 2), "tta": r["tta_used"],
    "images": r["steps_run"] * r["recipe"]["batch_size"], "forward_flops": forward_flops(model),
    "profile": extra[0].shares if extra else None,
    "widths": [model.get_layer(f"block{{i}}_conv1").filters for i in (1, 2, 3)]}}))
"""
# Other conv widths than the CPU's choice (ml.models.fast.default_widths), for comparing them side by side.
WIDTHS = ("import functools; from convlens.ml.models import fast; "
          "get_preset('fast').build = functools.partial(fast.build_fast, widths={widths})")


PROFILED = "import sys; sys.path.insert(0, {bench!r}); from _profile import ProfileWindow; extra = [ProfileWindow()]"


def run(seed: int, budget: float, widths: tuple[int, ...] | None = None, epochs: int | None = None) -> dict:
    setup = WIDTHS.format(widths=widths) if widths else ""
    r = run_child(CHILD.format(seed=seed, budget=budget, epochs=epochs, profile_setup="extra = []",
                               widths_setup=setup))
    print(f"seed {seed}, budget {budget:.0f} s, widths {'/'.join(map(str, r['widths']))}: test accuracy "
          f"{r['accuracy']:.4f}, train+eval {r['train_eval_s']} s (fit {r['fit_s']} s, evaluation {r['evaluate_s']} s, "
          f"report {r['report_s']} s; process {r['wall_s']} s), peak RSS {r['peak_rss_mb']} MB, "
          f"{r['images_per_s']} training images/s, "
          f"{r['epochs']} epochs, TTA level {r['tta']}, {r['policy']}", flush=True)
    print("    " + speed(r["images"], r["fit_s"], r["forward_flops"], r["policy"]), flush=True)
    return r


def _table(seeds: list[int], budget: float, runs: list[dict]) -> Table:
    def mean(key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    tta = [r["tta_accuracy"] for r in runs if r["tta_accuracy"] is not None]
    rows = [[f"seed {s}", "/".join(map(str, r["widths"])), f"{r['accuracy']:.4f}",
             "-" if r["tta_accuracy"] is None else f"{r['tta_accuracy']:.4f} (level {r['tta']})",
             f"{r['train_eval_s']:.0f}", f"{r['epochs']:.1f}", f"{r['images_per_s']:,.0f}", r["policy"],
             f"{r['peak_rss_mb']:,}"] for s, r in zip(seeds, runs, strict=True)]
    if len(runs) > 1:
        rows.append([f"mean of {len(runs)}", "", f"{mean('accuracy'):.4f}",
                     f"{sum(tta) / len(tta):.4f}" if len(tta) == len(runs) else "-", f"{mean('train_eval_s'):.0f}",
                     "", "", "", ""])
    return Table(
        name="fast-preset", title=f"The fast preset in {budget:.0f} s of training and evaluation",
        headline=(f"the `fast` preset reaches {mean('accuracy'):.4f} single-pass test accuracy"
                  + (f" ({sum(tta) / len(tta):.4f} with test-time augmentation)" if len(tta) == len(runs) else "")
                  + f" in {mean('train_eval_s'):.0f} s of training and evaluation"
                  + (f", mean of {len(runs)} seeds" if len(runs) > 1 else "")),
        columns=["run", "widths", "accuracy (single pass)", "with test-time augmentation", "train+eval s",
                 "epochs", "training images/s", "precision", "peak RSS MB"],
        rows=rows, notes=f"Budget {budget:.0f} s (the preset's clock; training stops in time for its evaluation). "
                         "Target: 0.907, airbench94's accuracy on this JPEG-decoded copy of CIFAR-10.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=600.0, help="the preset's budget, seconds")
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--no-profile", action="store_true", help="skip the short traced run")
    profile.add_argument("--profile-only", action="store_true", help="only the short traced run")
    parser.add_argument("--short-budgets", type=float, nargs="*", default=[150.0, 300.0],
                        help="shorter budgets, run with the first seed")
    parser.add_argument("--widths", nargs="+", metavar="W1,W2,W3",
                        help="instead of the seeds and budgets: one run of the first seed per set of conv widths, "
                             "side by side (default: the widths this CPU gets)")
    parser.add_argument("--epochs", type=int, help="the most epochs the clock may run (default: the preset's)")
    args = parser.parse_args()
    from convlens.ml.hardware import cpu

    print(f"CPU: {cpu().model} ({', '.join(cpu().flags) or 'no AVX'}), {cpu().cores} cores", flush=True)
    if not args.no_profile:
        traced = run_child(CHILD.format(seed=0, budget=60, epochs=None, widths_setup="", profile_setup=PROFILED.format(
            bench=str(Path(__file__).resolve().parent))))
        print("profile (a 60 s run): " + describe(traced["profile"]), flush=True)
    if args.profile_only:
        return
    if args.widths:
        for widths in args.widths:
            run(args.seeds[0], args.budget, tuple(int(w) for w in widths.split(",")), args.epochs)
        return
    runs = [run(seed, args.budget, epochs=args.epochs) for seed in args.seeds]
    accs = [r["accuracy"] for r in runs]
    print(f"mean test accuracy at {args.budget:.0f} s over seeds {args.seeds}: {sum(accs) / len(accs):.4f} "
          "(target >= 0.907, airbench94's on this copy of CIFAR-10)", flush=True)
    write(_table(args.seeds, args.budget, runs))
    short = {b: run(args.seeds[0], b, epochs=args.epochs)["accuracy"] for b in args.short_budgets}
    reached = sorted(b for b, acc in {**short, args.budget: accs[0]}.items() if acc >= 0.90)
    print("accuracy by budget (seed {}): {}; 90% reached within: {}".format(
        args.seeds[0], ", ".join(f"{b:.0f} s: {a:.4f}" for b, a in {**short, args.budget: accs[0]}.items()),
        f"{reached[0]:.0f} s" if reached else "none of these budgets"))


if __name__ == "__main__":
    main()
