"""Models trained elsewhere: a small Keras model built and trained here (logits, 40x40 input, raw 0-255
pixels) is imported with a labelled folder to calibrate on, registered by name and used by a classify job; a
SavedModel export of it gives the same probabilities; files that are no importable model are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import image_folder

from convlens.ml.analysis import layer_probes, pooled_features
from convlens.ml.data.cifar import ImageDataset
from convlens.ml.explain import compute_cam, default_layer
from convlens.ml.imported import ImportRefused, import_model
from convlens.ml.keras_file import ModelFileRefused
from convlens.ml.saved import load_trained

CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A model made the way its owner would, outside convlens, saved as .keras and as a SavedModel."""
    root = tmp_path_factory.mktemp("outside")
    inp = keras.Input((40, 40, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    model.fit(rng.random((32, 40, 40, 3)) * 255, rng.integers(0, 2, 32), epochs=1, verbose=0)
    model.save(root / "pets.keras")
    model.export(str(root / "pets-savedmodel"), format="tf_saved_model", verbose=False)
    keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(out)).save(root / "lambda.keras")
    (root / "notes.keras").write_text("not a model")
    (root / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    model.save(root / "legacy.h5")
    return root, model


def test_import_calibrate_and_classify_by_name(outside, tmp_path):
    root, model = outside
    folder = tmp_path / "labelled"
    image_folder(folder, tuple(CLASSES), per_class=20)
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path / "home")}
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS"):
        env.pop(key, None)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], capture_output=True, text=True,
                              env=env, timeout=300)

    done = cli("models", "import", str(root / "pets.keras"), "--name", "pets", "--classes-from", str(folder),
               "--input-scale", "1", "--calibrate", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["class_names"] == CLASSES and result["input_size"] == [40, 40]
    assert result["outputs"] == "logits (softmax added)" and result["n_calibration"] == 20
    shown = json.loads(cli("models", "show", "pets", "--json").stdout)
    assert shown["ref"] == "pets:1" and shown["present"] and shown["thresholds"] and shown["n_calibration"] is None
    classify = cli("run", "classify", str(folder), "--model", "pets", "--gradcam", "--json")
    assert classify.returncode == 0, classify.stderr
    job = json.loads(classify.stdout)
    assert job["result"]["classified"] == 40 and job["result"]["evaluation"]["labelled"] == 40
    assert len(list(Path(job["result"]["overlay_dir"]).rglob("*.png"))) == 40
    # Probes on the imported model: its own conv layer, on the folder's images resized to its 40x40 input.
    probes = cli("run", "layers", "--model", "pets", "--dataset", str(folder), "--limit", "20", "--json")
    assert probes.returncode == 0, probes.stderr
    conv = next(layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert [r["layer"] for r in json.loads(probes.stdout)["result"]["rows"]] == [conv]
    unknown = cli("run", "layers", "--model", "pets", "--layer", "nope")
    assert unknown.returncode != 0 and "unknown layers nope; this model's layers: " in unknown.stderr
    assert conv in unknown.stderr and "float32" not in unknown.stderr  # layer names, not their dtype policies
    # The wrapped model gives what the owner's model gives, softmaxed (pixels /255 in, 0-255 inside).
    trained = load_trained(shown["path"])
    x = np.random.default_rng(1).integers(0, 255, (5, 40, 40, 3)).astype(np.float32)
    ours = np.asarray(trained.model(x / 255.0))
    np.testing.assert_allclose(ours, np.asarray(keras.activations.softmax(model(x))), atol=1e-5)
    assert cli("models", "import", str(root / "pets.keras"), "--name", "pets", "--classes", "a,b,c").returncode == 1


def test_grad_cam_looks_inside_the_imported_model(outside, tmp_path):
    """The wrapper's maps are the owner's model's own on the same pixels (its conv layer, its logits)."""
    root, model = outside
    done = import_model(root / "pets.keras", CLASSES, "1", tmp_path / "pets")
    wrapper = load_trained(done.path).model
    x = np.random.default_rng(3).integers(0, 255, (6, 40, 40, 3)).astype(np.float32)
    conv = next(layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert default_layer(wrapper) == conv
    ours, our_classes = compute_cam(wrapper, x / 255.0)
    theirs, their_classes = compute_cam(model, x)
    np.testing.assert_array_equal(our_classes, their_classes)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert ours.shape == (6, 40, 40) and np.ptp(ours) > 0


def test_layer_probes_look_inside_the_imported_model(outside, tmp_path):
    """The wrapper's probed features are the owner's conv layer's, pooled, on the same pixels; a probe job runs."""
    root, model = outside
    wrapper = load_trained(import_model(root / "pets.keras", CLASSES, "1", tmp_path / "pets").path).model
    conv = next(layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    x = np.random.default_rng(4).integers(0, 255, (30, 40, 40, 3)).astype(np.uint8)
    (ours,) = pooled_features(wrapper, [conv], x)
    theirs = keras.Model(model.input, keras.layers.GlobalAveragePooling2D()(model.get_layer(conv).output))
    np.testing.assert_allclose(ours, np.asarray(theirs(x.astype(np.float32))), rtol=1e-4, atol=1e-5)
    y = np.arange(30) % 2
    data = ImageDataset(x, y, x, y, CLASSES)
    rows = layer_probes(wrapper, data, train_limit=None, test_limit=None)["rows"]
    assert [r["layer"] for r in rows] == [conv] and rows[0]["features"] == 4
    with pytest.raises(ValueError, match="conv layers of this model: \\['" + conv):
        layer_probes(wrapper, data, layers=["nope"])


def test_a_savedmodel_imports_to_the_same_outputs(outside, tmp_path):
    root, model = outside
    done = import_model(root / "pets-savedmodel", CLASSES, "1", tmp_path / "sm")
    x = np.random.default_rng(2).integers(0, 255, (3, 40, 40, 3)).astype(np.float32)
    expected = np.asarray(keras.activations.softmax(model(x)))
    np.testing.assert_allclose(np.asarray(load_trained(done.path, registered=True).model(x / 255.0)), expected,
                               atol=1e-5)
    # Named by path (as a job's --model or /predict?model=PATH would): a SavedModel graph is never loaded so.
    with pytest.raises(ModelFileRefused, match="loaded only as a registered model"):
        load_trained(done.path)
    # Moved (another home, or another machine's cache): it reads the SavedModel copy beside it.
    (tmp_path / "sm").rename(tmp_path / "moved")
    moved = load_trained(tmp_path / "moved" / done.path.name, registered=True)
    np.testing.assert_allclose(np.asarray(moved.model(x / 255.0)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="hides its layers; import its .keras file instead"):
        compute_cam(moved.model, x / 255.0)


@pytest.mark.parametrize(("name", "classes", "says"), [
    ("lambda.keras", CLASSES, r"holds Python code \(a Lambda layer\)"),
    ("notes.keras", CLASSES, "not a .keras archive"),
    ("weights.pkl", CLASSES, "a pickle is not loaded"),
    ("legacy.h5", CLASSES, "legacy HDF5"),
    ("pets.keras", ["a", "b", "c"], "outputs 2 values per image, but 3 classes"),
    ("nowhere.keras", CLASSES, "file not found"),
])
def test_what_cannot_be_imported_says_why(outside, tmp_path, name, classes, says):
    root, _ = outside
    with pytest.raises(ImportRefused, match=says):
        import_model(root / name, classes, "1/255", tmp_path / "out")
    assert not (tmp_path / "out" / "model.keras").exists()
