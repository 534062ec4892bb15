"""The benchmarks' profile (bench/_profile.py): a real TensorFlow profiler trace of training steps, read back."""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _profile import GROUPS, ProfileWindow, describe  # noqa: E402

from convlens.ml.models.seed import build_seed  # noqa: E402


def test_a_traced_fit_splits_its_cpu_time_into_the_groups():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (4096, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 4096)
    flip = keras.layers.RandomFlip("horizontal", seed=0)
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
          .map(lambda a, b: (flip(tf.cast(a, tf.float32) / 255.0, training=True), b)).repeat())
    model = build_seed()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=4)
    window = ProfileWindow(epoch=0, seconds=1.0)
    model.fit(ds, epochs=1, steps_per_epoch=64, verbose=0, callbacks=[window])

    shares = window.shares
    busy = sum(shares[g] for g in GROUPS)
    # Self-times over wall x cores: no more than the cores had (a little over: the window's edges).
    assert 0.3 < busy < 1.1 and all(v >= 0 for v in shares.values())
    assert sum(shares.values()) == pytest.approx(max(1.0, busy))
    assert shares["model kernels"] > 0.2  # convolutions dominate any seed-CNN step
    assert shares["optimizer"] > 0 and shares["input pipeline + augmentation"] > 0
    assert "outside the model's kernels" in describe(shares)
