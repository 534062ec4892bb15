"""convlens ml: datasets, models, training, evaluation and analysis for CNN image classifiers.

A pure library: it knows nothing of queues, databases or HTTP.
"""
