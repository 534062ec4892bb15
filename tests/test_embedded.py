"""The embedded default: no settings at all, a SQLite file and a Redis that convlens starts on a unix socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from services import Worker, cli, cli_json

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    home = tmp_path_factory.mktemp("embedded-home")
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS")}
    env["CONVLENS_HOME"] = str(home)
    worker = Worker(env, "embedded@convlens-test", home)
    try:
        worker.wait_ready()
        yield {"env": env, "home": home, "worker": worker}
    finally:
        worker.stop()
        sock = home / "redis.sock"
        if sock.exists():
            try:
                redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=True)
            except redis.ConnectionError:
                pass


def test_embedded_submit_and_query(embedded, tmp_path, cifar):
    from folders import make_messy_folder

    env, home = embedded["env"], embedded["home"]
    assert (home / "redis.sock").exists() and (home / "convlens.db").is_file()
    train = cli_json(env, "submit", "train", "--limit", "1000", "--epochs", "2", "--batch-size", "64", "--wait",
                     "--name", "tiny", "--tag", "lr-sweep", "--tag", "cli", "--note", "first try")
    assert train["status"] == "succeeded" and train["worker"] == "embedded@convlens-test"
    assert (train["name"], train["tags"], train["note"]) == ("tiny", ["cli", "lr-sweep"], "first try")
    # Each epoch's figures were stored as it ended; a short id names the job.
    history = cli_json(env, "results", "history", train["id"][:6])
    assert [e["epoch"] for e in history] == [1, 2] and all(e["images_per_s"] > 0 and "val_loss" in e for e in history)
    assert history[-1]["accuracy"] == pytest.approx(train["result"]["history"]["accuracy"][-1], abs=1e-5)
    listed = cli(env, "jobs", "list", "--tag", "lr-sweep", "--sort", "-metrics.accuracy", "--columns",
                 "params.epochs,metrics.accuracy").stdout.splitlines()
    assert listed[0].split() == ["id", "name", "kind", "status", "params.epochs", "metrics.accuracy"]
    assert listed[1].split() == [train["id"][:8], "tiny", "train", "succeeded", "2",
                                 f"{train['metrics']['accuracy']:.4f}"] and len(listed) == 2
    assert cli_json(env, "jobs", "list", "--filter", "metrics.accuracy > 1") == []
    edited = cli_json(env, "jobs", "edit", train["id"][:8], "--add-tag", "keep", "--remove-tag", "lr-sweep",
                      "--name", "")
    assert edited["tags"] == ["cli", "keep"] and edited["name"] is None and edited["note"] == "first try"
    n, bad = make_messy_folder(tmp_path / "imgs", cifar, n=12)
    job = cli_json(env, "submit", "classify", str(tmp_path / "imgs"), "--model", train["id"], "--wait")
    assert job["result"]["classified"] == n and job["result"]["unreadable"] == len(bad)
    listed = cli_json(env, "jobs", "list")
    assert {j["id"] for j in listed} >= {train["id"], job["id"]}
    table = cli(env, "jobs", "list").stdout
    assert train["id"][:8] in table and "succeeded" in table  # short ids, which every command takes
    # `run` records its job in the same database as the queued ones.
    ran = cli_json(env, "run", "layers", "--model", train["id"], "--limit", "500", "--test-limit", "500")
    assert [r["layer"] for r in ran["result"]["rows"]] == ["conv1", "conv2", "conv3"]
    assert ran["id"] in {j["id"] for j in cli_json(env, "jobs", "list", "--kind", "layers")}


def test_services_stop_refuses_while_workers_use_the_embedded_redis(embedded):
    """Stopping Redis under a live worker would be undone by it at once; `--with-workers` stops both."""
    env, home, worker = embedded["env"], embedded["home"], embedded["worker"]
    refused = cli(env, "services", "stop", check=False)
    assert refused.returncode == 1 and "embedded@convlens-test" in refused.stderr
    assert "--with-workers" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert cli_json(env, "services", "status", "--json")["running"] is True
    stopped = cli(env, "services", "stop", "--with-workers")
    assert "stopped 1 worker(s): embedded@convlens-test" in stopped.stdout
    worker.proc.wait(timeout=30)  # the worker exited on its own, and Redis stays stopped
    assert not (home / "redis.sock").exists() or not cli_json(env, "services", "status", "--json")["running"]


@pytest.mark.cifar
def test_the_demo_runs_end_to_end_with_nothing_configured(tmp_path):
    """The README's main command on a small budget: its own worker and embedded Redis, the three steps, every
    file it names written, and nothing left running."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS")}
    env["CONVLENS_HOME"] = str(tmp_path / "home")
    out = cli(env, "demo", "--limit", "1000", "--images", "20", "--time-budget", "30", timeout=900).stdout
    assert "demo finished" in out and "20 classified" in out, out
    named = [line.split(": ", 1)[1] for line in out.splitlines()
             if line.startswith(("training curves: ", "confusion matrix: ", "layer plot: ", "Grad-CAM overlays: "))]
    assert len(named) == 4 and all(Path(p).exists() for p in named), named
    assert "worker stopped, embedded Redis stopped" in out
    assert not (tmp_path / "home" / "redis.sock").exists()
