"""Chooses the Keras mixed-precision policy: float16 on GPUs, bfloat16 on CPUs with native bf16, else float32."""

from __future__ import annotations

import keras
import tensorflow as tf

from convlens.ml.hardware import cpu


def choose_policy(mixed: bool = True) -> str:
    if not mixed:
        return "float32"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return cpu().policy


def set_policy(mixed: bool = True) -> str:
    """Sets and returns the global policy; models built afterwards compute in it, variables stay float32."""
    policy = choose_policy(mixed)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def configure_gpus() -> None:
    """Grow GPU memory on demand so that several processes can share a card if asked to."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised
