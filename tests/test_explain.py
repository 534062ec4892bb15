"""Grad-CAM against its definition and against random maps (deletion curves), overlays, galleries, error analysis."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from convlens.ml.error_analysis import confused_pairs, highest_loss_gallery
from convlens.ml.explain import compute_cam, default_layer, overlay, save_gallery


@pytest.fixture(scope="module")
def images(cifar):
    idx = np.random.default_rng(1).choice(10_000, 96, replace=False)
    return cifar.x_test[idx].astype(np.float32) / 255.0, cifar.y_test[idx]


def reference_gradcam(model, x, layer, classes):
    """Grad-CAM from its definition: d(class logit)/d(activations), averaged over space, weighted sum, ReLU."""
    conv = model.get_layer(layer)
    inner = tf.keras.Model(model.inputs, [conv.output, model.layers[-1].input])
    head = model.layers[-1]
    maps = []
    for i in range(len(x)):
        with tf.GradientTape() as tape:
            acts, pre = inner(x[i:i + 1])
            logit = tf.matmul(tf.cast(pre, tf.float32), head.kernel) + head.bias
            score = logit[0, classes[i]]
        grads = tf.cast(tape.gradient(score, acts), tf.float32)[0].numpy()
        a = tf.cast(acts, tf.float32)[0].numpy()
        cam = np.maximum((a * grads.mean(axis=(0, 1))).sum(-1), 0)
        cam = tf.image.resize(cam[None, :, :, None], x.shape[1:3])[0, :, :, 0].numpy()
        maps.append((cam - cam.min()) / max(cam.max() - cam.min(), 1e-8))
    return np.stack(maps)


def test_gradcam_matches_its_definition(trained, images):
    model = trained["model"].model
    x, _ = images
    assert default_layer(model) == "conv3"
    cams, classes = compute_cam(model, x[:16])
    assert cams.shape == (16, 32, 32) and cams.min() >= 0 and cams.max() <= 1
    assert np.array_equal(classes, model.predict(x[:16], verbose=0).argmax(1))
    ref = reference_gradcam(model, x[:16], "conv3", classes)
    assert np.abs(cams - ref).max() < 0.05  # bf16 activations: small rounding differences only
    given, given_cls = compute_cam(model, x[:4], class_idx=3, layer="conv2")
    assert (given_cls == 3).all() and given.shape == (4, 32, 32)


def deletion_auc(model, images, cams, classes, steps=16):
    """Per image: area under the class probability as the most salient pixels give way to a blurred copy
    (lower: the map found what the model used). Blur, not black, so that removal adds no sharp edges."""
    n, h, w, _ = images.shape
    baseline = tf.nn.avg_pool2d(tf.pad(images, [[0, 0], [5, 5], [5, 5], [0, 0]], "REFLECT"), 11, 1, "VALID").numpy()
    order = np.argsort(-cams.reshape(n, -1), axis=1)
    fractions = np.linspace(0, 1, steps + 1)
    curves = []
    for f in fractions:
        mask = np.zeros((n, h * w), bool)
        np.put_along_axis(mask, order[:, :int(round(f * h * w))], True, axis=1)
        probs = model.predict(np.where(mask.reshape(n, h, w, 1), baseline, images), batch_size=1024, verbose=0)
        curves.append(probs[np.arange(n), classes])
    return np.trapezoid(np.asarray(curves), fractions, axis=0)


def test_deletion_auc_beats_random_maps(trained, images):
    model = trained["model"].model
    x, _ = images
    cams, classes = compute_cam(model, x)
    # Random maps with the same spatial resolution as conv3's (4x4), upsampled like Grad-CAM's.
    low = np.random.default_rng(0).random((len(x), 4, 4, 1)).astype(np.float32)
    rand = tf.image.resize(low, (32, 32)).numpy()[..., 0]
    ours, chance = deletion_auc(model, x, cams, classes), deletion_auc(model, x, rand, classes)
    assert ours.shape == (len(x),) and ours.mean() < chance.mean()


def test_overlays_and_galleries(tmp_path, trained, images):
    big = np.asarray(Image.fromarray((images[0][0] * 255).astype(np.uint8)).resize((200, 150)))
    cam = compute_cam(trained["model"].model, images[0][:1])[0][0]
    over = overlay(big, cam)
    assert over.shape == (150, 200, 3)  # at the original resolution
    # The map's hottest pixel is coloured towards jet's dark red, its coldest towards dark blue.
    cam_big = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((200, 150), Image.BILINEAR))
    hot, cold = np.unravel_index(cam_big.argmax(), cam_big.shape), np.unravel_index(cam_big.argmin(), cam_big.shape)
    lift = over.astype(int) - (big.astype(int) * 0.55).astype(int)
    assert lift[hot][0] > lift[hot][2] and lift[cold][2] > lift[cold][0]
    path = save_gallery((images[0][:4] * 255).astype(np.uint8), np.stack([cam] * 4), ["true x\npredicted y"] * 4,
                        tmp_path / "g.png")
    # One row of 6 cells 2 inches wide at 100 dpi (a 32-pixel image, 2 pixels apart, under a 16-pixel title, kept
    # in proportion), four of them drawn (not blank).
    gallery = np.asarray(Image.open(path).convert("RGB"))
    cell, title = 1200 / 202 * 34, 1200 / 202 * 16
    assert gallery.shape == (round(1200 * 48 / 202), 1200, 3)
    panels = [gallery[int(title) + 10:-10, int(cell * i) + 20:int(cell * i) + 170] for i in range(6)]
    assert [int(p.std() > 10) for p in panels] == [1] * 4 + [0] * 2


def test_error_analysis(tmp_path, trained, cifar):
    r = trained["result"]
    pairs = confused_pairs(r["metrics"]["test"]["confusion_matrix"], r["class_names"], top=5)
    assert len(pairs) == 5 and pairs[0]["count"] >= pairs[-1]["count"] > 0
    cm = np.asarray(r["metrics"]["test"]["confusion_matrix"])
    top = pairs[0]
    i, j = r["class_names"].index(top["true"]), r["class_names"].index(top["predicted"])
    assert cm[i, j] == top["count"] == max(cm[a, b] for a in range(10) for b in range(10) if a != b)
    idx = np.random.default_rng(0).choice(10_000, 500, replace=False)
    out = highest_loss_gallery(trained["model"].model, cifar.x_test[idx], cifar.y_test[idx], r["class_names"],
                               tmp_path / "worst.png", n=12)
    losses = [im["loss"] for im in out["images"]]
    assert losses == sorted(losses, reverse=True) and (tmp_path / "worst.png").is_file()
