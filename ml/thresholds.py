"""Per-class one-vs-rest decision thresholds that maximise F1, tuned on validation data only."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve


def tune_thresholds(y_val: np.ndarray, probs_val: np.ndarray) -> list[float]:
    """For each class c, the threshold on p(c) that maximises the F1 of 'is c' on the validation split."""
    thresholds = []
    for c in range(probs_val.shape[1]):
        positives = y_val == c
        if not positives.any():
            thresholds.append(0.5)
            continue
        precision, recall, cuts = precision_recall_curve(positives, probs_val[:, c])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        thresholds.append(float(cuts[int(np.argmax(f1[:-1]))]))
    return thresholds


def thresholded_predictions(probs: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """The class whose probability most exceeds its own threshold (ratio p_c / t_c)."""
    return np.argmax(probs / np.maximum(np.asarray(thresholds, dtype=probs.dtype), 1e-6), axis=1)


def decisions(probs: np.ndarray, thresholds: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(class index, passed) per row: passed is False when no class reaches its threshold."""
    pred = thresholded_predictions(probs, thresholds)
    t = np.asarray(thresholds)[pred]
    return pred, probs[np.arange(len(probs)), pred] >= t
