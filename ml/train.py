"""Training: data preparation, the recipe (optimizer, schedule, early stopping), checkpoints and run outputs."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from ml import plots, precision, settings
from ml.data.cifar import ImageDataset, load_cifar10
from ml.data.folders import load_image_folder
from ml.data.pipeline import AugmentConfig, make_dataset, make_training_dataset
from ml.data.splits import long_tailed_indices, stratified_split, stratified_subset
from ml.evaluate import classification_metrics
from ml.models import get_preset
from ml.saved import atomic_save_model, atomic_write_text, save_trained
from ml.thresholds import thresholded_predictions, tune_thresholds

ProgressFn = Callable[[dict[str, Any]], None]

# Recipe keys a preset may set and a run may override; None in TrainConfig means "the preset's value".
RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "optimizer": "adam",  # adam | sgd (Nesterov)
    "momentum": 0.9,
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "lookahead": False,  # weight averaging of all float weights (BN statistics too), see Lookahead
    "schedule": "plateau",  # plateau | cosine | warmup_linear | none
    "warmup_fraction": 0.0,  # of training, for warmup_linear
    "time_budget_s": None,  # wall-clock seconds for training plus evaluation; see TrainingClock
    "patience": 3,  # early stopping on validation loss; 0 turns it off
    "val_fraction": 0.1,  # stratified validation split of the training data
    "class_weight": "balanced",  # balanced | none
    "augment": {"flip": True, "alternate_flip": False, "rotation": 0.0, "zoom": 0.0, "translation": 0.1},
    "tta": 0,  # test-time augmentation: 0 none, 1 flip, 2 flip and 1-pixel shifts
}


@dataclass
class TrainConfig:
    preset: str = "seed"
    dataset: str = "cifar10"  # "cifar10" or a folder root/<class>/...
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    lookahead: bool | None = None
    schedule: str | None = None
    warmup_fraction: float | None = None
    time_budget_s: float | None = None
    patience: int | None = None
    augment: dict | None = None
    tta: int | None = None
    val_fraction: float | None = None
    limit: int | None = None
    class_weight: str | None = None
    long_tail_ratio: float | None = None
    mixed_precision: bool = True
    seed: int = 0
    image_size: int = 32
    data_dir: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**params)

    def recipe(self) -> dict[str, Any]:
        """The effective recipe: defaults, then the preset's, then this run's overrides."""
        merged = {**RECIPE_DEFAULTS, **get_preset(self.preset).recipe}
        for key in RECIPE_DEFAULTS:
            value = getattr(self, key)
            if value is not None:
                # A partial augment dict changes only the transforms it names.
                merged[key] = {**merged["augment"], **value} if key == "augment" else value
        return merged


@dataclass
class PreparedData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


def load_dataset(cfg: TrainConfig) -> ImageDataset:
    if cfg.dataset == "cifar10":
        return load_cifar10(Path(cfg.data_dir) if cfg.data_dir else settings.data_dir())
    data, _errors = load_image_folder(Path(cfg.dataset), (cfg.image_size, cfg.image_size), seed=cfg.seed)
    return data


def training_pool(cfg: TrainConfig, data: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """The training images after the long-tail and --limit options (the test set is never touched)."""
    x, y = data.x_train, data.y_train
    if cfg.long_tail_ratio:
        idx = long_tailed_indices(y, cfg.long_tail_ratio, cfg.seed)
        x, y = x[idx], y[idx]
    if cfg.limit:
        idx = stratified_subset(y, cfg.limit, cfg.seed)
        x, y = x[idx], y[idx]
    return x, y


def prepare_data(
    cfg: TrainConfig,
    data: ImageDataset | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> PreparedData:
    """Train/validation/test arrays; `split` (indices into the training pool) overrides the validation split."""
    data = data or load_dataset(cfg)
    x, y = training_pool(cfg, data)
    fraction = cfg.recipe()["val_fraction"]
    train_idx, val_idx = split if split is not None else stratified_split(y, fraction, cfg.seed)
    return PreparedData(
        x[train_idx], y[train_idx], x[val_idx], y[val_idx], data.x_test, data.y_test, data.class_names
    )


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


class ProgressCallback(keras.callbacks.Callback):
    """Forwards (epoch, step, metrics) to a plain function; raising from it stops training."""

    def __init__(self, fn: ProgressFn, epochs: int, steps: int, clock: TrainingClock, every: int = 20) -> None:
        super().__init__()
        self.fn, self.epochs, self.steps, self.clock, self.every = fn, epochs, steps, clock, every
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.every == 0:
            self.fn({"stage": "train", "epoch": self.epoch + 1, "epochs": self.epochs, "step": batch + 1,
                     "steps": self.steps, "fraction": round(self.clock.progress(), 4), "metrics": _floats(logs)})

    def on_epoch_end(self, epoch, logs=None):
        self.fn({"stage": "epoch", "epoch": epoch + 1, "epochs": self.epochs, "step": self.steps,
                 "steps": self.steps, "fraction": round(self.clock.progress(), 4), "metrics": _floats(logs)})


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
    drops rather than the training. That rate is only a forecast (a GELU variant once overran a 600 s budget
    by 15 s on it), so the evaluation times its first view and `affordable_level` settles the level on that.
    `spent_s` is the time already used (data loading, an earlier run that was resumed). With `peak_lr`, the
    clock also sets the learning rate: linear warm-up over `warmup_fraction` of the progress, then linear
    decay to zero.
    """

    PLANNED_SPARE = 1.5  # on the forecast rate from the probe
    MEASURED_SPARE = 1.2  # on the rate the evaluation itself measured

    def __init__(self, total_steps: int, budget_s: float | None = None, spent_s: float = 0.0,
                 eval_images: tuple[int, ...] = (0,), peak_lr: float | None = None, warmup_fraction: float = 0.0,
                 margin_s: float = 20.0, eval_share: float = 0.2, probe_images: np.ndarray | None = None,
                 done_steps: int = 0) -> None:
        super().__init__()
        self.total = max(1, total_steps)
        self.budget_s, self.spent_s, self.eval_images, self.margin_s = budget_s, spent_s, eval_images, margin_s
        self.peak_lr, self.warmup, self.eval_share = peak_lr, warmup_fraction, eval_share
        self.probe_images, self.forward_rate = probe_images, None
        self.steps = done_steps  # a resumed run starts past 0
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

    def progress(self) -> float:
        by_steps = self.steps / self.total
        allowed = self.train_seconds()
        by_time = (time.perf_counter() - self.started) / allowed if allowed else 0.0
        return min(1.0, max(by_steps, by_time))

    def on_train_batch_begin(self, batch, logs=None):
        if self.peak_lr is not None:
            p = self.progress()
            up = p / self.warmup if self.warmup > 0 else 1.0
            self.model.optimizer.learning_rate = self.peak_lr * max(0.0, min(up, (1 - p) / (1 - self.warmup)))

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
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

    def _update(self, decay: float) -> None:
        for avg, w in zip(self.average, self.model.weights, strict=True):
            avg.assign(avg + (1.0 - decay) * (w - avg))
            w.assign(avg)

    def on_train_batch_end(self, batch, logs=None):
        if self.clock.steps % self.every == 0:  # the clock, listed first, has counted this step
            self._update(self.decay ** self.every * self.clock.progress() ** 3)

    def on_train_end(self, logs=None):
        self._update(1.0)


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}


TTA_VIEWS = (1, 2, 6)  # forward passes per image at each test-time augmentation level of predict_probs


def predict_probs(model: keras.Model, x: np.ndarray, batch_size: int = 512, tta: int = 0,
                  plain: np.ndarray | None = None) -> np.ndarray:
    """Softmax probabilities for uint8 images.

    tta 1 averages them with the mirrored images'; tta 2 also averages (at half weight in all) the four
    views shifted one pixel diagonally either way, mirrored or not, with reflected borders. `plain`: the
    probabilities of the unaugmented view, when already computed (tta 0's result).
    """
    ds = make_dataset(x, None, 0, batch_size)

    def mirrored(view: tf.data.Dataset, probs: np.ndarray | None = None) -> np.ndarray:
        if probs is None:
            probs = model.predict(view, verbose=0).astype(np.float32)
        if tta >= 1:
            probs = (probs + model.predict(view.map(lambda b: b[:, :, ::-1, :]), verbose=0).astype(np.float32)) / 2
        return probs

    probs = mirrored(ds, plain)
    h, w = x.shape[1:3]
    if tta >= 2:
        padded = ds.map(lambda b: tf.pad(b, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"))
        shifted = [mirrored(padded.map(lambda b, o=o: b[:, o:o + h, o:o + w, :])) for o in (0, 2)]
        probs = (probs + (shifted[0] + shifted[1]) / 2) / 2
    return probs


def class_weights(y: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"unknown class_weight {mode!r}; use balanced or none")
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights, strict=True)} | {
        c: 1.0 for c in range(num_classes) if c not in present
    }


def train(
    cfg: TrainConfig,
    out_dir: Path,
    progress: ProgressFn | None = None,
    resume: bool = True,
    data: ImageDataset | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict[str, Any]:
    """Trains cfg.preset, evaluates it on the test set and writes the model, a result JSON and plots.

    `callbacks` are extra Keras callbacks (benchmarks use them to time accuracy during training).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = cfg.recipe()
    keras.utils.set_random_seed(cfg.seed)
    policy = precision.set_policy(cfg.mixed_precision)
    precision.configure_gpus()
    prep = prepare_data(cfg, data, split)
    n_classes = len(prep.class_names)
    augment = AugmentConfig(**recipe["augment"])
    batch = int(recipe["batch_size"])
    steps = math.ceil(len(prep.x_train) / batch)
    val_ds = make_dataset(prep.x_val, prep.y_val, n_classes, 512) if len(prep.x_val) else None

    history: dict[str, list[float]] = {}
    initial_epoch, spent_s = 0, 0.0
    ckpt = out_dir / "checkpoint.keras"
    preset = get_preset(cfg.preset)
    if resume and ckpt.is_file() and (out_dir / "checkpoint.json").is_file():
        state = json.loads((out_dir / "checkpoint.json").read_text())
        model = keras.models.load_model(ckpt)
        initial_epoch, history, spent_s = int(state["epoch"]), state["history"], float(state.get("spent_s", 0.0))
    else:
        model = preset.build((cfg.image_size, cfg.image_size, 3), n_classes)
        if preset.init_from_data is not None:
            preset.init_from_data(model, prep.x_train)
        model.compile(
            optimizer=build_optimizer(recipe, steps),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe["label_smoothing"]),
            metrics=["accuracy"],
        )

    # Forward passes of the evaluation at each test-time augmentation level (1, 2 or 6 views). The error gallery
    # reuses the test probabilities; its 24 Grad-CAMs fall within the clock's margin.
    eval_images = tuple(views * (len(prep.x_test) + len(prep.x_val)) for views in TTA_VIEWS[:int(recipe["tta"]) + 1])
    clock = TrainingClock(
        steps * int(recipe["epochs"]), recipe["time_budget_s"],
        spent_s=spent_s + time.perf_counter() - started, eval_images=eval_images,
        peak_lr=float(recipe["learning_rate"]) if recipe["schedule"] == "warmup_linear" else None,
        warmup_fraction=float(recipe["warmup_fraction"]), probe_images=prep.x_train[:2048],
        done_steps=steps * initial_epoch)
    callbacks = [clock, CheckpointCallback(out_dir, history, clock), *(callbacks or [])]
    monitor = "val_loss" if val_ds is not None else "loss"
    if recipe["patience"] and val_ds is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=int(recipe["patience"]),
                                                       restore_best_weights=True))
    if recipe["schedule"] == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor, factor=0.5, patience=1, min_lr=1e-5))
    if recipe["lookahead"]:
        callbacks.append(Lookahead(clock))
    if progress is not None:
        callbacks.append(ProgressCallback(progress, int(recipe["epochs"]), steps, clock))

    weights = class_weights(prep.y_train, n_classes, recipe["class_weight"])
    fit_start = time.perf_counter()
    if initial_epoch < recipe["epochs"]:
        train_ds = make_training_dataset(prep.x_train, prep.y_train, n_classes, batch, int(recipe["epochs"]),
                                         augment, cfg.seed, first_epoch=initial_epoch)
        model.fit(train_ds, validation_data=val_ds, epochs=int(recipe["epochs"]), initial_epoch=initial_epoch,
                  steps_per_epoch=steps, shuffle=False, class_weight=weights, callbacks=callbacks, verbose=0)
    fit_s = time.perf_counter() - fit_start

    if progress is not None:
        progress({"stage": "evaluate"})
    # The plain view of the test set times the evaluation; the augmentation level is settled on that rate.
    eval_start = time.perf_counter()
    plain = predict_probs(model, prep.x_test)
    tta = clock.affordable_level(len(prep.x_test) / max(1e-6, time.perf_counter() - eval_start), len(prep.x_test))
    test_probs = predict_probs(model, prep.x_test, tta=tta, plain=plain)
    test_pred = test_probs.argmax(1)
    metrics = {"test": classification_metrics(prep.y_test, test_pred, prep.class_names, test_probs)}
    thresholds = None
    if len(prep.x_val):
        val_probs = predict_probs(model, prep.x_val, tta=tta)
        metrics["validation"] = classification_metrics(prep.y_val, val_probs.argmax(1), prep.class_names,
                                                       val_probs)
        thresholds = tune_thresholds(prep.y_val, val_probs)
        metrics["test_thresholded"] = classification_metrics(
            prep.y_test, thresholded_predictions(test_probs, thresholds), prep.class_names
        )

    model_path = save_trained(model, out_dir / "model.keras", prep.class_names, thresholds, cfg.preset)
    from ml.error_analysis import confused_pairs, highest_loss_gallery

    errors = {"confused_pairs": confused_pairs(metrics["test"]["confusion_matrix"], prep.class_names),
              **highest_loss_gallery(model, prep.x_test, prep.y_test, prep.class_names, out_dir / "errors.png",
                                     probs=test_probs)}
    val_losses = history.get("val_loss", [])
    epochs_trained = clock.steps / steps
    warnings = []
    if recipe["time_budget_s"] is not None and epochs_trained < 1:
        warnings.append(f"the {recipe['time_budget_s']:g} s time budget left {fit_s:.0f} s of training on this machine "
                        f"({epochs_trained:.2f} epochs), so the model is barely trained: raise the time budget")
    result: dict[str, Any] = {
        "preset": cfg.preset,
        "config": asdict(cfg),
        "recipe": recipe,
        "precision_policy": policy,
        "class_names": prep.class_names,
        "class_weights": {prep.class_names[c]: w for c, w in weights.items()} if weights else None,
        "n_train": len(prep.x_train), "n_val": len(prep.x_val), "n_test": len(prep.x_test),
        "history": history,
        "epochs_run": len(history.get("loss", [])),  # the last may be partial when a time budget ran out
        "steps_run": clock.steps,
        "epochs_trained": round(epochs_trained, 2),
        "warnings": warnings,
        "tta_used": tta,
        "best_epoch": int(np.argmin(val_losses)) + 1 if val_losses else None,
        "thresholds": thresholds,
        "metrics": metrics,
        "errors": errors,
        "timings": {"fit_s": round(fit_s, 2), "total_s": round(time.perf_counter() - started, 2)},
        "paths": {
            "model": str(model_path),
            "result": str(out_dir / "result.json"),
            "history_plot": str(plots.plot_history(history, out_dir / "history.png")),
            "confusion_plot": str(plots.plot_confusion(metrics["test"]["confusion_matrix"], prep.class_names,
                                                       out_dir / "confusion.png")),
            "error_gallery": errors["gallery"],
        },
    }
    atomic_write_text(out_dir / "result.json", json.dumps(result, indent=2))
    for leftover in ("checkpoint.keras", "checkpoint.json"):
        (out_dir / leftover).unlink(missing_ok=True)
    return result
