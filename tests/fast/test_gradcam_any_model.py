"""Grad-CAM for any model convlens can load (issue 46): Sequential and nested models, imported through the CLI,
explained by a classify job, by /predict and by compute_cam exactly as Grad-CAM's definition says; a model with
no feature map is refused at submit in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_folder

from convlens.ml.explain import compute_cam


def _sequential() -> keras.Model:
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(6, 3, activation="relu", name="c1"),
                             keras.layers.Conv2D(8, 3, activation="relu", name="c2"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="logits")])


def _nested() -> keras.Model:
    backbone = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(6, 3, activation="relu", name="c1")],
                                name="backbone")
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    return keras.Model(inp, out)


def _dense_only() -> keras.Model:
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])


def test_gradcam_of_a_sequential_model_is_its_definition():
    model = _sequential()
    x = np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)
    cams, classes = compute_cam(model, x)
    expected = []
    for i in range(3):
        with tf.GradientTape() as tape:
            h = model.layers[0](x[i:i + 1])
            acts = model.layers[1](h)
            tape.watch(acts)
            logits = model.layers[3](model.layers[2](acts))
            score = logits[0, classes[i]]
        grads = tape.gradient(score, acts)[0].numpy()
        cam = np.maximum((acts[0].numpy() * grads.mean(axis=(0, 1))).sum(-1), 0)
        cam = tf.image.resize(cam[None, :, :, None], (32, 32))[0, :, :, 0].numpy()
        expected.append((cam - cam.min()) / max(cam.max() - cam.min(), 1e-8))
    np.testing.assert_allclose(cams, np.stack(expected), atol=1e-4)


def _cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.parametrize("build", [_sequential, _nested])
def test_an_imported_model_explains_itself_in_a_job_and_over_http(home, tmp_path, build, monkeypatch):
    from fastapi.testclient import TestClient

    from convlens.api.http import app
    from convlens.api.tokens import create_token

    env = {**os.environ, "CONVLENS_HOME": str(home), "CONVLENS_DATABASE_URL": ""}
    build().save(tmp_path / "tiny.keras")
    image_folder(tmp_path / "images", per_class=3)
    _cli(env, "models", "import", str(tmp_path / "tiny.keras"), "--name", "tiny", "--classes", "cat,dog")
    job = json.loads(_cli(env, "run", "classify", str(tmp_path / "images"), "--model", "tiny", "--gradcam",
                          "--json").stdout)
    assert job["status"] == "succeeded", job
    overlays = list((home / "runs" / job["id"]).rglob("*.png"))
    assert len([p for p in overlays if "overlay" in str(p)]) == 6, overlays
    monkeypatch.setenv("CONVLENS_ALLOWED_ROOTS", str(tmp_path))
    client = TestClient(app, headers={"Authorization": f"Bearer {create_token('s', 'submit').token}"})
    png = (tmp_path / "images" / "cat" / "cat_000.png").read_bytes()
    r = client.post("/predict?model=tiny&gradcam=true", files={"file": ("a.png", png, "image/png")})
    assert r.status_code == 200 and r.json()["predictions"][0]["overlay_png"], r.text[:300]


def test_a_model_without_a_feature_map_is_refused_at_submit(home, tmp_path):
    env = {**os.environ, "CONVLENS_HOME": str(home), "CONVLENS_DATABASE_URL": ""}
    _dense_only().save(tmp_path / "flat.keras")
    (tmp_path / "flat.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    image_folder(tmp_path / "images", per_class=1)
    done = _cli(env, "submit", "classify", str(tmp_path / "images"), "--model", str(tmp_path / "flat.keras"),
                "--gradcam", check=False)
    assert done.returncode == 2 and "no convolutional layer" in done.stderr and "Traceback" not in done.stderr, \
        done.stderr
    (tmp_path / "fake.keras").write_text("not a model")
    (tmp_path / "fake.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    done = _cli(env, "submit", "classify", str(tmp_path / "images"), "--model", str(tmp_path / "fake.keras"),
                check=False)
    assert done.returncode == 2 and "not a .keras archive" in done.stderr, done.stderr
    assert "(no rows)" in _cli(env, "jobs", "list").stdout  # nothing stored


def test_layer_probes_find_conv_layers_inside_a_nested_backbone(tmp_path):
    """A user's backbone inside their model, inside the import wrapper: the probe finds its conv layer and pools
    exactly what that layer computes on the wrapper's rescaled pixels."""
    from convlens.ml.analysis import layer_probes, pooled_features
    from convlens.ml.data.cifar import ImageDataset
    from convlens.ml.imported import import_model
    from convlens.ml.saved import load_trained

    model = _nested()
    model.save(tmp_path / "nested.keras")
    wrapper = load_trained(import_model(tmp_path / "nested.keras", ["cat", "dog"], "1", tmp_path / "imp").path).model
    x = np.random.default_rng(5).integers(0, 255, (20, 32, 32, 3)).astype(np.uint8)
    (ours,) = pooled_features(wrapper, ["c1"], x)
    backbone = model.get_layer("backbone")
    theirs = np.asarray(tf.reduce_mean(backbone(x.astype(np.float32)), axis=(1, 2)))  # input scale 1: 0..255
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    y = np.arange(20) % 2
    rows = layer_probes(wrapper, ImageDataset(x, y, x, y, ["cat", "dog"]), train_limit=None, test_limit=None)["rows"]
    assert [r["layer"] for r in rows] == ["c1"] and rows[0]["features"] == 6
