"""Grad-CAM maps, their overlays and galleries (what classify jobs and the error analysis draw).

Maps are computed for whole batches in one pass and upsampled to the model's input size, values in [0, 1].
The class score is the pre-softmax logit when the model ends in a softmax Dense layer.
"""

from __future__ import annotations

import functools
import threading
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from convlens.ml.feasible import SPATIAL_CLASSES
from convlens.ml.pyplot import plt

SPATIAL = tuple(getattr(keras.layers, name) for name in SPATIAL_CLASSES)
SOFTMAX_HEADS = (keras.layers.Softmax,)


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer in order, the layers of nested models (Functional, Sequential, an import's wrapper) in place
    of the model that holds them."""
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        found += all_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return found


def conv_layers(model: keras.Model) -> list[str]:
    """The Conv2D layers' names anywhere in the model, nested models included (what layer probes fit on)."""
    return [layer.name for layer in all_layers(model) if isinstance(layer, keras.layers.Conv2D)]


def _last_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer that makes the model's output, looked for inside a nested model that ends it."""
    last = model.layers[-1]
    return _last_layer(last) if isinstance(last, keras.Model) else last


def default_layer(model: keras.Model) -> str:
    """The Grad-CAM layer its preset chose (models are named after their preset), else the last spatial
    convolution anywhere in the model, nested models included."""
    from convlens.ml.models import get_preset, list_presets

    layers = all_layers(model)
    names = [layer.name for layer in layers if isinstance(layer, SPATIAL)]
    for m in [model, *(layer for layer in model.layers if isinstance(layer, keras.Model))]:
        if m.name in list_presets() and get_preset(m.name).gradcam_layer in names:
            return get_preset(m.name).gradcam_layer
    if not names:
        hidden = any(isinstance(layer, keras.layers.TFSMLayer) for layer in layers)
        raise ValueError(f"model {model.name!r} has no convolutional layer for Grad-CAM" + (
            ": one imported from a TensorFlow SavedModel hides its layers; import its .keras file instead"
            if hidden else ""))
    return names[-1]


# Which thread is computing a map, and what its hooks caught: the hooked layers stay hooked, and a forward pass
# of another thread (a classify job's predictions) records nothing.
_caught = threading.local()


# Each hooked layer's slots: which tensor (its input or output) each map being computed wants, by slot name.
_slots: weakref.WeakKeyDictionary[keras.layers.Layer, dict[str, bool]] = weakref.WeakKeyDictionary()


def _hook(layer: keras.layers.Layer, slot: str, want_input: bool) -> None:
    """Makes layer record its input or output tensor under `slot` during a map's forward pass: gradients are
    then taken with respect to that very tensor, whatever graph (nested models, Sequential) holds the layer.
    pytorch-grad-cam's forward hooks, which Keras has no API for."""
    if layer not in _slots:
        original, wanted = layer.call, {}

        @functools.wraps(original)
        def call(*args, **kwargs):  # noqa: ANN202
            out = original(*args, **kwargs)
            store = getattr(_caught, "tensors", None)
            if store is not None:
                for name, wants_input in wanted.items():
                    store[(id(layer), name)] = args[0] if wants_input else out
            return out

        layer.call = call
        _slots[layer] = wanted
    _slots[layer][slot] = want_input


def _forward(model: keras.Model, x: tf.Tensor) -> tuple[tf.Tensor, dict]:
    """The model's output on x and what the hooked layers recorded during this very pass."""
    _caught.tensors = {}
    try:
        return model(x, training=False), _caught.tensors
    finally:
        _caught.tensors = None


def layer_outputs(model: keras.Model, layers: list[str], x: tf.Tensor) -> list[tf.Tensor]:
    """The outputs of the named layers, wherever the model nests them, in one forward pass of the model itself
    (no second model is built, so nested models whose layer names repeat are no obstacle)."""
    by_name = {layer.name: layer for layer in all_layers(model)}
    targets = [by_name[name] for name in layers]
    for target in targets:
        _hook(target, "probe", want_input=False)
    caught = _forward(model, x)[1]
    return [caught[(id(target), "probe")] for target in targets]


class CamModel:
    """Maps images to (activations of `layer`, class logits) in one forward pass of the model itself."""

    def __init__(self, model: keras.Model, layer: str | None = None) -> None:
        self.model = model
        self.layer = layer or default_layer(model)
        found = [candidate for candidate in all_layers(model) if candidate.name == self.layer]
        if not found:
            raise ValueError(f"no layer {self.layer!r} in model {model.name!r}")
        self.head = _last_layer(model)
        # The class score is the logit: the input of a final softmax layer, or of a softmax Dense's activation.
        self.softmax_dense = isinstance(self.head, keras.layers.Dense) and \
            self.head.activation is keras.activations.softmax
        self.takes_softmax_input = isinstance(self.head, SOFTMAX_HEADS) or (
            isinstance(self.head, keras.layers.Activation) and self.head.activation is keras.activations.softmax)
        self.target = found[-1]
        _hook(self.target, "output", want_input=False)
        if self.softmax_dense or self.takes_softmax_input:
            _hook(self.head, "input", want_input=True)

    def __call__(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Activations are returned as computed (bf16 under mixed precision) so gradients reach them."""
        out, caught = _forward(self.model, x)
        acts = caught[(id(self.target), "output")]
        if self.softmax_dense:
            pre = tf.cast(caught[(id(self.head), "input")], tf.float32)
            logits = tf.matmul(pre, tf.cast(self.head.kernel, tf.float32))
            if self.head.use_bias:
                logits += tf.cast(self.head.bias, tf.float32)
        elif self.takes_softmax_input:
            logits = tf.cast(caught[(id(self.head), "input")], tf.float32)
        else:
            logits = tf.cast(out, tf.float32)
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
    cam_model: CamModel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM (maps (N, H, W) in [0, 1], class indices explained) for float images in [0, 1] of shape
    (N, H, W, 3). class_idx None explains each image's predicted class.
    """
    cm = cam_model or CamModel(model, layer)
    x = tf.convert_to_tensor(images, tf.float32)
    size = (int(x.shape[1]), int(x.shape[2]))
    with tf.GradientTape() as tape:
        acts, logits = cm(x)
        classes = _classes(logits, class_idx)
        score = tf.gather(logits, classes, axis=1, batch_dims=1)
    weights = tf.reduce_mean(tf.cast(tape.gradient(score, acts), tf.float32), axis=(1, 2))
    cams = tf.nn.relu(tf.einsum("nhwc,nc->nhw", tf.cast(acts, tf.float32), weights))
    return _normalise(cams, size), classes.numpy()


def _classes(logits: tf.Tensor, class_idx: np.ndarray | int | None) -> tf.Tensor:
    n = tf.shape(logits)[0]
    if class_idx is None:
        return tf.argmax(logits, axis=1, output_type=tf.int32)
    if np.isscalar(class_idx):
        return tf.fill([n], tf.constant(int(class_idx), tf.int32))
    return tf.convert_to_tensor(np.asarray(class_idx), tf.int32)


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


def save_gallery(images: np.ndarray, cams: np.ndarray, titles: list[str], path: Path, cols: int = 6) -> Path:
    """The overlays tiled into one picture with a title (up to two lines) over each: one axes, not one per image
    (matplotlib lays out and draws each axes on its own, which made a 24-image gallery take seconds). Captions
    are sized to stay legible when the picture is shown a page wide (about 1,000 pixels) or printed."""
    rows = -(-len(images) // cols)
    h, w = images.shape[1:3]
    gap, title = max(1, w // 16), max(8, h // 2)  # pixels between tiles and above each for its title
    cell_h, cell_w = h + title, w + gap
    grid = np.full((rows * cell_h, cols * cell_w - gap, 3), 255, np.uint8)
    width_in = 2 * cols
    fig = plt.figure(figsize=(width_in, width_in * grid.shape[0] / grid.shape[1]))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    for k, (img, cam, text) in enumerate(zip(images, cams, titles, strict=False)):
        top, left = divmod(k, cols)
        top, left = top * cell_h + title, left * cell_w
        grid[top:top + h, left:left + w] = overlay(img, cam)
        ax.text(left + w / 2, top - 1, text, ha="center", va="bottom", fontsize=12, linespacing=1.1)
    ax.imshow(grid, interpolation="nearest", aspect="auto")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
