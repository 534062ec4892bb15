"""Layer-wise linear probes: how linearly separable the classes are in each conv layer's pooled features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from convlens.ml import plots
from convlens.ml.data.cifar import ImageDataset
from convlens.ml.data.images import resize_all
from convlens.ml.data.pipeline import make_dataset
from convlens.ml.data.splits import stratified_subset
from convlens.ml.explain import all_layers, conv_layers, layer_outputs
from convlens.ml.progress import ProgressEvent, ProgressFn


def pooled_features(model: keras.Model, layers: list[str], x: np.ndarray, batch: int = 500) -> list[np.ndarray]:
    """Global-average-pooled activations of each layer, (N, channels) per layer, in one pass over x (resized to
    the model's input: CIFAR-10 for a model imported at another size). The layers may sit inside nested models
    (an import's wrapper, a user's backbone): their outputs are caught in the model's own forward pass."""
    x = resize_all(x, model.input_shape[1:3])
    pooled: list[list[np.ndarray]] = [[] for _ in layers]
    for images in make_dataset(x, None, 0, batch):
        for i, out in enumerate(layer_outputs(model, layers, images)):
            pooled[i].append(np.asarray(tf.reduce_mean(tf.cast(out, tf.float32), axis=(1, 2))))
    return [np.concatenate(p) for p in pooled]


def probe_accuracy(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> float:
    """A multinomial logistic regression fitted on training features, scored on test features."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0))
    clf.fit(f_train, y_train)
    return float(clf.score(f_test, y_test))


def layer_probes(
    model: keras.Model,
    data: ImageDataset,
    layers: list[str] | None = None,
    train_limit: int | None = 10_000,
    test_limit: int | None = None,
    out_dir: Path | None = None,
    progress: ProgressFn | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A row per layer: feature count, its own probe accuracy and the accuracy of all layers up to it."""
    names = layers or conv_layers(model)
    unknown = [n for n in names if n not in {layer.name for layer in all_layers(model)}]
    if unknown or not names:
        raise ValueError(f"unknown layers {unknown}; conv layers of this model: {conv_layers(model)}" if unknown
                         else f"model {model.name!r} has no convolutional layer to probe")
    tr = stratified_subset(data.y_train, train_limit, seed) if train_limit else np.arange(len(data.y_train))
    te = stratified_subset(data.y_test, test_limit, seed) if test_limit else np.arange(len(data.y_test))
    f_train = pooled_features(model, names, data.x_train[tr])
    f_test = pooled_features(model, names, data.x_test[te])
    y_train, y_test = data.y_train[tr], data.y_test[te]
    rows = []
    for i, name in enumerate(names):
        if progress is not None:
            progress(ProgressEvent(stage="probe", layer=name, done=i, total=len(names)))
        row = {"layer": name, "features": int(f_train[i].shape[1]),
               "probe_accuracy": probe_accuracy(f_train[i], y_train, f_test[i], y_test)}
        if i == 0:
            row["cumulative_accuracy"] = row["probe_accuracy"]
        else:
            row["cumulative_accuracy"] = probe_accuracy(np.concatenate(f_train[:i + 1], 1), y_train,
                                                        np.concatenate(f_test[:i + 1], 1), y_test)
        row["cumulative_layers"] = "+".join(names[:i + 1])
        row["cumulative_features"] = int(sum(f.shape[1] for f in f_train[:i + 1]))
        rows.append(row)
    result: dict[str, Any] = {"rows": rows, "n_train": int(len(tr)), "n_test": int(len(te))}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        result["plot"] = str(plots.plot_bars(
            names, {"individual": [r["probe_accuracy"] for r in rows],
                    "cumulative": [r["cumulative_accuracy"] for r in rows]},
            "linear probe test accuracy per layer", out_dir / "layers.png"))
    return result
