"""Training: builds (or resumes) the preset's model, fits it under the recipe's callbacks, then reports.

The pieces live beside it: options and recipes in config, data in prepare, the optimizer in optimizer, the
callbacks (checkpoints, the time-budget clock, lookahead) in callbacks, the evaluation and outputs in report.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convlens.ml import precision
from convlens.ml.callbacks import CheckpointCallback, Lookahead, ProgressCallback, TrainingClock
from convlens.ml.config import TrainConfig
from convlens.ml.data.cifar import ImageDataset
from convlens.ml.data.pipeline import AugmentConfig, fuse_augmentation, make_dataset, make_training_dataset
from convlens.ml.models import get_preset
from convlens.ml.optimizer import build_optimizer
from convlens.ml.predict import TTA_VIEWS
from convlens.ml.prepare import PreparedData, class_weights, prepare_data
from convlens.ml.progress import ProgressEvent, ProgressFn
from convlens.ml.report import evaluate, write_report
from convlens.ml.saved import atomic_write_text


def steps_per_call(steps: int, most: int) -> int:
    """The largest divisor of an epoch's steps up to `most`: Keras runs whole calls of N steps, so an epoch that
    N does not divide would train extra steps on the repeating dataset."""
    return next(n for n in range(min(most, steps), 0, -1) if steps % n == 0)


def _model(cfg: TrainConfig, recipe: dict[str, Any], prep: PreparedData, steps: int, out_dir: Path,
           resume: bool) -> tuple[keras.Model, int, dict[str, list[float]], float]:
    """A fresh compiled model, or the checkpoint's with (epochs done, history, seconds spent) when resuming."""
    ckpt, state_path = out_dir / "checkpoint.keras", out_dir / "checkpoint.json"
    if resume and ckpt.is_file() and state_path.is_file():
        state = json.loads(state_path.read_text())
        return (keras.models.load_model(ckpt), int(state["epoch"]), state["history"],
                float(state.get("spent_s", 0.0)))
    preset = get_preset(cfg.preset)
    model = preset.build((cfg.image_size, cfg.image_size, 3), len(prep.class_names))
    if preset.init_from_data is not None:
        preset.init_from_data(model, prep.x_train)
    model.compile(optimizer=build_optimizer(recipe, steps),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe["label_smoothing"]),
                  metrics=["accuracy"], steps_per_execution=int(recipe["steps_per_execution"]))
    return model, 0, {}, 0.0


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
    n_classes, batch, epochs = len(prep.class_names), int(recipe["batch_size"]), int(recipe["epochs"])
    steps = math.ceil(len(prep.x_train) / batch)
    recipe["steps_per_execution"] = steps_per_call(steps, int(recipe["steps_per_execution"]))
    val_ds = make_dataset(prep.x_val, prep.y_val, n_classes, 512) if len(prep.x_val) else None
    model, initial_epoch, history, spent_s = _model(cfg, recipe, prep, steps, out_dir, resume)
    fuse_augmentation(model, AugmentConfig(**recipe["augment"]), cfg.seed)

    # Forward passes of the evaluation at each test-time augmentation level: one view of every split, and 2 or 6
    # of the test set (ml.report.evaluate). The error gallery reuses the test probabilities; its 24 Grad-CAMs fall
    # within the clock's margin.
    n_eval = len(prep.x_test) + len(prep.x_val) + (len(prep.x_cal) if prep.x_cal is not None else 0)
    eval_images = tuple(n_eval + (views - 1) * len(prep.x_test) for views in TTA_VIEWS[:int(recipe["tta"]) + 1])
    clock = TrainingClock(
        steps * epochs, recipe["time_budget_s"], spent_s=spent_s + time.perf_counter() - started,
        eval_images=eval_images, probe_images=prep.x_train[:2048],
        done_steps=steps * initial_epoch)
    # Event files per run (epoch scalars only: no graph, histograms or profile), so that
    # `tensorboard --logdir CONVLENS_HOME/runs` shows every run's curves side by side.
    board = keras.callbacks.TensorBoard(out_dir / "tensorboard", histogram_freq=0, write_graph=False,
                                        update_freq="epoch", profile_batch=0)
    callbacks = [clock, CheckpointCallback(out_dir, history, clock), board, *(callbacks or [])]
    monitor = "val_loss" if val_ds is not None else "loss"
    if recipe["patience"] and val_ds is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=int(recipe["patience"]),
                                                       restore_best_weights=True))
    if recipe["schedule"] == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor, factor=0.5, patience=1, min_lr=1e-5))
    if recipe["lookahead"]:
        callbacks.append(Lookahead(clock))
    if progress is not None:
        callbacks.append(ProgressCallback(progress, epochs, steps, clock, batch_size=batch))

    weights = class_weights(prep.y_train, n_classes, recipe["class_weight"])
    fit_start = time.perf_counter()
    if initial_epoch < epochs:
        train_ds = make_training_dataset(prep.x_train, prep.y_train, n_classes, batch, epochs,
                                         AugmentConfig(**recipe["augment"]), cfg.seed, first_epoch=initial_epoch)
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, shuffle=False, class_weight=weights, callbacks=callbacks, verbose=0)
    fit_s = time.perf_counter() - fit_start

    if progress is not None:
        progress(ProgressEvent(stage="evaluate"))
    eval_start = time.perf_counter()
    evaluation = evaluate(model, prep, clock, cfg.alpha)
    report_start = time.perf_counter()
    epochs_trained = clock.steps / steps
    warnings = list(evaluation["warnings"])
    if recipe["time_budget_s"] is not None and epochs_trained < 1:
        warnings.append(f"the {recipe['time_budget_s']:g} s time budget left {fit_s:.0f} s of training on this machine "
                        f"({epochs_trained:.2f} epochs), so the model is barely trained: raise the time budget")
    result = write_report(model, prep, evaluation, out_dir, cfg.preset, history, {
        "preset": cfg.preset, "config": cfg.model_dump(), "recipe": recipe, "precision_policy": policy,
        "class_weights": {prep.class_names[c]: w for c, w in weights.items()} if weights else None,
        "steps_run": clock.steps, "epochs_trained": round(epochs_trained, 2), "warnings": warnings,
        "timings": {"fit_s": round(fit_s, 2), "evaluate_s": round(report_start - eval_start, 2)},
    })
    done = time.perf_counter()
    result["timings"] |= {"report_s": round(done - report_start, 2), "total_s": round(done - started, 2)}
    atomic_write_text(out_dir / "result.json", json.dumps(result, indent=2))
    for leftover in ("checkpoint.keras", "checkpoint.json"):
        (out_dir / leftover).unlink(missing_ok=True)
    return result
