"""Three machines that share no disk, only PostgreSQL and the broker (Redis, then RabbitMQ): each process has its
own CONVLENS_HOME and the `database` artifact store. A worker trains; another worker, started after the first is
gone, classifies a folder with Grad-CAM using that model; an API process serves the training's plots and every
overlay, byte for byte what the workers wrote, from the store."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

import services
from convlens.ml.data.cifar import export_test_sample
from services import ApiServer, Worker, cli, cli_json, create_pg_database, drop_pg_database, embedded_env, free_redis_db

pytestmark = [pytest.mark.services, pytest.mark.cifar]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    if request.param == "redis":
        url = free_redis_db()
        yield url
        services.release_redis_db(url)
        return
    vhost = f"convlens-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


def _files(home: Path, job_id: str) -> list[Path]:
    return [p for p in (home / "runs" / job_id).rglob("*") if p.is_file()] if (home / "runs" / job_id).is_dir() else []


def test_train_here_classify_there_serve_from_a_third(broker, tmp_path, cifar):
    pg = create_pg_database()
    homes = {name: tmp_path / name for name in ("trainer", "classifier", "api")}
    env = {name: embedded_env(home, CONVLENS_DATABASE_URL=pg, CONVLENS_BROKER_URL=broker,
                              CONVLENS_ARTIFACT_STORE="database", CONVLENS_HEARTBEAT_S="1")
           for name, home in homes.items()}
    images = tmp_path / "images"  # the user's own data, at the same path on the classifying machine
    export_test_sample(cifar, 60, images, seed=3)
    api = None
    try:
        cli(env["trainer"], "db", "upgrade")
        first = Worker(env["trainer"], "trainer@host-a", tmp_path)
        try:
            first.wait_ready()
            train = cli_json(env["trainer"], "submit", "train", "--limit", "2000", "--epochs", "2", "--wait",
                             "--timeout", "600", timeout=700)
        finally:
            first.stop()
        assert train["status"] == "succeeded", train.get("error")

        second = Worker(env["classifier"], "classifier@host-b", tmp_path)
        try:
            second.wait_ready()
            done = cli_json(env["classifier"], "submit", "classify", str(images), "--model", train["id"],
                            "--gradcam", "--wait", "--timeout", "600", timeout=700)
        finally:
            second.stop()
        assert done["status"] == "succeeded", done.get("error")
        assert done["result"]["classified"] == 60 and done["result"]["workers"] == ["classifier@host-b"]
        # The classifier read the model from the store into its cache, not from the trainer's disk.
        assert not _files(homes["classifier"], train["id"])
        assert list((homes["classifier"] / "cache" / "trees").glob("*/model.keras"))

        api = ApiServer(env["api"], tmp_path)
        client = api.client(api.token)
        trained = client.get(f"/jobs/{train['id']}").json()
        written = {p.name: p.read_bytes() for p in _files(homes["trainer"], train["id"])}
        kinds = {a["kind"] for a in trained["artifacts"]}
        assert {"history_plot", "confusion_plot", "model"} <= kinds, kinds
        for artifact in trained["artifacts"]:
            served = client.get(f"/artifacts/{artifact['key']}")
            assert served.status_code == 200, (artifact, served.text)
            assert served.content == written[Path(artifact["path"]).name], artifact
        rows = client.get(f"/jobs/{done['id']}/predictions", params={"limit": 100}).json()["predictions"]
        overlays = {p.name: p.read_bytes() for p in _files(homes["classifier"], done["id"])}
        assert len(rows) == 60 and len(overlays) == 60
        for row in rows:
            served = client.get(f"/ui/jobs/{done['id']}/overlays/{row['id']}")
            assert served.status_code == 200 and served.headers["content-type"] == "image/png"
            assert served.content == overlays[Path(row["overlay"]).name]
        assert not list((homes["api"] / "runs").rglob("*.png")) if (homes["api"] / "runs").exists() else True
    finally:
        if api is not None:
            api.stop()
        drop_pg_database(pg)
