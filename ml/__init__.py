"""convlens ml: datasets, models, training, evaluation and analysis for CNN image classifiers.

A pure library: it knows nothing of queues, databases or HTTP.
"""

import logging
import os

# TensorFlow uses oneDNN's CPU kernels by default only where the CPU has AVX-512 VNNI/BF16 or AMX; on AVX2-only
# CPUs its fallback kernels train convolutions slower (docs/benchmarks.md has the figures). Set before
# TensorFlow is first imported (every convlens import of it comes through this package); a value the user set wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's retracing warning: each fold, trial and study part builds a fresh model in one process,
    whose step functions are traced anew by design, not by the mistake the warning describes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_ExpectedRetracing())
