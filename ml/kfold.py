"""Stratified k-fold: train and score one fold (so workers can run folds in parallel), then aggregate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convlens.ml.config import TrainConfig
from convlens.ml.data.cifar import ImageDataset
from convlens.ml.data.splits import stratified_folds
from convlens.ml.prepare import load_dataset, training_pool
from convlens.ml.progress import ProgressFn
from convlens.ml.train import train


def fold_dataset(cfg: TrainConfig, k: int, fold: int, data: ImageDataset | None = None) -> ImageDataset:
    """Fold `fold` of k over the training pool: its other folds to train on, its own fold to score on.

    The test set is not used; early stopping uses a validation split carved from the fold's training part.
    """
    data = data or load_dataset(cfg)
    x, y = training_pool(cfg, data)
    train_idx, held_idx = stratified_folds(y, k, cfg.seed)[fold]
    return ImageDataset(x[train_idx], y[train_idx], x[held_idx], y[held_idx], data.class_names)


def run_fold(
    cfg: TrainConfig, k: int, fold: int, out_dir: Path, progress: ProgressFn | None = None,
    data: ImageDataset | None = None,
) -> dict[str, Any]:
    """Trains on k-1 folds with seed cfg.seed + fold; result["metrics"]["test"] scores the held-out fold."""
    fold_data = fold_dataset(cfg, k, fold, data)
    fold_cfg = cfg.model_copy(update={"limit": None, "long_tail_ratio": None, "seed": cfg.seed + fold})
    result = train(fold_cfg, out_dir, progress=progress, data=fold_data, resume=True)
    result["fold"] = fold
    return result


def aggregate_folds(fold_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1: the folds are a sample of the splits one could draw) over
    folds of accuracy, macro F1 and each class's F1.

    Accepts full ml results or job summaries (keys accuracy, macro_f1, per_class_f1).
    """
    per_metric: dict[str, list[float]] = {}
    for r in fold_results:
        for name, value in _fold_metrics(r).items():
            per_metric.setdefault(name, []).append(value)
    return {
        "folds": len(fold_results),
        "metrics": {n: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                        "values": v}
                    for n, v in per_metric.items()},
    }


def _fold_metrics(r: dict[str, Any]) -> dict[str, float]:
    if "metrics" in r:
        test = r["metrics"]["test"]
        out = {"accuracy": test["accuracy"], "macro_f1": test["macro"]["f1"]}
        out |= {f"f1:{c}": v["f1"] for c, v in test["per_class"].items()}
    else:
        out = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
        out |= {f"f1:{c}": v for c, v in r.get("per_class_f1", {}).items()}
    # The conformal coverage of each fold's held-out images (when the fold kept calibration images).
    for method, figures in (r.get("conformal") or {}).items():
        if isinstance(figures, dict) and "marginal" in figures:
            out[f"coverage_{method}"] = figures["marginal"]["coverage"]
            out[f"mean_set_size_{method}"] = figures["marginal"]["mean_set_size"]
    return out
