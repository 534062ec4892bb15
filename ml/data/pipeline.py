"""tf.data pipelines over uint8 arrays held once in memory.

Batches are gathered by index and scaled to [0, 1] per batch, so no float copy of the dataset ever exists;
augmentation runs on whole training batches with Keras preprocessing layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf


@dataclass
class AugmentConfig:
    flip: bool = True
    rotation: float = 0.0  # fraction of a full turn
    zoom: float = 0.0  # fraction of the side
    translation: float = 0.1  # fraction of the side

    @property
    def enabled(self) -> bool:
        return self.flip or self.rotation > 0 or self.zoom > 0 or self.translation > 0

    def to_dict(self) -> dict:
        return asdict(self)


def augmentation_layers(cfg: AugmentConfig, seed: int) -> keras.Sequential | None:
    layers: list[keras.layers.Layer] = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"))
    if cfg.rotation > 0:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed + 1, dtype="float32"))
    if cfg.zoom > 0:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed + 2, dtype="float32"))
    if cfg.translation > 0:
        t = cfg.translation
        # Nearest-neighbour: whole-pixel shifts, no blur.
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="reflect", interpolation="nearest",
                                                     seed=seed + 3, dtype="float32"))
    # float32 whatever the global mixed-precision policy: the model casts its own inputs.
    return keras.Sequential(layers, name="augment") if layers else None


def scale(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels to float32 in [0, 1]."""
    return tf.cast(images, tf.float32) / 255.0


def make_dataset(
    x: np.ndarray,
    y: np.ndarray | None,
    num_classes: int,
    batch_size: int,
    training: bool = False,
    augment: AugmentConfig | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (float images, one-hot labels), or of images alone when y is None."""
    images = tf.constant(x)  # one uint8 copy, shared by every batch
    labels = None if y is None else tf.one_hot(tf.constant(y, tf.int32), num_classes)
    ds = tf.data.Dataset.range(len(x))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    aug = augmentation_layers(augment, seed) if (training and augment and augment.enabled) else None

    def gather(idx: tf.Tensor):
        batch = scale(tf.gather(images, idx))
        if aug is not None:
            batch = aug(batch, training=True)
        return batch if labels is None else (batch, tf.gather(labels, idx))

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
