"""Error analysis: the most-confused class pairs and a gallery of the highest-loss test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from convlens.ml.explain import compute_cam, save_gallery
from convlens.ml.predict import predict_probs


def confused_pairs(confusion: list[list[int]], class_names: list[str], top: int = 10) -> list[dict[str, Any]]:
    """Off-diagonal cells, largest first: (true, predicted, count, rate among that true class)."""
    cm = np.asarray(confusion)
    totals = cm.sum(1)
    pairs = [{"true": class_names[i], "predicted": class_names[j], "count": int(cm[i, j]),
              "rate": float(cm[i, j] / max(1, totals[i]))}
             for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
    return sorted(pairs, key=lambda p: -p["count"])[:top]


def highest_loss_gallery(
    model: keras.Model, x: np.ndarray, y: np.ndarray, class_names: list[str], path: Path, n: int = 24,
    probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """The n test images with the highest cross-entropy, with true/predicted labels and Grad-CAM overlays.

    Ranked and labelled by one forward pass (`probs`: the plain view), the pass a Grad-CAM explains and classify,
    predict and the export give; the confused pairs count the test metrics' averaged views instead.
    """
    if probs is None:
        probs = predict_probs(model, x)
    loss = -np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))
    worst = np.argsort(-loss)[:n]
    images = x[worst]
    cams, pred = compute_cam(model, images.astype(np.float32) / 255.0)
    titles = [f"true {class_names[y[i]]}\npredicted {class_names[p]}\nloss {loss[i]:.1f}"
              for i, p in zip(worst, pred, strict=True)]
    save_gallery(images, cams, titles, path)
    return {"gallery": str(path), "images": [
        {"index": int(i), "true": class_names[y[i]], "predicted": class_names[int(p)], "loss": float(loss[i])}
        for i, p in zip(worst, pred, strict=True)]}
