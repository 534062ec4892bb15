"""A service many people share (issue 50), with a real API and one real worker: token A's large Grad-CAM classify is
running, in shards, when token B submits a small train; fair share lets B's job take the next free slot instead
of waiting for every one of A's shards. Both succeed, the audit log names both, and the Python client returns
A's every prediction as a DataFrame."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd
import pytest

import services
from convlens.ml.data.cifar import export_test_sample
from services import ApiServer, Worker, cli, embedded_env, free_redis_db, wait_for

sys.path.insert(0, str(Path(__file__).parent / "fast"))
from helpers import image_folder  # noqa: E402

pytestmark = [pytest.mark.services, pytest.mark.cifar]
IMAGES, SHARD = 2000, 100  # 20 shards for A


def _tiny_cifar_model(path: Path) -> None:
    import keras

    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]).save(path)


def test_a_small_job_is_not_starved_by_a_large_one(tmp_path, cifar):
    from convlens.client import Client

    export_test_sample(cifar, IMAGES, tmp_path / "photos")
    image_folder(tmp_path / "small", per_class=8)
    _tiny_cifar_model(tmp_path / "tiny.keras")
    env = embedded_env(tmp_path / "home", CONVLENS_BROKER_URL=free_redis_db(), CONVLENS_ALLOWED_ROOTS=str(tmp_path))
    cli(env, "db", "upgrade")
    cli(env, "models", "import", str(tmp_path / "tiny.keras"), "--name", "tiny", "--classes",
        ",".join(cifar.class_names), "--input-scale", "1")
    api = ApiServer(env, tmp_path)
    worker = Worker(env, "shared@convlens-test", tmp_path)
    try:
        worker.wait_ready()
        admin = api.client(api.token)
        secrets = {n: admin.post("/tokens", json={"name": n, "scope": "submit"}).json()["token"]
                   for n in ("alice", "bob")}
        alice, bob = Client(api.url, secrets["alice"]), Client(api.url, secrets["bob"])
        big = alice.submit("classify", folder=str(tmp_path / "photos"), model="tiny", gradcam=True, shard_size=SHARD)
        wait_for(lambda: any(c.status == "succeeded" for c in alice.job(big).children or []), 300,
                 what="A's first shard")
        small = bob.submit("train", dataset=str(tmp_path / "small"), epochs=1)
        b, a = bob.wait(small, timeout=600), alice.wait(big, timeout=900)
        assert (a.status, b.status) == ("succeeded", "succeeded"), (a.error, b.error)
        b_wait = (b.started_at - b.created_at).total_seconds()
        a_run = (a.finished_at - a.started_at).total_seconds()
        shards_after_b = sum(c.started_at > b.started_at for c in alice.job(big).children)
        # First come, first served, B would have waited for every shard queued before it (18 or more).
        assert b_wait < 30 and b_wait < a_run / 3 and shards_after_b >= 10, (b_wait, a_run, shards_after_b)
        rows = alice.predictions(big)
        assert len(rows) == IMAGES and rows["overlay"].notna().all() and set(rows["predicted"]) <= \
            set(cifar.class_names)
        assert len(alice.predictions(big, label=rows["predicted"].iloc[0])) == (rows["predicted"] ==
                                                                                rows["predicted"].iloc[0]).sum()
        # The same rows as Parquet, streamed over HTTP and written by the CLI: typed columns, lists kept.
        streamed = pd.read_parquet(io.BytesIO(admin.get(f"/jobs/{big}/predictions.parquet").content))
        assert list(streamed["path"]) == list(rows["path"]) and list(streamed["predicted"]) == list(rows["predicted"])
        assert (streamed["confidence"] == rows["confidence"]).all()
        assert cli(env, "results", "predictions", big, "--parquet", str(tmp_path / "a.parquet")).stdout.strip() == \
            f"{IMAGES} rows written to {tmp_path / 'a.parquet'}"
        assert pd.read_parquet(tmp_path / "a.parquet").equals(streamed)
        events = admin.get("/audit?action=submit").json()["events"]
        assert {(e["actor"], e["target"]) for e in events} == {("alice", big), ("bob", small)}
    finally:
        worker.stop()
        api.stop()
        services.release_redis_db(env["CONVLENS_BROKER_URL"])
