"""Patch-whitening filters from training images: the first convolution's starting (or frozen) weights.

Each filter projects a patch on one principal component of the patch covariance, divided by its standard
deviation, and its negative follows it, so a ReLU after it keeps both signs; the bias centres the patches. A
net whose first layer starts decorrelated learns in fewer steps (the fast CIFAR-10 recipes freeze such a layer;
the `seed` preset only starts from one).
"""

from __future__ import annotations

import numpy as np


def whitening_filters(x_train: np.ndarray, size: int, components: int | None = None, n: int = 5000,
                      eps: float = 5e-4, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (size, size, channels, 2 * components), bias) from `n` uint8 training images.

    `components` keeps the strongest ones (all by default). `eps` is relative to the mean pixel variance (the
    published recipe's 5e-4 is on standardised pixels), so the weakest, high-frequency components are damped the
    same whatever the pixel scale.
    """
    rng = np.random.default_rng(0)
    sample = x_train[rng.choice(len(x_train), min(n, len(x_train)), replace=False)].astype(np.float32) / 255.0
    channels = sample.shape[-1]
    dims = size * size * channels
    patches = np.lib.stride_tricks.sliding_window_view(sample, (size, size, channels), axis=(1, 2, 3))
    patches = patches.reshape(-1, dims)
    mean = patches.mean(0)
    cov = np.cov(patches - mean, rowvar=False)
    eigval, eigvec = np.linalg.eigh(cov)  # ascending
    keep = slice(dims - (components or dims), dims)
    # Images without any variation (one colour throughout) would divide by zero: damp by eps itself there.
    damping = eps * (np.trace(cov) / dims or 1.0)
    filters = scale * eigvec[:, keep] / np.sqrt(eigval[keep] + damping)
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(size, size, channels, -1)
    return kernel.astype(np.float32), (-(mean @ filters)).astype(np.float32)
