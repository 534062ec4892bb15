"""The report of a training run: test metrics with and without thresholds, the error analysis, plots, result.json.

Thresholds are tuned on the validation split only; the test set is never used for any decision.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convlens.ml import plots
from convlens.ml.callbacks import TrainingClock
from convlens.ml.error_analysis import confused_pairs, highest_loss_gallery
from convlens.ml.evaluate import classification_metrics
from convlens.ml.predict import predict_probs
from convlens.ml.prepare import PreparedData
from convlens.ml.saved import save_trained
from convlens.ml.thresholds import thresholded_predictions, tune_thresholds


def evaluate(model: keras.Model, prep: PreparedData, clock: TrainingClock) -> dict[str, Any]:
    """Test (and validation) metrics at the test-time augmentation level the rest of the budget allows."""
    # The plain view of the test set times the evaluation; the augmentation level is settled on that rate.
    eval_start = time.perf_counter()
    plain = predict_probs(model, prep.x_test)
    tta = clock.affordable_level(len(prep.x_test) / max(1e-6, time.perf_counter() - eval_start), len(prep.x_test))
    test_probs = predict_probs(model, prep.x_test, tta=tta, plain=plain)
    metrics = {"test": classification_metrics(prep.y_test, test_probs.argmax(1), prep.class_names, test_probs)}
    thresholds = None
    if len(prep.x_val):
        val_probs = predict_probs(model, prep.x_val, tta=tta)
        metrics["validation"] = classification_metrics(prep.y_val, val_probs.argmax(1), prep.class_names,
                                                       val_probs)
        thresholds = tune_thresholds(prep.y_val, val_probs)
        metrics["test_thresholded"] = classification_metrics(
            prep.y_test, thresholded_predictions(test_probs, thresholds), prep.class_names
        )
    return {"metrics": metrics, "thresholds": thresholds, "tta_used": tta, "test_probs": test_probs}


def write_report(model: keras.Model, prep: PreparedData, evaluation: dict[str, Any], out_dir: Path, preset: str,
                 history: dict[str, list[float]], result: dict[str, Any]) -> dict[str, Any]:
    """Saves the model with its thresholds, the error gallery and plots; returns the full result (the caller
    writes it to result.json once its timings are complete)."""
    metrics, thresholds = evaluation["metrics"], evaluation["thresholds"]
    model_path = save_trained(model, out_dir / "model.keras", prep.class_names, thresholds, preset)
    errors = {"confused_pairs": confused_pairs(metrics["test"]["confusion_matrix"], prep.class_names),
              **highest_loss_gallery(model, prep.x_test, prep.y_test, prep.class_names, out_dir / "errors.png",
                                     probs=evaluation["test_probs"])}
    val_losses = history.get("val_loss", [])
    result = {
        **result,
        "class_names": prep.class_names,
        "n_train": len(prep.x_train), "n_val": len(prep.x_val), "n_test": len(prep.x_test),
        "history": history,
        "epochs_run": len(history.get("loss", [])),  # the last may be partial when a time budget ran out
        "tta_used": evaluation["tta_used"],
        "best_epoch": int(np.argmin(val_losses)) + 1 if val_losses else None,
        "thresholds": thresholds,
        "metrics": metrics,
        "errors": errors,
        "paths": {
            "model": str(model_path),
            "result": str(out_dir / "result.json"),
            "history_plot": str(plots.plot_history(history, out_dir / "history.png")),
            "confusion_plot": str(plots.plot_confusion(metrics["test"]["confusion_matrix"], prep.class_names,
                                                       out_dir / "confusion.png")),
            "error_gallery": errors["gallery"],
        },
    }
    return result
