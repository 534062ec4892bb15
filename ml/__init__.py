"""convlens ml: datasets, models, training, evaluation and analysis for CNN image classifiers.

A pure library: it knows nothing of queues, databases or HTTP.
"""

import os

# TensorFlow uses oneDNN's CPU kernels by default only where the CPU has AVX-512 VNNI/BF16 or AMX; on AVX2-only
# CPUs its fallback kernels train convolutions slower (the README's benchmark section has the figures). Set before
# TensorFlow is first imported (every convlens import of it comes through this package); a value the user set wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
