"""Three ways to say "uncertain" about one image, measured side by side on the test set of a training run.

- `thresholds`: no class reaches its per-class F1-tuned threshold (ml.thresholds);
- `max_probability`: the temperature-scaled top probability is below a cutoff, the smallest one whose decided
  validation images were at least 1 - alpha accurate (selective classification: no guarantee);
- `conformal_lac`, `conformal_aps`: the conformal set does not hold exactly one class (guaranteed coverage).

Each row: the uncertain rate; the accuracy on the images it decided; and the coverage, the share of images
whose true class is in what it answers (the decided class, every class for an uncertain one, or the set).
"""

from __future__ import annotations

import numpy as np

from convlens.ml.conformal import METHODS, Calibration, sets, uniforms
from convlens.ml.thresholds import decisions


def _row(decided: np.ndarray, correct: np.ndarray, covered: np.ndarray) -> dict[str, float]:
    return {"uncertain_rate": float(1 - decided.mean()),
            "decided_accuracy": float(correct[decided].mean()) if decided.any() else 0.0,
            "coverage": float(covered.mean())}


def max_probability_cutoff(val_probs: np.ndarray, y_val: np.ndarray, alpha: float) -> float:
    """The smallest cutoff on the top probability at which the decided validation images are >= 1 - alpha
    accurate (1.0 when no cutoff reaches it)."""
    conf, correct = val_probs.max(1), val_probs.argmax(1) == y_val
    order = np.argsort(-conf)
    accuracy = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(accuracy >= 1 - alpha)[0]
    return float(conf[order][ok.max()]) if len(ok) else 1.0


def compare(test_probs: np.ndarray, y: np.ndarray, thresholds: list[float] | None, val_probs: np.ndarray,
            y_val: np.ndarray, calibration: Calibration | None, alpha: float) -> dict[str, dict[str, float]]:
    """The rows of the comparison (probabilities already temperature-scaled)."""
    pred = test_probs.argmax(1)
    rows: dict[str, dict[str, float]] = {}
    if thresholds is not None:
        chosen, passed = decisions(test_probs, thresholds)
        rows["thresholds"] = _row(passed, chosen == y, ~passed | (chosen == y))
    if len(y_val):
        cutoff = max_probability_cutoff(val_probs, y_val, alpha)
        decided = test_probs.max(1) >= cutoff
        rows["max_probability"] = {**_row(decided, pred == y, ~decided | (pred == y)), "cutoff": cutoff}
    if calibration is not None:
        for method in METHODS:
            member = sets(test_probs, calibration.thresholds(test_probs.shape[1], alpha, method), method,
                          uniforms(len(y)))
            single = member.sum(1) == 1
            rows[f"conformal_{method}"] = _row(single, member[np.arange(len(y)), y],
                                                member[np.arange(len(y)), y])
    return rows
