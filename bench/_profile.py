"""Where training time goes, from the TensorFlow profiler: a few seconds of steps traced, their ops'
self-time grouped.

The profiler's `framework_op_stats` table gives every op's self-time on the host's threads; summed per group and
divided by (wall time x cores) it says what share of the CPU each part used while those steps ran, and what share
sat idle (waiting on Python, Keras' per-step loop or the input pipeline). Grouping is by op name, the only thing
the profiler reports: the model's forward and backward kernels, the optimizer's update, precision casts, and the
input pipeline with its augmentation (tf.data's ops, and the random transforms in the training step).
"""

from __future__ import annotations

import glob
import json
import tempfile
import time

import keras
import tensorflow as tf

GROUPS = ("model kernels", "optimizer", "precision casts", "input pipeline + augmentation")


def group_of(op_type: str, name: str) -> str:
    # tf.data's own ops and the functions it maps; the random transforms run in the step, under "augment".
    if "StatefulPartitionedCall" not in name or "/augment/" in name:
        return "input pipeline + augmentation"
    if op_type == "Cast":
        return "precision casts"
    lowered = name.lower()
    if "/adam/" in lowered or "/sgd/" in lowered or "variableop" in op_type.lower():
        return "optimizer"
    return "model kernels"


class ProfileWindow(keras.callbacks.Callback):
    """Traces `seconds` of training steps in epoch `epoch` (0-based), from the end of its first call (which
    compiles the step), then keeps their op-time breakdown in `shares`."""

    def __init__(self, epoch: int = 0, seconds: float = 4.0) -> None:
        super().__init__()
        self.epoch, self.seconds, self.logdir = epoch, seconds, tempfile.mkdtemp(prefix="profile-")
        self.armed, self.started, self.shares = False, None, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.armed = epoch == self.epoch and not self.shares

    def on_train_batch_end(self, batch, logs=None):
        if self.armed and self.started is None:
            tf.profiler.experimental.start(self.logdir)
            self.started = time.perf_counter()
        elif self.started is not None and time.perf_counter() - self.started >= self.seconds:
            self._stop()

    def on_train_end(self, logs=None):
        if self.started is not None:  # training ended first: the window is what there was
            self._stop()

    def _stop(self) -> None:
        wall_s, self.started, self.armed = time.perf_counter() - self.started, None, False
        tf.profiler.experimental.stop()
        self.shares = shares(self.logdir, wall_s)


def shares(logdir: str, wall_s: float) -> dict[str, float]:
    """Each group's self-time as a share of the CPU time the window had (wall x cores); 'idle' the rest."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    from convlens.ml.hardware import cpu

    traces = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    raw, ok = plugin.xspace_to_tools_data(traces, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler's trace in {logdir} could not be read")
    table = json.loads(raw)[0]
    cols = [c["id"] for c in table["cols"]]
    totals = dict.fromkeys(GROUPS, 0.0)
    for row in table["rows"]:
        r = dict(zip(cols, [cell.get("v") if cell else None for cell in row["c"]], strict=True))
        if r["type"] != "IDLE":
            totals[group_of(r["type"], r["operation"])] += r["total_self_time"] / 1e6
    capacity = wall_s * cpu().cores
    out = {g: t / capacity for g, t in totals.items()}
    out["idle (Python, Keras' step loop, waiting on input)"] = max(0.0, 1 - sum(out.values()))
    return out


def describe(s: dict[str, float]) -> str:
    return "CPU time in traced training steps: " + ", ".join(f"{g} {v:.0%}" for g, v in s.items()) + (
        f"; outside the model's kernels: {1 - s['model kernels']:.0%}")
