"""Jobs run inline (`convlens run`) on tiny synthetic folders: the same steps the workers take, no services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import image_folder, saved_model


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVLENS_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_train_then_classify_inline_and_query_as_json(tmp_path):
    data, images = tmp_path / "data", tmp_path / "images"
    image_folder(data, per_class=20)
    n = image_folder(images, per_class=6, seed=1)
    (images / "cat" / "broken.png").write_bytes(b"not a png")
    run = _cli(tmp_path, "run", "train", "--dataset", str(data), "--epochs", "1", "--batch-size", "8",
               "--val-fraction", "0.25", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    job = json.loads(run.stdout)
    r = job["result"]
    assert job["status"] == "succeeded" and r["n_train"] + r["n_val"] + r["n_test"] == 40 and r["n_val"] > 0
    assert Path(job["result"]["paths"]["model"]).is_file()
    cls = _cli(tmp_path, "run", "classify", str(images), "--model", job["id"], "--shard-size", "5", "--json")
    assert cls.returncode == 0, cls.stderr[-2000:]
    done = json.loads(cls.stdout)
    assert done["result"]["files"] == n + 1 and done["result"]["unreadable"] == 1 and done["result"]["shards"] == 3
    assert [c["status"] for c in done["children"]] == ["succeeded"] * 3
    # the parent's progress counts files: summed from the parts' sizes as each part ended
    assert (done["progress"]["done"], done["progress"]["total"]) == (n + 1, n + 1)
    preds = json.loads(_cli(tmp_path, "results", "predictions", done["id"], "--json").stdout)
    assert [p["path"] for p in preds] == [str(p) for p in sorted(images.rglob("*.png"))]  # the listing's order
    assert [p["error"] for p in preds if p["error"]] and all(p["error"] is None or "broken" in p["path"] for p in preds)
    metrics = json.loads(_cli(tmp_path, "results", "metrics", job["id"], "--json").stdout)
    # With the seed preset's flip TTA the averaged views' figures are kept beside the single pass's (the test's).
    assert r["tta_used"] == 1
    assert {m["split"] for m in metrics} == {"test", "test_tta", "validation", "test_thresholded", "calibration"}
    tta = [m["value"] for m in metrics if m["split"] == "test_tta" and m["name"] == "accuracy"]
    assert tta == [r["tta_accuracy"]]
    one_pass = [m["value"] for m in metrics if m["split"] == "test" and m["name"] == "accuracy"]
    assert one_pass == [r["accuracy"]]
    shown = _cli(tmp_path, "jobs", "show", job["id"])
    assert "test accuracy" in shown.stdout and "model:" in shown.stdout
    assert f"is one pass (what classify, predict and the export give); averaging each image and its mirror: " \
           f"{r['tta_accuracy']:.4f}" in shown.stdout
    listed = json.loads(_cli(tmp_path, "jobs", "list", "--json").stdout)
    assert [j["kind"] for j in listed] == ["classify", "train"]


def test_a_model_path_and_bad_options_from_the_cli(tmp_path):
    images = tmp_path / "images"
    image_folder(images, per_class=3)
    model = saved_model(tmp_path / "m" / "model.keras", ["cat", "dog"])
    out = _cli(tmp_path, "run", "classify", str(images), "--model", str(model), "--top-k", "2", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["result"]["classified"] == 6
    bad = _cli(tmp_path, "run", "classify", str(tmp_path / "nowhere"), "--model", str(model))
    assert bad.returncode == 2 and "not a folder" in bad.stderr
    bad = _cli(tmp_path, "run", "kfold", "--folds", "1")
    assert bad.returncode == 2 and "folds" in bad.stderr


def test_kfold_inline_reports_its_folds_without_tensorflow_noise(tmp_path):
    """Each fold builds a fresh model in the one process: TensorFlow's retracing warning is expected there and
    filtered (ml/__init__.py), so the user reads progress and the result, not four paragraphs of advice."""
    data = tmp_path / "data"
    image_folder(data, per_class=20)
    run = _cli(tmp_path, "run", "kfold", "--dataset", str(data), "--folds", "3", "--epochs", "1", "--batch-size", "8",
               "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    assert [c["status"] for c in json.loads(run.stdout)["children"]] == ["succeeded"] * 3
    assert "retracing" not in run.stderr
