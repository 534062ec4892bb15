"""Chooses the Keras mixed-precision policy: float16 on GPUs; on CPUs bfloat16 only where it is measured faster.

A CPU flag says bf16 instructions exist, not that they are fast: a 2-core Intel Xeon with AVX-512-BF16 whose
AMX tiles the hypervisor hides trained the seed CNN at half its float32 rate in bf16, where an AMD EPYC with the
same flag trains 3x faster in bf16 (docs/benchmarks.md). So on a CPU with native bf16 a short probe (a second:
two 3x3 convolutions' forward and backward passes in each precision, through the same oneDNN kernels Keras
uses) decides, once per machine; its result is kept in the user's cache folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache

import keras
import numpy as np
import tensorflow as tf

from convlens.ml.hardware import (
    BF16_GAIN,
    cpu,
    decode_threads,
    machine_key,
    measured_gains,
    policy_for,
    probe_cache,
)

PROBE_SHAPE = (64, 16, 16, 64)  # batch, height, width, channels: the size of the presets' middle layers
NO_BF16 = "it has no native bf16 (emulated bf16 trains 2-10x slower than float32)"


@dataclass(frozen=True)
class PrecisionChoice:
    policy: str  # the Keras policy: "mixed_bfloat16" or "float32" (GPUs: "mixed_float16", see choose_policy)
    reason: str  # why, in words for the one line `convlens run`/`worker` print


def choose_policy(mixed: bool = True) -> str:
    if not mixed:
        return "float32"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return cpu_choice().policy


def set_policy(mixed: bool = True) -> str:
    """Sets and returns the global policy; models built afterwards compute in it, variables stay float32."""
    policy = choose_policy(mixed)
    keras.mixed_precision.set_global_policy(policy)
    return policy


@lru_cache(maxsize=1)
def cpu_choice() -> PrecisionChoice:
    """bf16 where the CPU computes it natively and a probe measured it BF16_GAIN times faster than float32."""
    if not cpu().bf16:
        return PrecisionChoice("float32", NO_BF16)
    gain = bf16_gain()
    rate, policy = f"its bf16 trained a probe {gain:.2f}x as fast as float32", policy_for(gain)
    if policy == "mixed_bfloat16":
        return PrecisionChoice(policy, f"{rate} (AVX-512-BF16/AMX; measured once, cached)")
    return PrecisionChoice(policy, f"{rate} (bf16 needs {BF16_GAIN}x to pay; measured once, cached)")


def bf16_gain() -> float:
    """float32 time / bf16 time of the probe on this machine, measured once per CPU, TensorFlow and kernel choice."""
    key, path = machine_key(), probe_cache()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One process measures while the others wait: two probes at once would slow each other down.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = measured_gains()
            if key not in known:
                known[key] = round(_probe("float32") / _probe("bfloat16"), 3)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(known, indent=1))
                tmp.replace(path)
            return float(known[key])
    except OSError:  # no writable cache folder: measure for this process only
        return _probe("float32") / _probe("bfloat16")


def _probe(dtype: str, steps: int = 6) -> float:
    """Seconds per training step of two 3x3 convolutions computing in `dtype` (variables float32, as Keras' mixed
    policies keep them): the best of three timed runs after a warm-up. Fixed inputs and no Keras layers, so that
    no random state a seeded training run relies on is drawn."""
    rng = np.random.default_rng(0)
    b, h, w, ch = PROBE_SHAPE
    x = tf.constant(rng.standard_normal((b, h, w, ch), dtype=np.float32))
    kernels = [tf.Variable(rng.standard_normal((3, 3, ch, ch), dtype=np.float32) * 0.05) for _ in range(2)]

    @tf.function
    def step() -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            y = tf.cast(x, dtype)
            for k in kernels:
                y = tf.nn.relu(tf.nn.conv2d(y, tf.cast(k, dtype), 1, "SAME"))
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        return tape.gradient(loss, kernels)

    step()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def training_choice() -> str:
    """One line: the precision, kernels, threads, batch size and fast-preset widths training uses on this CPU, and
    why."""
    from convlens.ml.models.fast import default_widths  # the preset's own rule

    c, choice = cpu(), cpu_choice()
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"
    return (f"training on {c.model} ({c.cores} cores): {choice.policy} because {choice.reason}; "
            f"{'oneDNN kernels' if onednn else 'TensorFlow own kernels (TF_ENABLE_ONEDNN_OPTS=0)'}; "
            f"{c.cores} compute threads, one per core this process may use; images decoded by {decode_threads()} "
            "threads and augmented inside the compiled training step; batch size the preset's (the same on every CPU: "
            "larger batches reach less accuracy per epoch, no faster per image in float32); the fast preset's "
            f"conv widths {'/'.join(map(str, default_widths(choice.policy)))} (the widest whose epochs fit its budget "
            f"in {choice.policy}); on a GPU: mixed_float16")


def configure_gpus() -> None:
    """Grow GPU memory on demand so that several processes can share a card if asked to."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised
