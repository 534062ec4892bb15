"""Classification metrics computed with scikit-learn, returned as JSON-serialisable dicts."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], probs: np.ndarray | None = None
) -> dict:
    """Accuracy, top-k (when probabilities are given), per-class P/R/F1/support, macro and weighted, confusion."""
    labels = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out: dict = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    if probs is not None:
        for k in (3, 5):
            if k < len(class_names):
                out[f"top{k}_accuracy"] = float(top_k_accuracy_score(y_true, probs, k=k, labels=labels))
    return out


def flat_metrics(metrics: dict, class_names: list[str]) -> list[tuple[str, float, str | None]]:
    """(name, value, class) rows of a metrics dict, for tables and the results database."""
    rows: list[tuple[str, float, str | None]] = [("accuracy", metrics["accuracy"], None)]
    rows += [(k, v, None) for k, v in metrics.items() if k.startswith("top") and k.endswith("_accuracy")]
    for avg in ("macro", "weighted"):
        rows += [(f"{avg}_{m}", metrics[avg][m], None) for m in ("precision", "recall", "f1")]
    for name in class_names:
        rows += [(m, float(metrics["per_class"][name][m]), name) for m in ("precision", "recall", "f1")]
    return rows
