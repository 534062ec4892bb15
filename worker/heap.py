"""Keeps Python's cyclic garbage collector off a worker's long-lived heap."""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Moves every object alive now out of the collector's reach (gc.freeze), once per process.

    Called once a model is loaded: TensorFlow's modules alone are hundreds of thousands of tracked objects, a
    full collection walks them all, and a classify shard allocates enough rows to set one off every shard or
    two. What exists once the model is loaded lives as long as the process; frozen objects are still freed by
    reference counting.
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
