"""Exports for other runtimes: each format is reloaded in its own runtime (TensorFlow, onnxruntime, LiteRT) and
agrees with Keras on the same images; the export carries the division by 255 and the temperature, and its
metadata names the classes. The CLI command prints the agreement for a registered model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers import image_folder, saved_model

from convlens.db.models import Job
from convlens.db.session import ensure_current, session_scope
from convlens.ml.calibration import apply_temperature
from convlens.ml.export import export
from convlens.ml.predict import predict_probs
from convlens.ml.saved import load_trained, save_trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = saved_model(tmp_path_factory.mktemp("model") / "model.keras", ["cat", "dog", "fox"])
    plain = load_trained(path)
    save_trained(plain.model, path, plain.class_names, [0.4, 0.5, 0.6], "seed", temperature=1.7)
    return load_trained(path)


@pytest.mark.parametrize("fmt", ["savedmodel", "onnx", "tflite"])
def test_each_format_agrees_with_keras_in_its_own_runtime(trained, tmp_path, fmt):
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        report = export(trained, fmt, tmp_path / fmt, images)
    assert not [w for w in seen if issubclass(w.category, FutureWarning)]  # nothing the user can act on
    assert report.images == 64 and report.top1_agreement == 1.0 and report.max_probability_difference < 1e-3
    meta = json.loads((tmp_path / fmt / "convlens-model.json").read_text())
    assert meta["class_names"] == ["cat", "dog", "fox"] and meta["temperature"] == 1.7
    assert meta["input"]["range"] == [0, 255] and (tmp_path / fmt / meta["file"]).exists()


def test_the_export_computes_what_convlens_reports(trained, tmp_path):
    """Raw pixels in, temperature-scaled probabilities out: convlens's own prediction path, within float32 noise."""
    import tensorflow as tf

    images = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    export(trained, "savedmodel", tmp_path, images)
    loaded = tf.saved_model.load(str(tmp_path / "savedmodel"))
    theirs = loaded.serve(tf.constant(images.astype(np.float32)))
    ours = apply_temperature(predict_probs(trained.model, images), trained.temperature)
    np.testing.assert_allclose(np.asarray(theirs), ours, atol=2e-2)  # the model computes in bf16 here


def test_the_cli_exports_a_registered_model(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    ensure_current()
    from convlens.worker import registry

    with session_scope() as s:
        job = Job(kind="train", status="succeeded", name="pets")
        s.add(job)
        s.flush()
        registry.register(s, job.id, str(trained.path), "seed", trained.class_names, trained.thresholds)
    folder = tmp_path / "images"
    image_folder(folder, ("cat", "dog"), per_class=5)
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "convlens.api.cli", "models", "export", "pets", "--format", "tflite",
                           "--out", str(tmp_path / "out"), "--check-folder", str(folder)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pets:1 exported as tflite" in done.stdout
    assert "on 10 images against the model as classify serves it: top-1 agreement 1.0000" in done.stdout
    wrong = subprocess.run([sys.executable, "-m", "convlens.api.cli", "models", "export", "pets", "--format", "pmml"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert wrong.returncode == 2 and "one of savedmodel, tflite, onnx" in wrong.stderr
