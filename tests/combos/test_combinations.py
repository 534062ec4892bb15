"""Features that work alone, tried together (issue 46): each case of tests/combos/cases.py is a real run on tiny
data: a model made by one source (a train job on the workers, `models import` of a .keras file or a SavedModel,
a sweep's best trial, a registry alias), used by one consumer (a classify job, with Grad-CAM, a layers job, a
study's Grad-CAM classify of a folder, POST /predict, an export checked in its runtime), on one broker, artifact
store and database, with a real worker and API. A consumer a source cannot serve (Grad-CAM or probes of a
SavedModel's hidden layers) must be refused at submit in one line."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cases import CASES, Case
from PIL import Image

import services
from services import ApiServer, Worker, cli, cli_json, create_pg_database, drop_pg_database, embedded_env, free_redis_db

sys.path.insert(0, str(Path(__file__).parents[1] / "fast"))
from helpers import image_folder  # noqa: E402

pytestmark = [pytest.mark.combos, pytest.mark.services]
IMAGES = 24  # 12 a class, two classes
REFS = {"trained": "trained", "imported .keras": "imported", "imported SavedModel": "sm",
        "registry alias": "imported@champion", "sweep best": "swept"}
HIDDEN = "hides its layers"  # what a SavedModel import answers to Grad-CAM and probes


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import keras

    base = tmp_path_factory.mktemp("combos-files")
    image_folder(base / "images", per_class=IMAGES // 2)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(6, 3, activation="relu", name="c1"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.save(base / "tiny.keras")
    model.export(str(base / "tiny-savedmodel"), verbose=False)
    return {"base": base, "images": base / "images", "keras": base / "tiny.keras",
            "savedmodel": base / "tiny-savedmodel"}


class Site:
    """One environment: its database, broker and store, a worker, an API, and the sources made in it so far."""

    def __init__(self, env_key: tuple[str, str, str], files: dict[str, Path]) -> None:
        broker, store, database = env_key
        self.key, self.files, self.made, self.refs = env_key, files, set(), {}
        self.base = files["base"] / f"site-{uuid.uuid4().hex[:6]}"
        self.base.mkdir()
        self.pg = create_pg_database() if database == "PostgreSQL" else None
        self.vhost = None
        extra = {"CONVLENS_ARTIFACT_STORE": store, "CONVLENS_ALLOWED_ROOTS": str(files["base"]),
                 "CONVLENS_HEARTBEAT_S": "1"}
        if self.pg:
            extra["CONVLENS_DATABASE_URL"] = self.pg
        if broker == "Redis":
            extra["CONVLENS_BROKER_URL"] = free_redis_db()
        elif broker == "RabbitMQ":
            self.vhost = f"combos-{uuid.uuid4().hex[:8]}"
            _rabbitmqctl("add_vhost", self.vhost)
            _rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
            extra["CONVLENS_BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"
        self.env = embedded_env(self.base / "home", **extra)
        cli(self.env, "db", "upgrade")
        self.worker = Worker(self.env, f"combos-{uuid.uuid4().hex[:6]}@convlens-test", self.base)
        self.api: ApiServer | None = None
        self.worker.wait_ready()

    def source(self, name: str) -> str:
        """The model reference of `name`, made in this site the first time it is asked for."""
        f = self.files
        if name not in self.made:
            if name == "trained":
                job = cli_json(self.env, "submit", "train", "--dataset", str(f["images"]), "--epochs", "1", "--name",
                               "trained", "--wait", timeout=600)
                assert job["status"] == "succeeded", job
            elif name in ("imported .keras", "registry alias"):
                if "imported .keras" not in self.made:
                    cli(self.env, "models", "import", str(f["keras"]), "--name", "imported", "--classes", "cat,dog")
                    self.made.add("imported .keras")
                if name == "registry alias":
                    cli(self.env, "models", "alias", "imported:1", "champion")
            elif name == "sweep best":
                job = cli_json(self.env, "submit", "sweep", "--dataset", str(f["images"]), "--epochs", "1", "--trials",
                               "2", "--parallel", "1", "--pruner", "none", "--space", "learning_rate=log:1e-3:1e-2",
                               "--name", "swept", "--wait", timeout=600)
                assert job["status"] == "succeeded" and job["result"]["best"], job
                self.refs[name] = f"{job['id']}:best"
            else:
                cli(self.env, "models", "import", str(f["savedmodel"]), "--name", "sm", "--classes", "cat,dog")
            self.made.add(name)
        return self.refs.get(name, REFS[name])

    def http(self):  # noqa: ANN201
        if self.api is None:
            self.api = ApiServer(self.env, self.base)
        return self.api.client(self.api.token)

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
        self.worker.stop()
        cli(self.env, "services", "stop", check=False)  # the embedded Redis, where this site started one
        if self.vhost:
            _rabbitmqctl("delete_vhost", self.vhost)
        if self.pg:
            drop_pg_database(self.pg)
        if self.key[0] == "Redis":
            services.release_redis_db(self.env["CONVLENS_BROKER_URL"])


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def sites(files):
    """The environment of the case at hand; cases come sorted by environment, so one site runs at a time."""
    current: list[Site] = []

    def site_for(case: Case) -> Site:
        key = (case.broker, case.store, case.database)
        if current and current[0].key != key:
            current.pop().close()
        if not current:
            current.append(Site(key, files))
        return current[0]

    yield site_for
    for site in current:
        site.close()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.source}|{c.consumer}|{c.broker}|{c.store}|{c.database}"
                                              for c in CASES])
def test_a_source_and_a_consumer_meet(case: Case, sites, files):
    site = sites(case)
    env, images = site.env, str(files["images"])
    if case.consumer == "study folder":  # the study's own train job is the source
        job = cli_json(env, "submit", "study", images, "--dataset", images, "--epochs", "1", "--folds", "2",
                       "--wait", "--timeout", "600", timeout=700)
        assert job["status"] == "succeeded", job
        study = job["result"]
        assert study["classify_accuracy"] is not None and 0 <= study["classify_accuracy"] <= 1, study
        classify = cli_json(env, "jobs", "show", study["jobs"]["classify"])
        assert classify["result"]["classified"] == IMAGES and classify["params"]["gradcam"], classify
        assert classify["params"]["model"] == study["jobs"]["train"], classify["params"]
        return
    ref = site.source(case.source)
    hidden = case.source == "imported SavedModel" and case.consumer in ("classify --gradcam", "layers")
    if case.consumer.startswith("classify") or case.consumer == "layers":
        args = (["submit", "classify", images, "--model", ref, *(["--gradcam"] if "gradcam" in case.consumer else [])]
                if case.consumer.startswith("classify") else
                ["submit", "layers", "--model", ref, "--dataset", images, "--limit", "20", "--test-limit", "20"])
        if hidden:
            refused = cli(env, *args, check=False)
            assert refused.returncode == 2 and HIDDEN in refused.stderr, refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            return
        job = cli_json(env, *args, "--wait", "--timeout", "300", timeout=400)
        assert job["status"] == "succeeded", job
        if case.consumer == "layers":
            assert [r["layer"] for r in job["result"]["rows"]] in (["c1"], ["conv1", "conv2", "conv3"]), job["result"]
            return
        assert job["result"]["classified"] == IMAGES and job["result"]["unreadable"] == 0, job["result"]
        rows = cli_json(env, "results", "predictions", job["id"])
        assert len(rows) == IMAGES and {r["predicted"] for r in rows} <= {"cat", "dog"}
        if "gradcam" in case.consumer:
            assert all(r["overlay"] and Path(r["overlay"]).is_file() for r in rows), rows[:2]
    elif case.consumer == "/predict":
        r = site.http().post(f"/predict?model={ref}", files={"file": ("a.png", _png(), "image/png")})
        assert r.status_code == 200 and r.json()["predictions"][0]["predicted"] in ("cat", "dog"), r.text
    else:
        out = site.base / f"export-{uuid.uuid4().hex[:6]}"
        report = cli_json(env, "models", "export", ref, "--format", "savedmodel", "--out", str(out),
                          "--check-folder", images, "--check-images", "8", timeout=300)
        # Checked against the model as classify serves it: equal where it computes in float32 as the export does.
        assert report["top1_agreement"] >= 0.99, report
        if report["served_policy"] == "float32":
            assert report["top1_agreement"] == 1.0 and report["max_probability_difference"] < 1e-4, report
