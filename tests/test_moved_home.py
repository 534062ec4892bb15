"""A CONVLENS_HOME moved to another path works in place: its registered model, its plots and its Grad-CAM
overlays are found under the new path (paths under the home are stored relative to it), and a file that is
really gone is said to be gone."""

from __future__ import annotations

import os
import shutil

import pytest

from folders import make_messy_folder
from services import ApiServer, cli_json, embedded_env

pytestmark = [pytest.mark.services, pytest.mark.cifar]


def test_a_moved_home_keeps_its_models_plots_and_overlays(tmp_path, cifar):
    old, new = tmp_path / "old-home", tmp_path / "new-home"
    env = embedded_env(old)
    folder = tmp_path / "images"
    make_messy_folder(folder, cifar, n=12)
    train = cli_json(env, "run", "train", "--preset", "fast", "--limit", "300", "--epochs", "1", "--name", "Pets",
                     timeout=600)
    assert train["status"] == "succeeded", train
    classify = cli_json(env, "run", "classify", str(folder), "--model", "pets", "--gradcam", timeout=600)
    assert classify["status"] == "succeeded" and classify["params"]["model"] == train["id"]
    shutil.move(old, new)

    env["CONVLENS_HOME"] = str(new)
    model = cli_json(env, "models", "show", "pets:1")
    assert model["job_id"] == train["id"] and model["path"].startswith(str(new)) and model["present"]
    again = cli_json(env, "run", "classify", str(folder), "--model", "pets:1",
                     timeout=600)
    assert again["status"] == "succeeded", again
    shown = cli_json(env, "jobs", "show", train["id"])
    assert shown["result"]["paths"]["model"] == model["path"]  # shown under the home it is in now
    rows = cli_json(env, "results", "predictions", classify["id"])
    overlays = [r["overlay"] for r in rows if r["overlay"]]
    assert overlays and all(o.startswith(str(new)) and os.path.isfile(o) for o in overlays)

    api = ApiServer(env, tmp_path)
    try:
        http = api.client(api.token)
        arts = {a["kind"]: a["key"] for a in http.get(f"/jobs/{train['id']}").json()["artifacts"]}
        for kind in ("history_plot", "confusion_plot", "model"):
            assert http.get(f"/artifacts/{arts[kind]}").status_code == 200, kind
        first = http.get(f"/jobs/{classify['id']}/predictions").json()["predictions"]
        with_overlay = next(p for p in first if p["overlay"])
        assert http.get(f"/ui/jobs/{classify['id']}/overlays/{with_overlay['id']}").status_code == 200
        (new / "runs" / train["id"] / "confusion.png").unlink()  # really gone: said so, in one line
        gone = http.get(f"/artifacts/{arts['confusion_plot']}")
        assert gone.status_code == 404 and "file not found" in gone.json()["detail"]["message"]
    finally:
        api.stop()
