"""The optimizer a recipe names (Adam or Nesterov SGD, optional decoupled weight decay, cosine decay)."""

from __future__ import annotations

from typing import Any

import keras


def build_optimizer(recipe: dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer; a warmup_linear learning rate is set step by step by TrainingClock."""
    lr: Any = recipe["learning_rate"]
    if recipe["schedule"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, steps_per_epoch * recipe["epochs"])
    common: dict[str, Any] = {"learning_rate": lr}
    if recipe["weight_decay"]:
        common["weight_decay"] = recipe["weight_decay"]
    if recipe["optimizer"] == "sgd":
        return keras.optimizers.SGD(momentum=recipe["momentum"], nesterov=True, **common)
    if recipe["optimizer"] == "adam":
        return keras.optimizers.Adam(**common)
    raise ValueError(f"unknown optimizer {recipe['optimizer']!r}; use adam or sgd")
