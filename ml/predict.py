"""Prediction with test-time augmentation: softmax probabilities for uint8 images, optionally averaged over views."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from convlens.ml.data.pipeline import make_dataset

TTA_VIEWS = (1, 2, 6)  # forward passes per image at each test-time augmentation level of predict_probs


# Images per forward pass when evaluating: a pass's activations are what set a training run's peak memory (a
# float32 run went over 1.5 GB at 512), and on CPU 256 keeps the larger nets' throughput where 128 lost some.
PREDICT_BATCH = 256


def predict_probs(model: keras.Model, x: np.ndarray, batch_size: int = PREDICT_BATCH, tta: int = 0,
                  plain: np.ndarray | None = None) -> np.ndarray:
    """Softmax probabilities for uint8 images.

    tta 1 averages them with the mirrored images'; tta 2 also averages (at half weight in all) the four
    views shifted one pixel diagonally either way, mirrored or not, with reflected borders. `plain`: the
    probabilities of the unaugmented view, when already computed (tta 0's result).
    """
    ds = make_dataset(x, None, 0, batch_size)

    def mirrored(view: tf.data.Dataset, probs: np.ndarray | None = None) -> np.ndarray:
        if probs is None:
            probs = model.predict(view, verbose=0).astype(np.float32)
        if tta >= 1:
            probs = (probs + model.predict(view.map(lambda b: b[:, :, ::-1, :]), verbose=0).astype(np.float32)) / 2
        return probs

    probs = mirrored(ds, plain)
    h, w = x.shape[1:3]
    if tta >= 2:
        padded = ds.map(lambda b: tf.pad(b, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"))
        shifted = [mirrored(padded.map(lambda b, o=o: b[:, o:o + h, o:o + w, :])) for o in (0, 2)]
        probs = (probs + (shifted[0] + shifted[1]) / 2) / 2
    return probs
