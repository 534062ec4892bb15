"""What a user reads when convlens loads TensorFlow: not the two lines its C++ layer prints on load whatever the
log level (ml/tensorflow_env.py), unless they ask for everything with TF_CPP_MIN_LOG_LEVEL=0."""

from __future__ import annotations

import os
import subprocess
import sys

from convlens.ml.tensorflow_env import LOAD_NOISE

# Keras first looks TensorFlow up without importing it, then imports it: both must go through the hook.
LOAD = "import convlens.ml, keras, tensorflow as tf; print(int(tf.constant(1) + 1))"


def _load(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, env={**base, **env},
                          timeout=120)


def test_loading_tensorflow_prints_nothing_by_default_and_everything_when_asked():
    quiet = _load()
    assert quiet.returncode == 0 and quiet.stdout.strip() == "2", quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if any(n in line for n in LOAD_NOISE)], quiet.stderr
    everything = _load(TF_CPP_MIN_LOG_LEVEL="0")
    assert everything.returncode == 0 and "oneDNN custom operations are on" in everything.stderr
