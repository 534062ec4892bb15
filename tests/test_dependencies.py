"""`--after` and a model's unfinished train job through a real worker on the embedded default: the waiting job
starts once the first one succeeded, and fails with the reason once it was cancelled."""

from __future__ import annotations

import os

import pytest

from services import Worker, cli, cli_json, wait_for

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    home = tmp_path_factory.mktemp("deps-home")
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS")}
    env.update(CONVLENS_HOME=str(home), CONVLENS_HEARTBEAT_S="1")
    worker = Worker(env, "deps@convlens-test", home)
    try:
        worker.wait_ready()
        yield env
    finally:
        worker.stop()
        cli(env, "services", "stop", check=False)


def test_a_job_waits_for_its_model_and_for_after(embedded):
    env = embedded
    train = cli(env, "submit", "train", "--limit", "1000", "--epochs", "1", "--batch-size", "64").stdout.strip()
    layers = cli_json(env, "submit", "layers", "--model", train, "--limit", "200", "--test-limit", "200")
    assert layers["status"] == "waiting"
    shown = cli(env, "jobs", "show", layers["id"]).stdout
    assert f"waiting for: {train}" in shown or "running" in shown or "succeeded" in shown
    done = cli_json(env, "jobs", "wait", layers["id"], "--timeout", "600", timeout=700)
    assert done["status"] == "succeeded" and done["waits_for"] == [train]
    assert cli_json(env, "jobs", "show", train)["status"] == "succeeded"
    # A classify job's id is no model: refused at submit, one line, exit 2, no row.
    before = len(cli_json(env, "jobs", "list"))
    refused = cli(env, "submit", "layers", "--model", layers["id"], check=False)
    assert refused.returncode == 2 and "not a train or import job" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert len(cli_json(env, "jobs", "list")) == before


def test_cancelling_what_a_job_waits_for_fails_it_with_the_reason(embedded):
    env = embedded
    long = cli(env, "submit", "train", "--limit", "2000", "--epochs", "30", "--patience", "0").stdout.strip()
    after = cli_json(env, "submit", "train", "--limit", "1000", "--epochs", "1", "--after", long)
    assert after["status"] == "waiting"
    cli(env, "jobs", "cancel", long)
    job = wait_for(lambda: (j := cli_json(env, "jobs", "show", after["id"]))["status"] != "waiting" and j, 60,
                   what="the waiting job to fail")
    assert job["status"] == "failed" and long in job["error"] and "cancelled" in job["error"]
    failed = cli(env, "jobs", "wait", after["id"], check=False)
    assert failed.returncode == 1
