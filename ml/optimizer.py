"""The optimizer a recipe names (Adam or Nesterov SGD, optional decoupled weight decay) and its schedule."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable("convlens")
class WarmupLinear(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak` over `warmup_fraction` of training, then linear decay to zero.

    Progress is the optimizer's step over `total_steps`, computed inside the compiled step so that every step
    gets its own rate however many steps run per call; under a time budget TrainingClock sets `time_progress`
    (elapsed over allowed training time), and the larger of the two counts, so the decay ends with the clock.
    """

    def __init__(self, peak: float, total_steps: int, warmup_fraction: float = 0.0) -> None:
        self.peak, self.total_steps, self.warmup_fraction = float(peak), max(1, int(total_steps)), warmup_fraction
        self.time_progress = keras.Variable(0.0, dtype="float32", trainable=False, name="time_progress")

    def __call__(self, step):
        ops = keras.ops
        p = ops.minimum(1.0, ops.maximum(ops.cast(step, "float32") / self.total_steps, self.time_progress))
        up = p / self.warmup_fraction if self.warmup_fraction > 0 else 1.0
        return self.peak * ops.maximum(0.0, ops.minimum(up, (1.0 - p) / (1.0 - self.warmup_fraction)))

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_fraction": self.warmup_fraction}


def warmup_schedule(optimizer: keras.optimizers.Optimizer) -> WarmupLinear | None:
    """The optimizer's WarmupLinear schedule, if it has one (Keras keeps the schedule only in this attribute;
    its public learning_rate is the current value)."""
    schedule = getattr(optimizer, "_learning_rate", None)
    return schedule if isinstance(schedule, WarmupLinear) else None


def build_optimizer(recipe: dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer, its learning rate on the recipe's schedule (plateau's is set by Keras' callback)."""
    lr: Any = recipe["learning_rate"]
    total_steps = steps_per_epoch * recipe["epochs"]
    if recipe["schedule"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, total_steps)
    elif recipe["schedule"] == "warmup_linear":
        lr = WarmupLinear(lr, total_steps, float(recipe["warmup_fraction"]))
    common: dict[str, Any] = {"learning_rate": lr}
    if recipe["weight_decay"]:
        common["weight_decay"] = recipe["weight_decay"]
    if recipe["optimizer"] == "sgd":
        return keras.optimizers.SGD(momentum=recipe["momentum"], nesterov=True, **common)
    if recipe["optimizer"] == "adam":
        return keras.optimizers.Adam(**common)
    raise ValueError(f"unknown optimizer {recipe['optimizer']!r}; use adam or sgd")
