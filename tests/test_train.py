"""The seed model, training, evaluation, thresholds, resume and the `convlens run train` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from convlens.ml.calibration import apply_temperature, calibration_metrics, fit_temperature
from convlens.ml.config import TrainConfig
from convlens.ml.evaluate import classification_metrics
from convlens.ml.models import get_preset
from convlens.ml.predict import predict_probs
from convlens.ml.prepare import prepare_data
from convlens.ml.thresholds import thresholded_predictions, tune_thresholds
from convlens.ml.train import steps_per_call, train


def test_seed_is_the_reference_cnn():
    model = get_preset("seed").build((32, 32, 3), 10)
    names = [layer.name for layer in model.layers]
    assert names == ["image", "conv1", "pool1", "conv2", "pool2", "conv3", "flatten", "dense1", "dropout", "output"]
    params = {layer.name: layer.count_params() for layer in model.layers if layer.count_params()}
    assert params == {"conv1": 896, "conv2": 18496, "conv3": 73856, "dense1": 262272, "output": 1290}
    assert model.get_layer("conv3").output.shape[1:] == (4, 4, 128)


def test_seed_starts_from_whitened_patches_and_learns_faster(cifar):
    """conv1 starts as whitened 3x3 patch components (centred, decorrelated, each with its negative); the same
    reference net from that start learns more in one short epoch than from Keras' own initialisation."""
    policy = keras.mixed_precision.global_policy()  # earlier runs in this process may have set bf16
    keras.mixed_precision.set_global_policy("float32")
    try:
        _whitened_start_learns_faster(cifar)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _whitened_start_learns_faster(cifar) -> None:
    preset = get_preset("seed")
    x = cifar.x_train[-2000:].astype(np.float32) / 255.0
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3, 3), axis=(1, 2, 3)).reshape(-1, 27)
    models = {}
    for start in ("keras", "whitened"):
        keras.utils.set_random_seed(0)
        models[start] = preset.build((32, 32, 3), 10)
        if start == "whitened":
            preset.init_from_data(models[start], cifar.x_train)
    kernel, bias = models["whitened"].get_layer("conv1").get_weights()
    assert np.array_equal(kernel[..., 16:], -kernel[..., :16]) and np.array_equal(bias[16:], -bias[:16])
    feats = patches @ kernel.reshape(27, 32)[:, :16] + bias[:16]
    assert np.abs(feats.mean(0)).max() < 0.05 * feats.std(0).max()

    def most_correlated(v: np.ndarray) -> float:
        corr = np.corrcoef(v, rowvar=False)
        return float(np.abs(corr - np.eye(len(corr))).max())

    assert most_correlated(patches) > 0.9 and most_correlated(feats) < 0.2  # pixels correlate, components hardly
    x_train, y_train = cifar.x_train[:8000] / 255.0, keras.utils.to_categorical(cifar.y_train[:8000], 10)
    x_test, y_test = cifar.x_test[:2000] / 255.0, keras.utils.to_categorical(cifar.y_test[:2000], 10)
    accuracy = {}
    for start, model in models.items():
        keras.utils.set_random_seed(0)
        model.compile(keras.optimizers.Adam(3e-3), "categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, batch_size=64, epochs=1, shuffle=False, verbose=0)
        accuracy[start] = model.evaluate(x_test, y_test, verbose=0)[1]
    assert accuracy["whitened"] > accuracy["keras"] + 0.05, accuracy  # float32: 0.59 against 0.46 on the EPYC


def test_whitening_one_colour_images_gives_finite_filters():
    from convlens.ml.models.whitening import whitening_filters

    kernel, bias = whitening_filters(np.full((20, 32, 32, 3), 128, np.uint8), 3, components=16)
    assert kernel.shape == (3, 3, 3, 32) and np.isfinite(kernel).all() and np.isfinite(bias).all()


def test_short_training_beats_chance_and_writes_outputs(trained):
    r = trained["result"]
    assert r["metrics"]["test"]["accuracy"] > 0.35  # chance is 0.10
    # The validation tenth is halved: early stopping, temperature and thresholds; conformal calibration.
    assert r["n_train"] == 9000 and r["n_val"] == r["n_cal"] == 500 and r["n_test"] == 10_000
    for key in ("model", "result", "history_plot", "confusion_plot", "reliability_plot"):
        assert os.path.getsize(r["paths"][key]) > 0
    assert json.loads(open(r["paths"]["result"]).read())["metrics"]["test"]["accuracy"] == \
        r["metrics"]["test"]["accuracy"]
    assert r["class_weights"] is not None and len(r["history"]["val_loss"]) == r["epochs_run"]


def tensorboard_scalars(log_dir: Path, tag: str) -> dict[int, float]:
    """What `tensorboard --logdir` shows: the scalar `tag` per epoch, read back by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "scalars": 0})
    board.Reload()
    import tensorflow as tf

    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in board.Tensors(tag)}


def test_tensorboard_event_files_hold_every_epoch(trained):
    r = trained["result"]
    logs = Path(r["paths"]["model"]).parent / "tensorboard"
    train_loss = tensorboard_scalars(logs / "train", "epoch_loss")
    val_loss = tensorboard_scalars(logs / "validation", "epoch_loss")
    assert sorted(train_loss) == list(range(r["epochs_run"]))
    assert [round(train_loss[i], 4) for i in sorted(train_loss)] == [round(v, 4) for v in r["history"]["loss"]]
    assert [round(val_loss[i], 4) for i in sorted(val_loss)] == [round(v, 4) for v in r["history"]["val_loss"]]


def test_metrics_equal_scikit_learn(trained, cifar):
    model = trained["model"]
    idx = np.random.default_rng(0).choice(10_000, 2000, replace=False)  # the test set is class-ordered
    probs = predict_probs(model.model, cifar.x_test[idx])
    y, pred = cifar.y_test[idx], probs.argmax(1)
    m = classification_metrics(y, pred, model.class_names, probs)
    assert m["accuracy"] == pytest.approx(float(np.mean(pred == y)))
    assert m["macro"]["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["weighted"]["precision"] == pytest.approx(precision_score(y, pred, average="weighted", zero_division=0))
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (y, pred), 1)
    assert m["confusion_matrix"] == cm.tolist()
    cat = model.class_names.index("cat")
    assert m["per_class"]["cat"]["recall"] == pytest.approx(recall_score(y == cat, pred == cat))
    top3 = np.mean([t in np.argsort(-p)[:3] for t, p in zip(y, probs, strict=True)])
    assert m["top3_accuracy"] == pytest.approx(top3)


def test_thresholds_come_from_the_validation_split(trained, cifar):
    r, model = trained["result"], trained["model"]
    cfg = TrainConfig(**{k: v for k, v in r["config"].items()})
    prep = prepare_data(cfg, cifar)
    # The stored temperature and thresholds are exactly those fitted on the validation half's probabilities,
    # the temperature kept only where it lowers ECE on the held-out calibration half (and said when not). They
    # come from the plain view, the single forward pass that classify and predict make, although the run
    # averaged the flipped view into its test accuracy.
    assert r["tta_used"] == 1
    raw_val, raw_cal = (predict_probs(model.model, x) for x in (prep.x_val, prep.x_cal))
    fitted = fit_temperature(raw_val, prep.y_val)
    kept = (calibration_metrics(apply_temperature(raw_cal, fitted), prep.y_cal)["ece"]
            < calibration_metrics(raw_cal, prep.y_cal)["ece"])
    assert model.temperature == pytest.approx(fitted if kept else 1.0, rel=1e-3)
    assert any("did not lower ECE" in w for w in r["warnings"]) is not kept
    val_probs = apply_temperature(raw_val, model.temperature)
    assert np.allclose(tune_thresholds(prep.y_val, val_probs), model.thresholds, atol=1e-3)
    # The conformal calibration half is disjoint from it, and its labels are the ones the model kept.
    assert model.calibration.labels == prep.y_cal.tolist()
    assert not {x.tobytes() for x in prep.x_cal} & {x.tobytes() for x in prep.x_val}
    # ...and the validation split shares no image with the test set.
    val_keys = {x.tobytes() for x in prep.x_val}
    assert not any(x.tobytes() in val_keys for x in cifar.x_test[:2000])
    plain = predict_probs(model.model, cifar.x_test)
    test_probs = apply_temperature(plain, model.temperature)
    thr_acc = float(np.mean(thresholded_predictions(test_probs, model.thresholds) == cifar.y_test))
    assert thr_acc == pytest.approx(r["metrics"]["test_thresholded"]["accuracy"], abs=2e-3)
    # The test accuracy is the single pass, the model's one accuracy; the averaged views' is reported beside it.
    flipped = predict_probs(model.model, cifar.x_test, tta=1, plain=plain)
    for key, probs in (("test", plain), ("test_tta", flipped)):
        assert float(np.mean(probs.argmax(1) == cifar.y_test)) == pytest.approx(r["metrics"][key]["accuracy"],
                                                                                abs=2e-3)


class Stop(Exception):
    pass


def test_resume_after_a_stop(tmp_path, cifar):
    cfg = TrainConfig(limit=1000, epochs=3, batch_size=64, patience=0)

    def stop_after_first_epoch(event):
        if event.stage == "epoch" and event.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(cfg, tmp_path, progress=stop_after_first_epoch, data=cifar)
    assert (tmp_path / "checkpoint.keras").is_file()
    import keras

    keras.models.load_model(tmp_path / "checkpoint.keras")  # the checkpoint loads on its own
    epochs_seen = []
    result = train(cfg, tmp_path, progress=lambda e: epochs_seen.append(e.epoch), data=cifar)
    assert min(e for e in epochs_seen if e) == 2  # continued, not restarted
    assert result["epochs_run"] == 3 and len(result["history"]["loss"]) == 3
    assert not (tmp_path / "checkpoint.keras").exists()


def test_several_steps_per_call_train_the_same_model(tmp_path, cifar):
    """steps_per_execution > 1 (fewer Python round trips per step) changes how often callbacks run, not what is
    learned: one seed gives the very same weights (the random augmentation runs in the compiled step, so its draws
    follow the steps, not tf.data's threads), the same steps, and progress still arrives."""
    runs, weights = {}, {}
    for name, spe, augment in (("1", 1, True), ("8", 8, True), ("8 again", 8, True), ("no augment", 8, False)):
        events = []
        runs[name] = train(TrainConfig(limit=3000, epochs=2, batch_size=60, patience=0, steps_per_execution=spe,
                                       augment=augment), tmp_path / name.replace(" ", "-"), progress=events.append,
                           data=cifar)
        assert sum(e.stage == "train" for e in events) >= 2 and sum(e.stage == "epoch" for e in events) == 2
        model = keras.models.load_model(tmp_path / name.replace(" ", "-") / "model.keras")
        weights[name] = np.concatenate([w.ravel() for w in model.get_weights()])
    steps = -(-runs["8"]["n_train"] // 60)
    # The largest divisor of the epoch's steps up to 8: Keras would run extra steps to finish a last call.
    assert runs["8"]["recipe"]["steps_per_execution"] == steps_per_call(steps, 8) > 1
    assert runs["1"]["steps_run"] == runs["8"]["steps_run"] == 2 * steps
    assert np.array_equal(weights["1"], weights["8"]) and np.array_equal(weights["8"], weights["8 again"])
    assert runs["1"]["metrics"]["test"]["accuracy"] == runs["8 again"]["metrics"]["test"]["accuracy"]
    assert not np.allclose(weights["8"], weights["no augment"], atol=1e-3)  # the flips did run, in the step


@pytest.mark.cifar  # reads CIFAR-10 itself, in the CLI's process
def test_cli_run_train_json(tmp_path):
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", "run", "train", "--limit", "500", "--epochs", "1",
                           "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded" and doc["kind"] == "train"
    assert 0.0 < doc["result"]["accuracy"] <= 1.0
    assert (tmp_path / "convlens.db").is_file()


def test_cli_rejects_bad_options(tmp_path):
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", "run", "train", "--preset", "nope", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "preset: Input should be 'seed' or 'fast'" in proc.stderr


def test_time_budget_stops_training_on_the_clock(tmp_path, cifar):
    """With a budget, the clock (not the epoch count) ends training, leaving time for the evaluation."""
    cfg = TrainConfig(preset="seed", limit=2000, epochs=200, batch_size=64, schedule="warmup_linear",
                      warmup_fraction=0.1, time_budget_s=40, val_fraction=0.1)
    result = train(cfg, tmp_path, data=cifar)
    assert 1 <= result["epochs_run"] < 200
    assert result["timings"]["fit_s"] < 40
    assert result["timings"]["total_s"] < 40 + 30  # evaluation is estimated, not exact
    t = result["timings"]  # where the budget went, part by part
    assert 0 < t["evaluate_s"] and 0 < t["report_s"] and t["fit_s"] + t["evaluate_s"] + t["report_s"] <= t["total_s"]
    # Says how much training the clock allowed when it fails (it once measured chance-level accuracy in CI).
    assert result["metrics"]["test"]["accuracy"] > 0.15, {k: result.get(k) for k in (
        "epochs_run", "steps_run", "timings", "history")}
    assert result["epochs_trained"] == round(result["steps_run"] / 29, 2)
    assert not [w for w in result["warnings"] if "time budget" in w]
    # 2,000 images leave 100 for conformal calibration: the result says that its coverage is noisy.
    assert result["n_cal"] == 100 and any("rests on 100 calibration images" in w for w in result["warnings"])


def test_a_budget_too_short_for_one_epoch_says_so(tmp_path, cifar):
    """The clock floors training at 1 s, which is a fraction of this 141-step epoch on any CPU."""
    cfg = TrainConfig(preset="seed", limit=10000, epochs=5, batch_size=64, time_budget_s=5, val_fraction=0.1)
    result = train(cfg, tmp_path, data=cifar)
    assert result["epochs_run"] == 1 and 0 < result["epochs_trained"] < 1
    assert len([w for w in result["warnings"] if "raise the time budget" in w]) == 1
    assert not [w for w in result["warnings"] if "calibration images (under" in w]  # 500 of them: enough


def test_the_evaluation_level_follows_the_rate_the_evaluation_measured():
    """50 s of a 100 s budget are left: at 100 images/s the shifted views (5,500 passes to go) do not fit."""
    from convlens.ml.callbacks import TrainingClock

    clock = TrainingClock(100, budget_s=100, spent_s=50, eval_images=(1000, 2000, 6000), margin_s=0)
    assert clock.affordable_level(rate=100, done_images=500) == 1
    assert clock.affordable_level(rate=1000, done_images=500) == 2
    assert clock.affordable_level(rate=1, done_images=500) == 0
    assert TrainingClock(100, eval_images=(1000, 2000, 6000)).affordable_level(rate=1, done_images=0) == 2
