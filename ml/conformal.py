"""Split conformal prediction sets: the true class is in the set with probability at least 1 - alpha.

Two scores (Angelopoulos & Bates, "A Gentle Introduction to Conformal Prediction"):
- `lac` (least ambiguous set-valued classifier, Sadinle et al. 2019): 1 - p(true class). Smallest sets on
  average; a set may be empty.
- `aps` (adaptive prediction sets, Romano et al. 2020), not randomised: the probability mass of the classes
  ranked at or above the true one. Sets grow where the model is unsure; never empty; slightly conservative.

The threshold is the ceil((n + 1)(1 - alpha))-th smallest calibration score, which guarantees the coverage when
calibration and new images are exchangeable. `class_conditional` takes that threshold per true class (Mondrian
conformal prediction), so each class is covered at 1 - alpha, not only on average. The calibration images must
not have been used to fit anything (see ml.report: the validation split is halved for this).
MAPIE, used as the oracle in the tests, computes the same LAC sets.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

Method = Literal["lac", "aps"]
METHODS: tuple[Method, ...] = ("lac", "aps")


def _mass_above(probs: np.ndarray) -> np.ndarray:
    """For each image and class: the probability mass of the classes ranked strictly above it."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    before = np.cumsum(ranked, axis=1) - ranked
    mass = np.empty_like(before)
    np.put_along_axis(mass, order, before, axis=1)
    return mass


def scores(probs: np.ndarray, y: np.ndarray, method: Method) -> np.ndarray:
    """The nonconformity score of each calibration image's true class (larger: stranger)."""
    p_true = probs[np.arange(len(y)), y]
    if method == "lac":
        return 1.0 - p_true
    return _mass_above(probs)[np.arange(len(y)), y] + p_true


def quantile(cal_scores: np.ndarray, alpha: float) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest score; +inf (every class) when there are too few scores."""
    n = len(cal_scores)
    k = int(np.ceil((n + 1) * (1 - alpha)))
    return float(np.sort(cal_scores)[k - 1]) if 0 < k <= n else float("inf")


def sets(probs: np.ndarray, thresholds: np.ndarray, method: Method) -> np.ndarray:
    """Boolean (n, classes) membership; thresholds: one per class (one value repeated when marginal)."""
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    if method == "lac":
        return 1.0 - probs.astype(np.float64) <= t + 1e-9
    # A class is in when the mass strictly above it has not yet reached the threshold (the class that crosses
    # it is included), which is exactly "its score <= threshold" up to that last, included class.
    return _mass_above(probs.astype(np.float64)) < t - 1e-9


class Calibration(BaseModel):
    """What a trained model keeps to make sets at any alpha later: its calibration images' scores and labels."""

    labels: list[int]
    scores: dict[str, list[float]]  # method -> the score of each calibration image

    @classmethod
    def fit(cls, probs: np.ndarray, y: np.ndarray) -> Calibration:
        return cls(labels=[int(v) for v in y],
                   scores={m: [round(float(s), 7) for s in scores(probs, y, m)] for m in METHODS})

    def thresholds(self, n_classes: int, alpha: float, method: Method, class_conditional: bool = False) -> np.ndarray:
        s = np.asarray(self.scores[method])
        if not class_conditional:
            return np.full(n_classes, quantile(s, alpha))
        labels = np.asarray(self.labels)
        return np.array([quantile(s[labels == c], alpha) for c in range(n_classes)])


def evaluate_sets(membership: np.ndarray, y: np.ndarray, class_names: list[str]) -> dict:
    """Coverage overall and per class, set sizes (mean, distribution) and the share of sets not of size one."""
    covered = membership[np.arange(len(y)), y]
    size = membership.sum(1)
    return {
        "coverage": float(covered.mean()),
        "per_class_coverage": {name: float(covered[y == c].mean()) if (y == c).any() else None
                               for c, name in enumerate(class_names)},
        "mean_set_size": float(size.mean()),
        "set_sizes": {str(k): int(v) for k, v in enumerate(np.bincount(size, minlength=len(class_names) + 1))},
        "uncertain_rate": float((size != 1).mean()),
    }
