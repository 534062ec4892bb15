"""`seed`: the reference CNN, conv1-conv2-conv3-dense1-output, exactly as the original report built it."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from convlens.ml.models.registry import Preset, register_preset
from convlens.ml.models.whitening import whitening_filters


def build_seed(input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10) -> keras.Model:
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(128, 3, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    # float32 softmax: the loss stays float32 under mixed precision.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name="seed")


def init_conv1(model: keras.Model, x_train: np.ndarray) -> None:
    """Starts conv1 (32 filters) as the 16 strongest whitened 3x3 patch components and their negatives.

    Only the starting weights change, the architecture stays the reference's. A scale of 0.3 keeps conv1's
    outputs small, as Keras' own initialisation does (3 epochs, seed 1: 0.716 at 1.0, 0.730 at 0.3 and at 0.1).
    """
    layer = model.get_layer("conv1")
    kernel, bias = whitening_filters(x_train, 3, components=layer.filters // 2, n=1000, scale=0.3)
    layer.set_weights([kernel, bias])


SEED = register_preset(
    Preset(
        name="seed",
        build=build_seed,
        description="The reference CNN with a short recipe: conv1 started from whitened patches, batch 64, Adam 3e-3 "
                    "warm-up then linear decay, label smoothing 0.1, alternating flips, 2 epochs, flip TTA.",
        recipe={
            # 2 epochs from whitened patches: 0.700 / 0.700 / 0.704 test accuracy (seeds 0 / 1 / 2) against the
            # reference code's 0.692 in 10 epochs (3 epochs: 0.733 / 0.730); from Keras' own initialisation 5 epochs
            # were needed (docs/benchmarks.md says on which CPU, with the runs tried).
            "epochs": 2,
            "batch_size": 64,
            "learning_rate": 3e-3,
            "schedule": "warmup_linear",
            "warmup_fraction": 0.1,
            "label_smoothing": 0.1,
            "patience": 0,  # the rate decays to zero at the last epoch: nothing to stop early for
            # Each image mirrored in one epoch and not the other: more than random flips in 2 epochs.
            "augment": {"flip": True, "alternate_flip": True, "rotation": 0.0, "zoom": 0.0, "translation": 0.0},
            "val_fraction": 0.02,  # 1,000 CIFAR-10 images: 500 fit the temperature and thresholds, 500 calibrate
            "tta": 1,  # the flipped view too: one more forward pass of the test set
            # 16 steps per call into TensorFlow: on an AVX2 CPU per-step overhead was half the step time (735 ->
            # 1,436 images/s in the probe); on AVX-512-BF16 it changes nothing (4,090 vs 4,357, noise).
            "steps_per_execution": 16,
        },
        init_from_data=init_conv1,
    )
)
