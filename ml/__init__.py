"""convlens ml: datasets, models, training, evaluation and analysis for CNN image classifiers.

A pure library: it knows nothing of queues, databases or HTTP.
"""

# Before anything imports TensorFlow: every convlens import of it comes through this package.
from convlens.ml import tensorflow_env  # noqa: F401
