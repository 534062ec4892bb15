"""Custom layers for speed on CPUs."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common.variables import AutocastScope


@keras.saving.register_keras_serializable("convlens")
class FusedBatchNorm(keras.layers.Layer):
    """Batch normalisation with a frozen scale of 1 and a learned shift, as one FusedBatchNormV3 op.

    Keras 3's BatchNormalization composes several ops and halves training speed under bf16 on CPUs;
    the fused kernel takes bf16 activations with float32 statistics and costs almost nothing.
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, bias_scale: float = 1.0, **kwargs) -> None:
        super().__init__(autocast=False, **kwargs)  # statistics and shift stay float32
        # The shift is stored divided by bias_scale: SGD then moves it bias_scale**2 times faster than the
        # conv weights (a per-parameter learning rate without a custom optimizer).
        self.momentum, self.epsilon, self.bias_scale = momentum, epsilon, bias_scale

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta", dtype="float32")
        self.moving_mean = self.add_weight(shape=(channels,), initializer="zeros", trainable=False,
                                           name="moving_mean", dtype="float32")
        self.moving_variance = self.add_weight(shape=(channels,), initializer="ones", trainable=False,
                                               name="moving_variance", dtype="float32")

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x, training: bool = False):
        # An enclosing model may have opened a bf16 autocast scope; the kernel needs float32 statistics.
        with AutocastScope(None):
            beta = tf.convert_to_tensor(self.beta) * self.bias_scale
            moving_mean = tf.convert_to_tensor(self.moving_mean)
            moving_variance = tf.convert_to_tensor(self.moving_variance)
        gamma = tf.ones_like(beta)
        if training:
            y, mean, var, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
                epsilon=self.epsilon, exponential_avg_factor=1.0, is_training=True)
            # Update from the float32 reads above: reading the variables here would see bf16-rounded values.
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + var * (1 - self.momentum))
            return y
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance,
            epsilon=self.epsilon, is_training=False)
        return y

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon,
                "bias_scale": self.bias_scale}


@keras.saving.register_keras_serializable("convlens")
class PartialIdentity(keras.initializers.Initializer):
    """Glorot-uniform conv kernels whose first min(in, out) filters pass their input channel through unchanged.

    The identity start lets a freshly built deep net train at a large learning rate from the first step.
    """

    def __call__(self, shape, dtype=None):
        kh, kw, cin, cout = shape
        kernel = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform()(shape, dtype="float32"))
        n = min(cin, cout)
        kernel[:, :, :, :n] = 0.0
        kernel[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        return keras.ops.convert_to_tensor(kernel, dtype=dtype)
