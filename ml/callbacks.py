"""Keras callbacks of a training run: progress reports, per-epoch checkpoints, the time-budget clock, lookahead,
and an outside verdict to stop (a sweep's pruner)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from convlens.ml.optimizer import warmup_schedule
from convlens.ml.predict import predict_probs
from convlens.ml.progress import ProgressEvent, ProgressFn
from convlens.ml.saved import atomic_save_model, atomic_write_text


class ProgressCallback(keras.callbacks.Callback):
    """Forwards (epoch, step, metrics) to a plain function; raising from it stops training."""

    def __init__(self, fn: ProgressFn, epochs: int, steps: int, clock: TrainingClock, every: int = 20,
                 batch_size: int | None = None) -> None:
        super().__init__()
        self.fn, self.epochs, self.steps, self.clock, self.every = fn, epochs, steps, clock, every
        self.batch_size, self.epoch, self.epoch_started, self.first_step = batch_size, 0, time.perf_counter(), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_started, self.first_step = epoch, time.perf_counter(), self.clock.steps
        self.reported = -1

    def on_train_batch_end(self, batch, logs=None):
        if batch // self.every > self.reported:  # `batch`: the last step run (several per call, see TrainingClock)
            self.reported = batch // self.every
            self.fn(ProgressEvent(stage="train", epoch=self.epoch + 1, epochs=self.epochs, step=batch + 1,
                                  steps=self.steps, fraction=round(self.clock.progress(), 4), metrics=_floats(logs)))

    def on_epoch_end(self, epoch, logs=None):
        figures = _floats(logs)
        figures["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self.batch_size:  # the epoch's training images per second, its validation pass included
            steps = self.clock.steps - self.first_step
            figures["images_per_s"] = steps * self.batch_size / max(1e-6, time.perf_counter() - self.epoch_started)
        self.fn(ProgressEvent(stage="epoch", epoch=epoch + 1, epochs=self.epochs, step=self.steps,
                              steps=self.steps, fraction=round(self.clock.progress(), 4), metrics=figures))


class StopWhen(keras.callbacks.Callback):
    """Ends training after an epoch when `should_stop(epoch, figures)` says so; `stopped_at` is that epoch (1-based)."""

    def __init__(self, should_stop: Callable[[int, dict[str, float]], bool]) -> None:
        super().__init__()
        self.should_stop, self.stopped_at = should_stop, None

    def on_epoch_end(self, epoch, logs=None):
        if self.should_stop(epoch + 1, _floats(logs)):
            self.stopped_at = epoch + 1
            self.model.stop_training = True


class CheckpointCallback(keras.callbacks.Callback):
    """Each epoch: the model (with optimizer state) and the history so far, both written atomically."""

    def __init__(self, out_dir: Path, history: dict[str, list[float]], clock: TrainingClock) -> None:
        super().__init__()
        self.model_path = out_dir / "checkpoint.keras"
        self.state_path = out_dir / "checkpoint.json"
        self.history, self.clock = history, clock

    def on_epoch_end(self, epoch, logs=None):
        for key, value in _floats(logs).items():
            self.history.setdefault(key, []).append(value)
        atomic_save_model(self.model, self.model_path)
        atomic_write_text(self.state_path, json.dumps({"epoch": epoch + 1, "history": self.history,
                                                       "spent_s": self.clock.spent_s_now()}))


class TrainingClock(keras.callbacks.Callback):
    """Progress through training in [0, 1]: by steps, or under a time budget by the wall clock if further.

    A budget covers training plus evaluation, so training stops when what is left would only just pay for
    the evaluation: `eval_images[level]` forward passes for each test-time augmentation level, at the rate
    measured on `probe_images` when training begins (with 50% to spare), plus a margin for saving and plots.
    The evaluation may take at most `eval_share` of the budget, so on a slow machine the augmentation level
    drops rather than the training. That rate is only a forecast (a model whose evaluation ran slower than its
    probe overran its budget on it), so the evaluation times its first view and `affordable_level` settles the
    level on that.
    `spent_s` is the time already used (data loading, an earlier run that was resumed). Under a budget, a
    WarmupLinear learning rate follows the clock's progress as well as the steps (ml.optimizer).
    """

    PLANNED_SPARE = 1.5  # on the forecast rate from the probe
    MEASURED_SPARE = 1.2  # on the rate the evaluation itself measured

    def __init__(self, total_steps: int, budget_s: float | None = None, spent_s: float = 0.0,
                 eval_images: tuple[int, ...] = (0,), margin_s: float = 20.0, eval_share: float = 0.2,
                 probe_images: np.ndarray | None = None, done_steps: int = 0) -> None:
        super().__init__()
        self.total = max(1, total_steps)
        self.budget_s, self.spent_s, self.eval_images, self.margin_s = budget_s, spent_s, eval_images, margin_s
        self.eval_share = eval_share
        self.probe_images, self.forward_rate = probe_images, None
        self.steps = self.epoch_base = done_steps  # a resumed run starts past 0
        self.started = time.perf_counter()

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        if self.budget_s is not None and self.probe_images is not None and len(self.probe_images):
            # Traces the predict function and lets oneDNN build its kernels for full batches, untimed.
            predict_probs(self.model, self.probe_images[:512])
            start = time.perf_counter()
            predict_probs(self.model, self.probe_images)
            self.forward_rate = len(self.probe_images) / max(1e-6, time.perf_counter() - start)

    def _eval_seconds(self, level: int, rate: float | None, spare: float, done_images: int = 0) -> float:
        return spare * max(0, self.eval_images[level] - done_images) / rate if rate else 0.0

    def eval_level(self) -> int:
        """The highest test-time augmentation level whose evaluation fits its share of the budget."""
        if self.budget_s is None:
            return len(self.eval_images) - 1
        fits = [lv for lv in range(len(self.eval_images))
                if self._eval_seconds(lv, self.forward_rate, self.PLANNED_SPARE) <= self.eval_share * self.budget_s]
        return max(fits, default=0)

    def affordable_level(self, rate: float, done_images: int) -> int:
        """The highest test-time augmentation level whose remaining forward passes fit what is left of the budget.

        `rate` is measured by the evaluation itself, after `done_images` of its passes; the level may come out
        above or below the one that training planned for.
        """
        if self.budget_s is None:
            return len(self.eval_images) - 1
        left = self.budget_s - self.spent_s_now() - self.margin_s
        fits = [lv for lv in range(len(self.eval_images))
                if self._eval_seconds(lv, max(rate, 1e-6), self.MEASURED_SPARE, done_images) <= left]
        return max(fits, default=0)

    def train_seconds(self) -> float | None:
        """Seconds of training the budget allows, given the forward rate measured when training began."""
        if self.budget_s is None:
            return None
        eval_s = self._eval_seconds(self.eval_level(), self.forward_rate, self.PLANNED_SPARE)
        return max(1.0, self.budget_s - self.spent_s - eval_s - self.margin_s)

    def spent_s_now(self) -> float:
        """Budget used so far: before this run's training, plus its training."""
        return self.spent_s + time.perf_counter() - self.started

    def progress_by_time(self) -> float:
        allowed = self.train_seconds()
        return (time.perf_counter() - self.started) / allowed if allowed else 0.0

    def progress(self) -> float:
        return min(1.0, max(self.steps / self.total, self.progress_by_time()))

    def on_train_batch_begin(self, batch, logs=None):
        schedule = warmup_schedule(self.model.optimizer)
        if self.budget_s is not None and schedule is not None:
            schedule.time_progress.assign(min(1.0, self.progress_by_time()))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_base = self.steps

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the epoch's last step run: with steps_per_execution > 1, Keras reports every N steps.
        self.steps = self.epoch_base + batch + 1
        if self.budget_s is not None and self.progress() >= 1.0:
            self.model.stop_training = True


class Lookahead(keras.callbacks.Callback):
    """Every `every` steps, moves an average of the weights towards the live ones and resets them to it.

    The average covers every float weight, BatchNorm statistics included, so the averaged model evaluates
    consistently (Keras' optimizer EMA averages trainable weights only). Its decay ramps from 0 (plain
    training) to `decay ** every` at the end, cubic in the clock's progress; training ends on the average.
    """

    def __init__(self, clock: TrainingClock, every: int = 5, decay: float = 0.95) -> None:
        super().__init__()
        self.clock, self.every, self.decay = clock, every, decay
        self.average: list = []

    def on_train_begin(self, logs=None):
        self.average = [keras.Variable(w, trainable=False) for w in self.model.weights]
        self.updates = self.clock.steps // self.every

    def _update(self, decay: float) -> None:
        for avg, w in zip(self.average, self.model.weights, strict=True):
            avg.assign(avg + (1.0 - decay) * (w - avg))
            w.assign(avg)

    def on_train_batch_end(self, batch, logs=None):
        # The clock, listed first, has counted the steps run; one update per `every` of them, however many
        # steps each call reports (steps_per_execution).
        if self.clock.steps // self.every > self.updates:
            self.updates = self.clock.steps // self.every
            self._update(self.decay ** self.every * self.clock.progress() ** 3)

    def on_train_end(self, logs=None):
        self._update(1.0)


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}
