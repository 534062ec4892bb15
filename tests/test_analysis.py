"""Layer probes, k-fold and bulk classification on real data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convlens.ml.analysis import layer_probes
from convlens.ml.classify import SetOptions, classify_files
from convlens.ml.config import TrainConfig
from convlens.ml.kfold import aggregate_folds, fold_dataset, run_fold
from convlens.ml.listing import list_folder, shard_files
from folders import make_messy_folder


def test_layer_probes(tmp_path, trained, cifar):
    result = layer_probes(trained["model"].model, cifar, train_limit=3000, test_limit=2000, out_dir=tmp_path)
    rows = {r["layer"]: r for r in result["rows"]}
    assert list(rows) == ["conv1", "conv2", "conv3"]
    assert rows["conv3"]["probe_accuracy"] > rows["conv1"]["probe_accuracy"]
    assert [r["cumulative_layers"] for r in result["rows"]] == ["conv1", "conv1+conv2", "conv1+conv2+conv3"]
    assert rows["conv3"]["cumulative_features"] == 32 + 64 + 128 and rows["conv2"]["features"] == 64
    assert (tmp_path / "layers.png").is_file() and result["n_train"] == 3000


def test_kfold_folds_and_aggregate(tmp_path, cifar):
    cfg = TrainConfig(limit=1500, epochs=1, batch_size=64, patience=0)
    held = [fold_dataset(cfg, 3, f, cifar) for f in range(3)]
    keys = [{x.tobytes() for x in h.x_test} for h in held]
    assert sum(len(k) for k in keys) == 1500 and not (keys[0] & keys[1])  # each image scored once
    results = [run_fold(cfg, 3, f, tmp_path / f"f{f}", data=cifar) for f in range(3)]
    assert [r["n_test"] for r in results] == [500, 500, 500]
    agg = aggregate_folds(results)
    acc = [r["metrics"]["test"]["accuracy"] for r in results]
    assert agg["folds"] == 3 and np.isclose(agg["metrics"]["accuracy"]["mean"], np.mean(acc))
    assert np.isclose(agg["metrics"]["accuracy"]["std"], np.std(acc, ddof=1))  # the sample s.d. over the folds
    assert "f1:cat" in agg["metrics"] and "macro_f1" in agg["metrics"]
    # Each fold calibrated conformal sets on its own held-back images and reports their coverage.
    cov = [r["conformal"]["aps"]["marginal"]["coverage"] for r in results]
    assert np.isclose(agg["metrics"]["coverage_aps"]["mean"], np.mean(cov))
    assert len(agg["metrics"]["coverage_lac"]["values"]) == 3
    assert cfg.seed == 0 and results[1]["config"]["seed"] == 1


def test_classify_messy_folder(tmp_path, trained, cifar):
    n, bad = make_messy_folder(tmp_path / "in", cifar)
    files = list_folder(tmp_path / "in")
    rows = classify_files(trained["model"], files, top_k=3, gradcam=True, out_dir=tmp_path / "ov", batch_size=16)
    assert [r["path"] for r in rows] == [str(f) for f in files]  # every file once, in order
    errors = {r["path"].rsplit("/", 1)[1] for r in rows if r["error"]}
    assert errors == bad
    good = [r for r in rows if not r["error"]]
    assert len(good) == n
    for r in good:
        assert r["predicted"] == r["top_k"][0][0] and len(r["top_k"]) == 3
        assert r["confidence"] >= r["top_k"][1][1] and r["decision"] in trained["model"].class_names + ["uncertain"]
        assert Image.open(r["overlay"]).size in ((32, 32), (96, 64))
    correct = np.mean([r["predicted"] == r["true_label"] for r in good])
    assert correct > 0.2  # the small model beats chance on real images
    assert all(r["prediction_set"] is None for r in good)  # no sets unless asked for


def test_classify_with_conformal_sets(tmp_path, trained, cifar):
    n, _ = make_messy_folder(tmp_path / "in", cifar, n=60)
    files = list_folder(tmp_path / "in")
    model = trained["model"]
    options = SetOptions(alpha=0.1, method="aps", decide=True)
    rows = [r for r in classify_files(model, files, conformal=options, batch_size=16) if not r["error"]]
    again = [r for r in classify_files(model, files, conformal=options, batch_size=7) if not r["error"]]
    assert [r["prediction_set"] for r in rows] == [r["prediction_set"] for r in again]  # fixed per file
    for r in rows:
        members = r["prediction_set"]
        assert set(members) <= set(model.class_names)
        assert r["decision"] == (members[0] if len(members) == 1 else "uncertain")
        if len(members) <= 3:  # an APS set is the most probable classes, taken in order
            assert set(members) == {c for c, _ in r["top_k"][:len(members)]}
    lac = classify_files(model, files, conformal=SetOptions(alpha=0.1, method="lac"), batch_size=16)
    sizes = [len(r["prediction_set"]) for r in lac if not r["error"]]
    assert len(sizes) == n and 1 < np.mean(sizes) < 10  # a weak model: sets of a few classes


def test_shards_cover_every_file_once(tmp_path):
    files = [tmp_path / f"{i:04d}.png" for i in range(103)]
    shards = shard_files(list(reversed(files)), 7)
    assert len(shards) == 7 and sorted(f for s in shards for f in s) == sorted(files)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard_files(files, 7) == shards  # deterministic whatever the input order
    assert shard_files(files[:2], 5) == [[files[0]], [files[1]]]


def test_labelled_folder_evaluation_equals_scikit_learn(tmp_path, trained, cifar):
    """Counts summed over batches (as over shards) give the figures scikit-learn computes on all rows."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    from convlens.ml.calibration import calibration_metrics
    from convlens.ml.folder_eval import evaluate
    from convlens.ml.predict import predict_probs

    n, _ = make_messy_folder(tmp_path / "in", cifar, n=80)
    model, names = trained["model"], trained["model"].class_names
    tallies = []
    rows = classify_files(model, list_folder(tmp_path / "in"), top_k=3, batch_size=16, on_labelled=tallies.append,
                          conformal=SetOptions(alpha=0.1, method="lac"))
    ev = evaluate(sum(tallies[1:], tallies[0]))
    good = [r for r in rows if not r["error"]]
    y = np.array([names.index(r["true_label"]) for r in good])
    pred = np.array([names.index(r["predicted"]) for r in good])
    assert ev.labelled == n == len(good) and len(tallies) > 3
    assert ev.accuracy == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert ev.macro.f1 == pytest.approx(f1_score(y, pred, average="macro", labels=range(10), zero_division=0),
                                        abs=1e-12)
    assert ev.confusion_matrix == confusion_matrix(y, pred, labels=range(10)).tolist()
    assert ev.top_k_accuracy == pytest.approx(np.mean([r["true_label"] in [c for c, _ in r["top_k"]] for r in good]))
    assert ev.coverage == pytest.approx(np.mean([r["true_label"] in r["prediction_set"] for r in good]))
    assert ev.mean_set_size == pytest.approx(np.mean([len(r["prediction_set"]) for r in good]))
    # ECE after the temperature from the rows' confidences (only the top class counts), before it from the model.
    spread = np.full((len(good), 10), 0.0)
    spread[np.arange(len(good)), pred] = [r["confidence"] for r in good]
    assert ev.ece_after == pytest.approx(calibration_metrics(spread, y)["ece"], abs=1e-6)
    images = np.stack([np.asarray(Image.open(r["path"]).convert("RGB").resize((32, 32), Image.BILINEAR))
                       for r in good])
    raw = predict_probs(model.model, images)
    assert ev.ece_before == pytest.approx(calibration_metrics(raw, y)["ece"], abs=0.02)
