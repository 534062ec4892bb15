"""A submit while the broker is away (issue 46): the job row is the outbox. The command says in one line that the
job is stored and will be sent, exits 0, no traceback; the HTTP API answers 202 with a Warning; a worker whose
broker is reachable then runs both jobs (its recovery sends their messages)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import services
from services import ApiServer, Worker, cli, cli_json, embedded_env, free_redis_db

sys.path.insert(0, str(Path(__file__).parent / "fast"))
from helpers import image_folder, saved_model  # noqa: E402

pytestmark = pytest.mark.services


def test_a_submit_with_the_broker_away_is_stored_and_sent_later(tmp_path):
    image_folder(tmp_path / "images", per_class=4)
    model = saved_model(tmp_path / "m.keras", ["cat", "dog"])
    up = embedded_env(tmp_path / "home", CONVLENS_BROKER_URL=free_redis_db(), CONVLENS_STALE_AFTER_S="3",
                      CONVLENS_HEARTBEAT_S="1", CONVLENS_ALLOWED_ROOTS=str(tmp_path))
    down = {**up, "CONVLENS_BROKER_URL": "redis://127.0.0.1:1/0"}
    cli(up, "db", "upgrade")
    done = cli(down, "submit", "classify", str(tmp_path / "images"), "--model", str(model), timeout=60)
    job_id = done.stdout.strip()
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot be reached now" in done.stderr and "redis://127.0.0.1:1/0" in done.stderr
    assert cli_json(up, "jobs", "show", job_id)["status"] == "queued"
    api = ApiServer(down, tmp_path)
    try:
        made = api.client(api.token).post("/jobs", json={"kind": "classify", "params": {
            "folder": str(tmp_path / "images"), "model": str(model)}})
        assert made.status_code == 202 and "cannot be reached now" in made.headers["warning"], made.text
        over_http = made.json()["id"]
    finally:
        api.stop()
    worker = Worker(up, "patient@convlens-test", tmp_path)
    try:
        worker.wait_ready()
        for job in (job_id, over_http):
            shown = cli_json(up, "jobs", "wait", job, "--timeout", "120", timeout=200)
            assert shown["status"] == "succeeded" and shown["result"]["classified"] == 8, shown
    finally:
        worker.stop()
        services.release_redis_db(up["CONVLENS_BROKER_URL"])
