"""Class-activation maps (Grad-CAM, Grad-CAM++, Score-CAM), overlays, galleries and faithfulness scores.

Maps are computed for whole batches in one pass and upsampled to the model's input size, values in [0, 1].
The class score is the pre-softmax logit when the model ends in a softmax Dense layer.
"""

from __future__ import annotations

from pathlib import Path

import keras
import matplotlib
import numpy as np
import tensorflow as tf
from PIL import Image
from scipy.stats import spearmanr

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METHODS = ("gradcam", "gradcam++", "scorecam")


def conv_layers(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def default_layer(model: keras.Model) -> str:
    """The Grad-CAM layer its preset chose (models are named after their preset), else the last conv layer."""
    from convlens.ml.models import get_preset, list_presets

    names = conv_layers(model)
    if model.name in list_presets():
        chosen = get_preset(model.name).gradcam_layer
        if chosen in names:
            return chosen
    if not names:
        raise ValueError(f"model {model.name!r} has no convolutional layer")
    return names[-1]


class CamModel:
    """Maps images to (activations of `layer`, class logits) in one forward pass."""

    def __init__(self, model: keras.Model, layer: str | None = None) -> None:
        self.model = model
        self.layer = layer or default_layer(model)
        head = model.layers[-1]
        self.softmax_dense = isinstance(head, keras.layers.Dense) and head.activation is keras.activations.softmax
        outputs = [model.get_layer(self.layer).output, head.input if self.softmax_dense else model.output]
        self.inner = keras.Model(model.inputs, outputs)
        self.head = head

    def __call__(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Activations are returned as computed (bf16 under mixed precision) so gradients reach them."""
        acts, pre = self.inner(x, training=False)
        if self.softmax_dense:
            logits = tf.matmul(tf.cast(pre, tf.float32), tf.cast(self.head.kernel, tf.float32))
            if self.head.use_bias:
                logits += tf.cast(self.head.bias, tf.float32)
        else:
            logits = tf.cast(pre, tf.float32)
        return acts, logits


def _normalise(cams: tf.Tensor, size: tuple[int, int]) -> np.ndarray:
    cams = tf.image.resize(cams[..., None], size, method="bilinear")[..., 0]
    lo = tf.reduce_min(cams, axis=(1, 2), keepdims=True)
    hi = tf.reduce_max(cams, axis=(1, 2), keepdims=True)
    return ((cams - lo) / tf.maximum(hi - lo, 1e-8)).numpy()


def compute_cam(
    model: keras.Model,
    images: np.ndarray,
    class_idx: np.ndarray | int | None = None,
    layer: str | None = None,
    method: str = "gradcam",
    cam_model: CamModel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(maps (N, H, W) in [0, 1], class indices explained) for float images in [0, 1] of shape (N, H, W, 3).

    class_idx None explains each image's predicted class.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    cm = cam_model or CamModel(model, layer)
    x = tf.convert_to_tensor(images, tf.float32)
    size = (int(x.shape[1]), int(x.shape[2]))
    with tf.GradientTape() as tape:
        acts, logits = cm(x)
        classes = _classes(logits, class_idx)
        score = tf.gather(logits, classes, axis=1, batch_dims=1)
    if method == "scorecam":
        return _scorecam(cm, x, tf.cast(acts, tf.float32), classes, size), classes.numpy()
    grads = tf.cast(tape.gradient(score, acts), tf.float32)
    acts = tf.cast(acts, tf.float32)
    if method == "gradcam":
        weights = tf.reduce_mean(grads, axis=(1, 2))
    else:  # Grad-CAM++ (Chattopadhyay et al.), with exp(score) so higher derivatives are powers of the gradient
        g2, g3 = grads**2, grads**3
        denom = 2 * g2 + tf.reduce_sum(acts, axis=(1, 2), keepdims=True) * g3
        alpha = g2 / tf.where(tf.abs(denom) > 1e-12, denom, tf.ones_like(denom))
        weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))
    cams = tf.nn.relu(tf.einsum("nhwc,nc->nhw", acts, weights))
    return _normalise(cams, size), classes.numpy()


def _classes(logits: tf.Tensor, class_idx: np.ndarray | int | None) -> tf.Tensor:
    n = tf.shape(logits)[0]
    if class_idx is None:
        return tf.argmax(logits, axis=1, output_type=tf.int32)
    if np.isscalar(class_idx):
        return tf.fill([n], tf.constant(int(class_idx), tf.int32))
    return tf.convert_to_tensor(np.asarray(class_idx), tf.int32)


def _scorecam(cm: CamModel, x: tf.Tensor, acts: tf.Tensor, classes: tf.Tensor, size: tuple[int, int],
              chunk: int = 512) -> np.ndarray:
    """Score-CAM: each channel's upsampled, normalised map masks the input; its weight is the class probability."""
    n, channels = int(acts.shape[0]), int(acts.shape[-1])
    maps = tf.image.resize(acts, size)  # (N, H, W, C)
    lo = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    hi = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    masks = (maps - lo) / tf.maximum(hi - lo, 1e-8)
    weights = np.zeros((n, channels), np.float32)
    for i in range(n):
        masked = x[i][None] * tf.transpose(masks[i], (2, 0, 1))[..., None]  # (C, H, W, 3)
        scores = []
        for start in range(0, channels, chunk):
            _, logits = cm(masked[start:start + chunk])
            scores.append(tf.nn.softmax(logits)[:, int(classes[i])])
        weights[i] = tf.concat(scores, 0).numpy()
    cams = tf.nn.relu(tf.einsum("nhwc,nc->nhw", maps, tf.nn.softmax(weights, axis=1)))
    return _normalise(cams, size)


# --- pictures ----------------------------------------------------------------------------------------

_JET = (plt.get_cmap("jet")(np.arange(256))[:, :3] * 255).astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The map (any size) coloured with 'jet' and blended over the uint8 RGB image, at the image's size."""
    h, w = image.shape[:2]
    if cam.shape != (h, w):
        cam = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    heat = _JET[np.clip(cam * 255, 0, 255).astype(np.uint8)]
    return (image.astype(np.float32) * (1 - alpha) + heat.astype(np.float32) * alpha).astype(np.uint8)


def save_overlay(image: np.ndarray, cam: np.ndarray, path: Path) -> Path:
    Image.fromarray(overlay(image, cam)).save(path, compress_level=1)
    return path


def save_gallery(images: np.ndarray, cams: np.ndarray, titles: list[str], path: Path, cols: int = 8) -> Path:
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cam, title in zip(axes.flat, images, cams, titles, strict=False):
        ax.imshow(overlay(img, cam))
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- faithfulness ------------------------------------------------------------------------------------

def deletion_insertion_auc(
    model: keras.Model, images: np.ndarray, cams: np.ndarray, classes: np.ndarray, steps: int = 16
) -> dict[str, np.ndarray]:
    """Per image: area under the class-probability curve as the most salient pixels are removed (deletion,
    lower is better) or revealed (insertion, higher is better). Removed pixels take the value of a blurred copy
    of the image, so that removal does not add sharp artificial edges the model would react to."""
    n, h, w, _ = images.shape
    baseline = blurred(images)
    order = np.argsort(-cams.reshape(n, -1), axis=1)
    fractions = np.linspace(0, 1, steps + 1)
    deleted, inserted = [], []
    for f in fractions:
        mask = np.zeros((n, h * w), bool)
        k = int(round(f * h * w))
        np.put_along_axis(mask, order[:, :k], True, axis=1)
        mask = mask.reshape(n, h, w, 1)
        deleted.append(np.where(mask, baseline, images))
        inserted.append(np.where(mask, images, baseline))
    out = {}
    for name, batches in (("deletion", deleted), ("insertion", inserted)):
        probs = model.predict(np.concatenate(batches).astype(np.float32), batch_size=1024, verbose=0)
        p = probs.reshape(steps + 1, n, -1)[:, np.arange(n), classes]  # (steps+1, n)
        out[name] = np.trapezoid(p, fractions, axis=0)
    return out


def blurred(images: np.ndarray, size: int = 11) -> np.ndarray:
    pad = size // 2
    padded = tf.pad(tf.convert_to_tensor(images, tf.float32), [[0, 0], [pad, pad], [pad, pad], [0, 0]], "REFLECT")
    return tf.nn.avg_pool2d(padded, size, 1, "VALID").numpy()


def randomised_copy(model: keras.Model, seed: int = 0) -> keras.Model:
    """The same architecture with freshly initialised weights: the cascading-randomisation sanity check."""
    clone = keras.models.clone_model(model)
    clone.build(model.input_shape)
    rng = np.random.default_rng(seed)
    clone.set_weights([rng.normal(0, 0.05, w.shape).astype(w.dtype) if w.ndim > 1 else w
                       for w in model.get_weights()])
    return clone


def sanity_check(model: keras.Model, images: np.ndarray, layer: str | None = None,
                 method: str = "gradcam") -> dict[str, float]:
    """Mean Spearman rank correlation between trained and randomised-weight maps (low: the map depends on
    what the model learned)."""
    layer = layer or default_layer(model)
    cams, classes = compute_cam(model, images, layer=layer, method=method)
    rand_cams, _ = compute_cam(randomised_copy(model), images, class_idx=classes, layer=layer, method=method)
    corr = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(cams, rand_cams, strict=True)]
    corr = np.nan_to_num(np.asarray(corr, np.float64))
    return {"mean_rank_correlation": float(corr.mean()), "images": len(images)}
