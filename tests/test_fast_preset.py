"""The `fast` preset: registered, named layers, data-derived whitening, a short run that learns, save/load,
Grad-CAM's default layer and layer probes on it (full runs live in bench/bench_fast.py)."""

from __future__ import annotations

import numpy as np
import pytest

from convlens.ml.analysis import layer_probes
from convlens.ml.config import TrainConfig
from convlens.ml.explain import compute_cam, conv_layers, default_layer
from convlens.ml.models import get_preset, list_presets
from convlens.ml.models.fast import FLOAT32_WIDTHS, WIDTHS, default_widths, init_whitening
from convlens.ml.predict import predict_probs
from convlens.ml.saved import load_trained
from convlens.ml.train import train


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory, cifar):
    out = tmp_path_factory.mktemp("fast")
    return train(TrainConfig(preset="fast", limit=2000, epochs=3, batch_size=128, learning_rate=0.1), out,
                 data=cifar)


def test_registered_with_named_conv_layers():
    assert {"seed", "fast"} <= set(list_presets())
    model = get_preset("fast").build((32, 32, 3), 10)
    assert conv_layers(model) == ["whiten"] + [f"block{b}_conv{c}" for b in (1, 2, 3) for c in (1, 2)]
    assert model.get_layer("whiten").trainable is False
    assert model.get_layer("block2_conv2").output.shape[1:3] == (7, 7)
    assert model.output.shape[1:] == (10,)


def test_widths_follow_the_precision_training_computes_in(fast_run):
    assert default_widths("float32") == FLOAT32_WIDTHS and FLOAT32_WIDTHS < WIDTHS
    assert default_widths("mixed_bfloat16") == default_widths("mixed_float16") == WIDTHS
    model = load_trained(fast_run["paths"]["model"]).model  # trained on this machine, in its policy
    widths = tuple(model.get_layer(f"block{i}_conv1").filters for i in (1, 2, 3))
    assert widths == default_widths(fast_run["precision_policy"])


def test_whitening_decorrelates_patches(cifar):
    model = get_preset("fast").build((32, 32, 3), 10)
    init_whitening(model, cifar.x_train)
    kernel, bias = model.get_layer("whiten").get_weights()
    x = cifar.x_train[:500].astype(np.float32) / 255.0
    patches = np.lib.stride_tricks.sliding_window_view(x, (2, 2, 3), axis=(1, 2, 3)).reshape(-1, 12)
    feats = patches @ kernel.reshape(12, 24)[:, :12] + bias[:12]
    cov = np.cov(feats, rowvar=False)
    assert np.abs(feats.mean(0)).max() < 0.2
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 0.25 * np.diag(cov).mean()  # nearly uncorrelated components


def test_short_run_learns_and_reloads(fast_run, cifar):
    loss = fast_run["history"]["loss"]
    assert loss[-1] < loss[0]
    assert fast_run["metrics"]["test"]["accuracy"] > 0.2
    assert fast_run["recipe"]["optimizer"] == "sgd" and fast_run["recipe"]["tta"] == 2
    trained = load_trained(fast_run["paths"]["model"])
    assert trained.preset == "fast"
    x = cifar.x_test[:64]
    again = predict_probs(trained.model, x)
    assert again.shape == (64, 10) and np.allclose(again.sum(1), 1, atol=1e-3)


def test_gradcam_and_probes_on_fast(fast_run, cifar):
    model = load_trained(fast_run["paths"]["model"]).model
    assert default_layer(model) == "block2_conv2"
    cams, _ = compute_cam(model, cifar.x_test[:8].astype(np.float32) / 255.0)
    assert cams.shape == (8, 32, 32)
    result = layer_probes(model, cifar, layers=["block1_conv2", "block3_conv2"], train_limit=1000, test_limit=500)
    assert [r["layer"] for r in result["rows"]] == ["block1_conv2", "block3_conv2"]


def test_fast_model_loads_in_a_fresh_process(fast_run):
    """A new process (float32 global policy, nothing imported yet) loads and runs the saved fast model."""
    import subprocess
    import sys

    code = ("import numpy as np; from convlens.ml.saved import load_trained; "
            f"t = load_trained({fast_run['paths']['model']!r}); "
            "print(t.model.predict(np.zeros((2, 32, 32, 3), 'float32'), verbose=0).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(2, 10)" in proc.stdout


def test_fast_kfold_on_a_small_subset(tmp_path, cifar):
    from convlens.ml.kfold import run_fold

    cfg = TrainConfig(preset="fast", limit=600, epochs=1, batch_size=64, learning_rate=0.1)
    result = run_fold(cfg, 2, 1, tmp_path, data=cifar)
    assert result["n_test"] == 300 and result["n_val"] >= 10
