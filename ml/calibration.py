"""Temperature scaling (Guo et al. 2017) and the calibration metrics it is judged by.

The temperature T divides the log-probabilities (the logits, up to a per-image constant, also after test-time
augmentation averaged the probabilities): T > 1 softens an over-confident model. It is fitted by minimising the
negative log-likelihood on validation data, never on the test set, and it never changes the argmax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

BINS = 15  # equal-width confidence bins of the expected calibration error, as in Guo et al.


def _logits(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), in the input's dtype."""
    if temperature == 1.0:
        return probs
    return softmax(_logits(probs) / temperature, axis=1).astype(probs.dtype)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y].astype(np.float64), 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the NLL of softmax(log p / T) on (probs, y)."""
    logits, rows = _logits(probs), np.arange(len(y))

    def loss(log_t: float) -> float:
        return float(-np.mean(log_softmax(logits / np.exp(log_t), axis=1)[rows, y]))

    found = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                            options={"xatol": 1e-4})
    return float(np.exp(found.x))


def bin_sums(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Per equal-width confidence bin (top-label): [images, sum of confidence, images right]. Sums add up over
    batches and shards, so a whole folder's ECE needs no second pass (ml/folder_eval.py)."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (lo, hi] bins, as in Guo et al.
    return np.stack([np.bincount(which, minlength=bins), np.bincount(which, conf, bins),
                     np.bincount(which, correct, bins)], 1).astype(np.float64)


def ece_of(sums: np.ndarray) -> float:
    """The expected calibration error of `bin_sums`: the images-weighted gap between accuracy and confidence."""
    sums = np.asarray(sums, np.float64)
    return float(np.abs(sums[:, 2] - sums[:, 1]).sum() / max(1.0, sums[:, 0].sum()))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict[str, list[float]]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (top-label)."""
    sums = bin_sums(probs, y, bins)
    safe = np.maximum(sums[:, 0], 1)
    return {"confidence": (sums[:, 1] / safe).tolist(), "accuracy": (sums[:, 2] / safe).tolist(),
            "count": sums[:, 0].astype(int).tolist()}


def calibration_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Expected and maximum calibration error (15 bins), negative log-likelihood, Brier score."""
    r = reliability(probs, y)
    count, gap = np.asarray(r["count"]), np.abs(np.asarray(r["accuracy"]) - np.asarray(r["confidence"]))
    onehot = np.eye(probs.shape[1])[y]
    return {"ece": ece_of(bin_sums(probs, y)), "mce": float(gap[count > 0].max(initial=0.0)),
            "nll": nll(probs, y), "brier": float(np.mean(((probs - onehot) ** 2).sum(1)))}


def plot_reliability(before: np.ndarray, after: np.ndarray, y: np.ndarray, temperature: float, path: Path) -> Path:
    """The reliability diagram of the test set before and after temperature scaling."""
    from convlens.ml.pyplot import plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    edges = np.linspace(0, 1, BINS + 1)
    for ax, probs, title in ((axes[0], before, "before"), (axes[1], after, f"after (T = {temperature:.2f})")):
        r, m = reliability(probs, y), calibration_metrics(probs, y)
        acc = np.where(np.asarray(r["count"]) > 0, r["accuracy"], 0)
        ax.bar(edges[:-1], acc, width=1 / BINS, align="edge", edgecolor="black", color="#4c72b0", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.set(title=f"{title}: ECE {m['ece']:.3f}", xlabel="confidence", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
