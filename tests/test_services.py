"""The job system end to end against real services: PostgreSQL, Redis, Celery worker processes, the CLI and
the HTTP API. Two workers share the queues; jobs are submitted through `convlens submit` and over HTTP."""

from __future__ import annotations

import csv
import io
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import services
from conftest import DATA_DIR
from convlens.db.models import Job, Metric, Prediction, TrainedModelRow
from convlens.db.session import session_scope
from folders import make_messy_folder
from services import ApiServer, Worker, cli, cli_json, create_pg_database, drop_pg_database, free_redis_db, wait_for

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, cifar):
    home = tmp_path_factory.mktemp("cluster-home")
    images = tmp_path_factory.mktemp("allowed")
    pg = create_pg_database()
    broker = free_redis_db()
    env = {**os.environ, "CONVLENS_HOME": str(home), "CONVLENS_DATABASE_URL": pg, "CONVLENS_BROKER_URL": broker,
           "CONVLENS_DATA_DIR": str(DATA_DIR), "CONVLENS_ALLOWED_ROOTS": str(images)}
    refused = cli(env, "jobs", "list", check=False)
    assert refused.returncode == 2 and "convlens db upgrade" in refused.stderr  # behind: refuses to run
    cli(env, "db", "upgrade")
    workers = [Worker(env, f"w{i}@convlens-test", home) for i in (1, 2)]
    try:
        for w in workers:
            w.wait_ready()
        train = cli_json(env, "submit", "train", "--limit", "2000", "--epochs", "3", "--batch-size", "64", "--wait")
        assert train["status"] == "succeeded", train
        yield {"env": env, "pg": pg, "home": home, "images": images, "workers": workers, "train": train,
               "cifar": cifar}
    finally:
        for w in workers:
            w.stop()
        services.release_redis_db(broker)
        drop_pg_database(pg)


def count(url: str, stmt) -> int:
    with session_scope(url) as s:
        return s.scalar(stmt)


def test_train_job_recorded(cluster):
    train, pg = cluster["train"], cluster["pg"]
    assert train["worker"] in {w.name for w in cluster["workers"]}
    assert 0.2 < train["result"]["accuracy"] <= 1
    models = select(func.count()).select_from(TrainedModelRow).where(TrainedModelRow.job_id == train["id"])
    assert count(pg, models) == 1
    # one accuracy row per split: test, test_tta (flip TTA), validation, thresholded
    assert count(pg, select(func.count()).select_from(Metric).where(Metric.job_id == train["id"],
                                                                     Metric.name == "accuracy")) == 4
    out = cli(cluster["env"], "results", "metrics", train["id"], "--csv").stdout
    assert out.splitlines()[0] == "split,fold,class,name,value" and ",accuracy," in out
    assert "calibration,,,coverage_aps," in out and "calibration,,,ece_after," in out
    conformal = train["result"]["conformal"]
    assert conformal["alpha"] == 0.1 and conformal["n_calibration"] == 100
    assert train["result"]["temperature"] > 0 and train["result"]["calibration"]["after"]["ece"] >= 0


def test_kfold_runs_folds_on_both_workers(cluster):
    job = cli_json(cluster["env"], "submit", "kfold", "--folds", "4", "--limit", "1600", "--epochs", "1",
                   "--batch-size", "64", "--wait", timeout=900)
    assert job["status"] == "succeeded", job
    assert [c["part"] for c in job["children"]] == [0, 1, 2, 3]
    assert {c["worker"] for c in job["children"]} == {w.name for w in cluster["workers"]}
    assert job["result"]["folds"] == 4 and len(job["result"]["metrics"]["accuracy"]["values"]) == 4
    pg = cluster["pg"]
    per_fold = count(pg, select(func.count(func.distinct(Metric.fold))).where(Metric.job_id == job["id"]))
    assert per_fold == 4
    assert count(pg, select(func.count()).select_from(Metric).where(
        Metric.job_id == job["id"], Metric.name == "accuracy_mean")) == 1
    assert len(job["result"]["metrics"]["coverage_aps"]["values"]) == 4  # each fold's conformal coverage


def test_classify_folder_with_bad_files(cluster):
    folder = cluster["images"] / "messy"
    n, bad = make_messy_folder(folder, cluster["cifar"], n=60)
    job = cli_json(cluster["env"], "submit", "classify", str(folder), "--model", cluster["train"]["id"],
                   "--gradcam", "--shard-size", "13", "--decision", "conformal", "--conformal", "lac", "--wait")
    assert job["status"] == "succeeded", job
    assert job["result"]["classified"] == n and job["result"]["unreadable"] == len(bad)
    assert job["result"]["shards"] == 5
    pg = cluster["pg"]
    with session_scope(pg) as s:
        paths = s.scalars(select(Prediction.path).where(Prediction.job_id == job["id"])).all()
        errors = s.scalars(select(Prediction.path).where(Prediction.job_id == job["id"],
                                                         Prediction.error.is_not(None))).all()
        counted = dict(s.execute(select(Prediction.predicted, func.count())
                                 .where(Prediction.job_id == job["id"], Prediction.error.is_(None))
                                 .group_by(Prediction.predicted)).all())
        labelled = s.execute(select(Prediction.predicted, Prediction.true_label).where(
            Prediction.job_id == job["id"], Prediction.true_label.is_not(None))).all()
    # Counts per class are summed from the shards' own results: they equal the stored rows'.
    assert job["result"]["per_class"] == dict(sorted(counted.items())) and sum(counted.values()) == n
    # So is the evaluation on the labelled images, summed over 5 shards on two workers.
    ev = job["result"]["evaluation"]
    assert ev["labelled"] == len(labelled) == n and sum(map(sum, ev["confusion_matrix"])) == n
    assert ev["accuracy"] == sum(p == t for p, t in labelled) / n
    readable = [r for r in cli_json(cluster["env"], "results", "predictions", job["id"]) if not r["error"]]
    assert ev["coverage"] == pytest.approx(sum(r["true_label"] in r["prediction_set"] for r in readable) / n)
    cats = cli_json(cluster["env"], "results", "predictions", job["id"], "--true-label", "cat")
    assert len(cats) == ev["per_class"]["cat"]["support"] and all(r["true_label"] == "cat" for r in cats)
    shown = cli(cluster["env"], "jobs", "show", job["id"]).stdout
    assert f"on the {n} labelled images: accuracy {ev['accuracy']:.4f}" in shown and "confusion matrix" in shown
    assert len(list(Path(job["result"]["overlay_dir"]).glob("*.png"))) == n
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    assert sorted(paths) == files  # every file exactly once
    assert {Path(p).name for p in errors} == bad
    out = cli(cluster["env"], "results", "predictions", job["id"], "--misclassified", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and all(r["predicted"] != r["true_label"] for r in rows)
    # Every readable file has its conformal set; the decision is its one class or "uncertain".
    sized = {k: int(v) for k, v in job["result"]["set_sizes"].items()}
    assert sum(sized.values()) == n
    for size, expected in sized.items():
        got = cli_json(cluster["env"], "results", "predictions", job["id"], "--set-size", size)
        assert len(got) == expected and all(len(p["prediction_set"]) == int(size) for p in got)
        assert all(p["decision"] == (p["prediction_set"][0] if size == "1" else "uncertain") for p in got)
    listed = [p["path"] for p in cli_json(cluster["env"], "results", "predictions", job["id"])]
    # The listing's order (sorted by path parts), though the shards were stored in whatever order they finished.
    assert listed == [str(p) for p in sorted(Path(f) for f in files)]
    wide = cli_json(cluster["env"], "results", "predictions", job["id"], "--min-set-size", "2")
    assert len(wide) == sum(v for k, v in sized.items() if int(k) >= 2)



def _pool_child_running(worker: Worker):
    kids = worker.pool_children()
    return kids[0] if kids else None


def test_worker_killed_mid_task_loses_nothing(cluster):
    env, pg = cluster["env"], cluster["pg"]
    job_id = cli(env, "submit", "train", "--limit", "6000", "--epochs", "4", "--batch-size", "64",
                 "--patience", "0").stdout.strip()

    def running_epoch_2():
        with session_scope(pg) as s:
            job = s.get(Job, job_id)
            return job if job.status == "running" and (job.progress or {}).get("epoch", 0) >= 2 else None

    job = wait_for(running_epoch_2, 300, what="training to reach epoch 2")
    victim = next(w for w in cluster["workers"] if w.name == job.worker)
    child = _pool_child_running(victim)
    child.send_signal(signal.SIGKILL)  # kill -9 of the process running the task
    done = cli_json(env, "jobs", "wait", job_id, timeout=600)
    assert done["status"] == "succeeded", done
    assert count(pg, select(func.count()).select_from(TrainedModelRow).where(TrainedModelRow.job_id == job_id)) == 1
    # one accuracy row per split: test, test_tta (flip TTA), validation, thresholded
    assert count(pg, select(func.count()).select_from(Metric).where(Metric.job_id == job_id,
                                                                     Metric.name == "accuracy")) == 4
    assert len(done["result"]["history"]["loss"]) == 4  # resumed from its checkpoint, no epoch twice
    log = victim.log.read_text()
    assert "WorkerLostError" in log or "exited prematurely" in log


def test_cancel(cluster):
    env, pg = cluster["env"], cluster["pg"]
    job_id = cli(env, "submit", "train", "--limit", "10000", "--epochs", "30", "--patience", "0").stdout.strip()
    wait_for(lambda: count(pg, select(func.count()).select_from(Job).where(Job.id == job_id,
                                                                            Job.status == "running")), 120,
             what="job to start")
    assert "cancelled" in cli(env, "jobs", "cancel", job_id).stdout
    time.sleep(3)
    job = cli_json(env, "jobs", "show", job_id)
    assert job["status"] == "cancelled"
    assert not job["result"]
    # Both workers are still alive and take new work.
    assert all(w.proc.poll() is None for w in cluster["workers"])


@pytest.fixture(scope="module")
def http(cluster, tmp_path_factory):
    server = ApiServer(cluster["env"], tmp_path_factory.mktemp("api"))
    assert server.token, server.output  # the first start made an admin token and printed its login URL
    yield server.client(server.token)
    server.stop()


def test_http_validation_and_roots(http, cluster, tmp_path):
    r = http.post("/jobs", json={"kind": "paint", "params": {}})
    assert r.status_code == 422 and "kind" in r.text
    r = http.post("/jobs", json={"kind": "train", "params": {"epochs": "many", "colour": 1}})
    assert r.status_code == 422
    msg = r.json()["detail"]["message"]
    assert "epochs" in msg and "colour" in msg
    model = cluster["train"]["id"]
    outside = tmp_path / "outside"
    outside.mkdir()
    for folder in (str(outside), str(cluster["images"]) + "/../" + outside.name):
        r = http.post("/jobs", json={"kind": "classify", "params": {"folder": folder, "model": model}})
        assert r.status_code == 403, r.text
    link = cluster["images"] / "sneaky"
    link.symlink_to(outside)
    r = http.post("/jobs", json={"kind": "classify", "params": {"folder": str(link), "model": model}})
    assert r.status_code == 403 and "outside the allowed roots" in r.text
    assert http.get("/jobs/nope").status_code == 404


def test_http_end_to_end(http, cluster, cifar):
    folder = cluster["images"] / "http"
    n, bad = make_messy_folder(folder, cifar, n=20)
    r = http.post("/jobs", json={"kind": "classify", "params": {"folder": str(folder), "model": cluster["train"]["id"],
                                                                "gradcam": True, "top_k": 2}})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    job = wait_for(lambda: (j := http.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                   300, what="classify over HTTP")
    assert job["status"] == "succeeded", job
    page1 = http.get(f"/jobs/{job_id}/predictions", params={"limit": 10, "errors": False}).json()["predictions"]
    page2 = http.get(f"/jobs/{job_id}/predictions", params={"limit": 10, "offset": 10, "errors": False}).json()
    assert len(page1) == 10 and len(page2["predictions"]) == n - 10
    assert {p["path"] for p in page1}.isdisjoint(p["path"] for p in page2["predictions"])
    assert all(len(p["top_k"]) == 2 for p in page1)
    errs = http.get(f"/jobs/{job_id}/predictions", params={"errors": True}).json()["predictions"]
    assert {Path(p["path"]).name for p in errs} == bad
    small = http.get(f"/jobs/{job_id}/predictions", params={"set_size": 1}).json()["predictions"]
    assert all(p["set_size"] == 1 == len(p["prediction_set"]) for p in small)
    big = http.get(f"/jobs/{job_id}/predictions", params={"min_set_size": 2}).json()["predictions"]
    empty = http.get(f"/jobs/{job_id}/predictions", params={"set_size": 0}).json()["predictions"]
    assert len(small) + len(big) + len(empty) == n and all(p["set_size"] >= 2 for p in big)
    sure = http.get(f"/jobs/{job_id}/predictions", params={"min_confidence": 0.5}).json()["predictions"]
    assert all(p["confidence"] >= 0.5 for p in sure)
    # Keyset pages (`after` = the previous page's next_after) are the offset pages, at any depth.
    everything = http.get(f"/jobs/{job_id}/predictions").json()["predictions"]
    walked, after = [], None
    while True:
        page = http.get(f"/jobs/{job_id}/predictions", params={"limit": 7, **({"after": after} if after else {})})
        walked += page.json()["predictions"]
        after = page.json()["next_after"]
        if after is None:
            break
    assert walked == everything and len(walked) == n + len(bad)
    uncertain = http.get(f"/jobs/{job_id}/predictions", params={"uncertain": True}).json()["predictions"]
    assert [p["path"] for p in uncertain] == [p["path"] for p in everything if p["decision"] == "uncertain"]
    table = list(csv.DictReader(io.StringIO(http.get(f"/jobs/{job_id}/predictions.csv",
                                                     params={"misclassified": True}).text)))
    wrong = http.get(f"/jobs/{job_id}/predictions", params={"misclassified": True}).json()["predictions"]
    assert [r["path"] for r in table] == [p["path"] for p in wrong]
    assert all(r["predicted"] != r["true_label"] for r in table)
    # One CSV writer: the CLI's and the HTTP's are the same bytes, every filter of one definition in both.
    cases = (({}, []), ({"misclassified": "yes"}, ["--misclassified"]), ({"uncertain": "1"}, ["--uncertain"]),
             ({"min_set_size": 2}, ["--min-set-size", "2"]))
    for http_filter, cli_flags in cases:
        served = http.get(f"/jobs/{job_id}/predictions.csv", params=http_filter)
        printed = cli(cluster["env"], "results", "predictions", job_id, "--csv", *cli_flags).stdout
        assert served.status_code == 200 and served.text.replace("\r\n", "\n") == printed.replace("\r\n", "\n")
    # Each readable row names its Grad-CAM overlay, and that file is there.
    assert all(Path(p["overlay"]).is_file() for p in everything if not p["error"])
    assert all(p["overlay"] is None for p in errs)
    # The default table fits 100 columns, whole file names kept; --wide shows the sets and overlays.
    lines = cli(cluster["env"], "results", "predictions", job_id).stdout.splitlines()
    assert len(lines) == n + len(bad) + 1 and max(map(len, lines)) <= 100
    assert {Path(p["path"]).name for p in everything} <= {ln.split()[0].rsplit("/", 1)[-1] for ln in lines[1:]}
    assert "overlay" in cli(cluster["env"], "results", "predictions", job_id, "--wide").stdout.splitlines()[0]
    listed = http.get("/jobs", params={"kind": "classify", "status": "succeeded"}).json()["jobs"]
    assert job_id in [j["id"] for j in listed]
    metrics = http.get(f"/jobs/{job_id}/metrics").json()["metrics"]
    assert sum(m["value"] for m in metrics if m["name"] == "count") == n
    train = http.get(f"/jobs/{cluster['train']['id']}").json()
    plot = next(a for a in train["artifacts"] if a["kind"] == "confusion_plot")
    png = http.get(f"/artifacts/{plot['key']}")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    t = http.post("/jobs", json={"kind": "train", "params": {"limit": 10000, "epochs": 30}}).json()
    assert http.post(f"/jobs/{t['id']}/cancel").json()["status"] == "cancelled"
    assert "/jobs/{job_id}/predictions" in http.get("/openapi.json").json()["paths"]
