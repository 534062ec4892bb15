"""Split conformal prediction sets: the true class is in the set with probability at least 1 - alpha.

Two scores (Angelopoulos & Bates, "A Gentle Introduction to Conformal Prediction"):
- `lac` (least ambiguous set-valued classifier, Sadinle et al. 2019): 1 - p(true class). Smallest sets on
  average; a set may be empty.
- `aps` (adaptive prediction sets, Romano et al. 2020), randomised as in the paper: the probability mass of
  the classes ranked above the true one plus u times its own, u uniform in [0, 1) per image. Sets grow where
  the model is unsure. Without u the sets would over-cover by several points; with it coverage is exact, and
  a set may (rarely) be empty. u is drawn from a fixed seed on the evaluation sets and from a hash of each
  file's path in bulk classification, so the same file always gets the same set.

The threshold is the ceil((n + 1)(1 - alpha))-th smallest calibration score, which guarantees the coverage when
calibration and new images are exchangeable. `class_conditional` takes that threshold per true class (Mondrian
conformal prediction), so each class is covered at 1 - alpha, not only on average. The calibration images must
not have been used to fit anything (see ml.report: the validation split is halved for this).
MAPIE, used as the oracle in the tests, computes the same LAC sets.
"""

from __future__ import annotations

import hashlib
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


def uniforms(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def uniforms_of(keys: list[str]) -> np.ndarray:
    """A uniform number in [0, 1) per key (a file's path), the same every time."""
    return np.array([int.from_bytes(hashlib.sha256(k.encode("utf-8", "surrogatepass")).digest()[:8]) / 2**64
                     for k in keys])


def scores(probs: np.ndarray, y: np.ndarray, method: Method, u: np.ndarray | None = None) -> np.ndarray:
    """The nonconformity score of each image's true class (larger: stranger); u: APS's uniforms."""
    rows = np.arange(len(y))
    p_true = probs[rows, y].astype(np.float64)
    if method == "lac":
        return 1.0 - p_true
    return _mass_above(probs.astype(np.float64))[rows, y] + _u(u, len(y)) * p_true


def _u(u: np.ndarray | None, n: int) -> np.ndarray:
    if u is None:
        raise ValueError("aps needs one uniform number per image")
    return np.asarray(u, dtype=np.float64)[:n]


def quantile(cal_scores: np.ndarray, alpha: float) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest score; +inf (every class) when there are too few scores."""
    n = len(cal_scores)
    k = int(np.ceil((n + 1) * (1 - alpha)))
    return float(np.sort(cal_scores)[k - 1]) if 0 < k <= n else float("inf")


def sets(probs: np.ndarray, thresholds: np.ndarray, method: Method, u: np.ndarray | None = None) -> np.ndarray:
    """Boolean (n, classes) membership: every class whose score is within its threshold (one threshold per
    class, the same value repeated when marginal); u: APS's uniforms, one per image."""
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    p = probs.astype(np.float64)
    if method == "lac":
        return 1.0 - p <= t + 1e-9
    return _mass_above(p) + _u(u, len(p))[:, None] * p <= t + 1e-9


class Calibration(BaseModel):
    """What a trained model keeps to make sets at any alpha later: its calibration images' scores and labels."""

    labels: list[int]
    scores: dict[str, list[float]]  # method -> the score of each calibration image

    @classmethod
    def fit(cls, probs: np.ndarray, y: np.ndarray) -> Calibration:
        u = uniforms(len(y), seed=12345)
        return cls(labels=[int(v) for v in y],
                   scores={m: [round(float(s), 7) for s in scores(probs, y, m, u)] for m in METHODS})

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
