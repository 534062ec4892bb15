"""The report of a training run: test metrics with and without thresholds, calibration before and after
temperature scaling, conformal prediction sets, the error analysis, plots, result.json.

The temperature and thresholds are fitted on the validation split, the conformal sets calibrated on the other
half of it; the test set is never used for any decision.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convlens.ml import plots
from convlens.ml.calibration import apply_temperature, calibration_metrics, fit_temperature, plot_reliability
from convlens.ml.callbacks import TrainingClock
from convlens.ml.conformal import METHODS, Calibration, evaluate_sets, sets, uniforms
from convlens.ml.error_analysis import confused_pairs, highest_loss_gallery
from convlens.ml.evaluate import classification_metrics
from convlens.ml.predict import predict_probs
from convlens.ml.prepare import PreparedData
from convlens.ml.saved import save_trained
from convlens.ml.thresholds import thresholded_predictions, tune_thresholds
from convlens.ml.uncertainty import compare

# Below this many calibration images a conformal coverage is too noisy to read (one s.d. of a 90% coverage is
# about 0.013 at 500 and 0.03 at 100: Vovk 2012, coverage ~ Beta(n + 1 - l, l)).
MIN_CALIBRATION = 500


def kept_temperature(raw_val: np.ndarray, y_val: np.ndarray, raw_cal: np.ndarray | None,
                     y_cal: np.ndarray | None) -> tuple[float, list[str]]:
    """The temperature fitted on the validation images, kept only when it lowers ECE on the held-out calibration
    images (else T = 1, with a warning saying so)."""
    temperature = fit_temperature(raw_val, y_val)
    if raw_cal is None or y_cal is None or not len(y_cal):
        return temperature, []
    unscaled, scaled = (calibration_metrics(apply_temperature(raw_cal, t), y_cal)["ece"] for t in (1.0, temperature))
    if scaled < unscaled:
        return temperature, []
    return 1.0, [f"temperature scaling (T = {temperature:.3f}, fitted on {len(y_val)} validation images) did not "
                 f"lower ECE on the {len(y_cal)} held-out calibration images ({unscaled:.4f} -> {scaled:.4f}), so "
                 "T = 1 is kept"]


def evaluate(model: keras.Model, prep: PreparedData, clock: TrainingClock, alpha: float = 0.1) -> dict[str, Any]:
    """Test (and validation) metrics; the test accuracy at the test-time augmentation level the budget allows.

    What is saved with the model (temperature, thresholds, conformal calibration) is fitted on the plain view,
    the one forward pass that classify, predict and the exported model make, and every figure that describes it
    (calibration, thresholded and conformal test figures, the uncertainty comparison) is measured on that view
    too: fitted on averaged views, a temperature and conformal quantiles would not hold for single passes. So
    metrics["test"] is the single pass, the model's one accuracy; with test-time augmentation, metrics["test_tta"]
    is the averaged views' (accuracy, top-k, per class: no temperature changes an argmax), a second figure.

    The validation half fits the temperature, then the thresholds on temperature-scaled probabilities; the
    calibration half (prep.x_cal) calibrates the conformal sets and judges the temperature: a T that does not
    lower ECE there is dropped (T = 1), and the result says so. `warnings` name the figures that rest on too
    little data.
    """
    # The plain view of the test set times the evaluation; the augmentation level is settled on that rate.
    eval_start = time.perf_counter()
    raw_test = predict_probs(model, prep.x_test)
    tta = clock.affordable_level(len(prep.x_test) / max(1e-6, time.perf_counter() - eval_start), len(prep.x_test))
    viewed_test = predict_probs(model, prep.x_test, tta=tta, plain=raw_test)
    temperature, thresholds, calibration, metrics, warnings = 1.0, None, None, {}, []
    has_cal = prep.x_cal is not None and len(prep.x_cal) > 0
    raw_cal = predict_probs(model, prep.x_cal) if has_cal else None
    val_probs = np.zeros((0, len(prep.class_names)), np.float32)
    if len(prep.x_val):
        raw_val = predict_probs(model, prep.x_val)
        temperature, warned = kept_temperature(raw_val, prep.y_val, raw_cal, prep.y_cal)
        warnings += warned
        val_probs = apply_temperature(raw_val, temperature)
    test_probs = apply_temperature(raw_test, temperature)
    metrics["test"] = classification_metrics(prep.y_test, raw_test.argmax(1), prep.class_names, raw_test)
    if tta:
        metrics["test_tta"] = classification_metrics(prep.y_test, viewed_test.argmax(1), prep.class_names,
                                                     viewed_test)
    if len(prep.x_val):
        metrics["validation"] = classification_metrics(prep.y_val, val_probs.argmax(1), prep.class_names,
                                                       val_probs)
        thresholds = tune_thresholds(prep.y_val, val_probs)
        metrics["test_thresholded"] = classification_metrics(
            prep.y_test, thresholded_predictions(test_probs, thresholds), prep.class_names
        )
    ece = {"before": calibration_metrics(raw_test, prep.y_test), "after": calibration_metrics(test_probs, prep.y_test)}
    if temperature != 1.0 and ece["after"]["ece"] > ece["before"]["ece"]:
        warnings.append(f"temperature scaling lowered ECE on the calibration images but raised it on the "
                        f"{len(prep.y_test)} test images ({ece['before']['ece']:.4f} -> {ece['after']['ece']:.4f}): "
                        f"{len(prep.y_val)} validation images were too few to fit it well")
    conformal: dict[str, Any] = {}
    if raw_cal is not None:
        calibration = Calibration.fit(apply_temperature(raw_cal, temperature), prep.y_cal)
        k, u = len(prep.class_names), uniforms(len(prep.y_test))
        conformal = {method: {
            mode: evaluate_sets(sets(test_probs, calibration.thresholds(k, alpha, method, mode != "marginal"),
                                     method, u), prep.y_test, prep.class_names)
            for mode in ("marginal", "class_conditional")} for method in METHODS}
        n_cal = len(prep.y_cal)
        if n_cal < MIN_CALIBRATION:
            spread = (alpha * (1 - alpha) / (n_cal + 2)) ** 0.5
            warnings.append(f"conformal coverage rests on {n_cal} calibration images (under {MIN_CALIBRATION}), so "
                            f"it is noisy: one s.d. is about {spread:.3f} at the {1 - alpha:.0%} target; train on "
                            "more images or a larger validation fraction")
    return {"metrics": metrics, "thresholds": thresholds, "tta_used": tta, "test_probs": test_probs,
            "raw_test_probs": raw_test, "temperature": temperature, "calibration": calibration,
            "calibration_metrics": ece, "warnings": warnings,
            "conformal": {"alpha": alpha, "n_calibration": len(prep.y_cal) if calibration else 0, **conformal}
            if conformal else None,
            "uncertainty": compare(test_probs, prep.y_test, thresholds, val_probs, prep.y_val, calibration, alpha)}


def write_report(model: keras.Model, prep: PreparedData, evaluation: dict[str, Any], out_dir: Path, preset: str,
                 history: dict[str, list[float]], result: dict[str, Any]) -> dict[str, Any]:
    """Saves the model with its thresholds, the error gallery and plots; returns the full result (the caller
    writes it to result.json once its timings are complete)."""
    metrics, thresholds = evaluation["metrics"], evaluation["thresholds"]
    model_path = save_trained(model, out_dir / "model.keras", prep.class_names, thresholds, preset,
                              evaluation["temperature"], evaluation["calibration"])
    errors = {"confused_pairs": confused_pairs(metrics["test"]["confusion_matrix"], prep.class_names),
              **highest_loss_gallery(model, prep.x_test, prep.y_test, prep.class_names, out_dir / "errors.png",
                                     probs=evaluation["test_probs"])}
    val_losses = history.get("val_loss", [])
    result = {
        **result,
        "class_names": prep.class_names,
        "n_train": len(prep.x_train), "n_val": len(prep.x_val), "n_test": len(prep.x_test),
        "n_cal": len(prep.x_cal) if prep.x_cal is not None else 0,
        "temperature": evaluation["temperature"],
        "calibration": evaluation["calibration_metrics"],
        "conformal": evaluation["conformal"],
        "uncertainty": evaluation["uncertainty"],
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
            "reliability_plot": str(plot_reliability(evaluation["raw_test_probs"], evaluation["test_probs"],
                                                     prep.y_test, evaluation["temperature"],
                                                     out_dir / "reliability.png")),
        },
    }
    return result
