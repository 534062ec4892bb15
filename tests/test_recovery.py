"""Faults a real deployment meets, with real processes: a whole worker killed, the embedded Redis losing its
queue, a full disk, a read-only home. Every job ends in a final state with its rows exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

import services
from conftest import DATA_DIR
from convlens.db.models import Job, Metric, Prediction, TrainedModelRow
from convlens.db.session import session_scope
from folders import make_messy_folder
from services import (
    Worker,
    cli,
    cli_json,
    create_pg_database,
    drop_pg_database,
    embedded_env,
    free_redis_db,
    tmpfs,
    wait_for,
)

pytestmark = pytest.mark.services

FAST_RECOVERY = {"CONVLENS_HEARTBEAT_S": "1", "CONVLENS_STALE_AFTER_S": "6", "CONVLENS_DATA_DIR": str(DATA_DIR)}


sys.path.insert(0, str(Path(__file__).parent / "fast"))
from helpers import image_folder, saved_model  # noqa: E402


def _embedded_env(home: Path) -> dict[str, str]:
    return embedded_env(home, **FAST_RECOVERY)


def _job(home: Path, job_id: str) -> Job:
    with session_scope(f"sqlite:///{home / 'convlens.db'}") as s:
        return s.get(Job, job_id)


def _count(home: Path, stmt) -> int:
    with session_scope(f"sqlite:///{home / 'convlens.db'}") as s:
        return s.scalar(stmt)


def _stop_embedded(env: dict[str, str]) -> None:
    cli(env, "services", "stop", check=False)


def test_whole_worker_killed_job_resumes_on_another(tmp_path):
    env = _embedded_env(tmp_path)
    first = Worker(env, "doomed@convlens-test", tmp_path)
    second = None
    try:
        first.wait_ready()
        # Epochs of seconds even on a fast CPU in float32, so that the kill lands mid-training.
        job_id = cli(env, "submit", "train", "--limit", "8000", "--epochs", "4", "--batch-size", "64",
                     "--patience", "0").stdout.strip()
        wait_for(lambda: (j := _job(tmp_path, job_id)).status == "running" and (j.progress or {}).get("epoch", 0) >= 2,
                 300, what="training to reach epoch 2")
        os.killpg(first.proc.pid, signal.SIGKILL)  # the Celery main process and its child, at once
        first.proc.wait(10)
        second = Worker(env, "rescuer@convlens-test", tmp_path)
        second.wait_ready()
        done = cli_json(env, "jobs", "wait", job_id, "--timeout", "400", timeout=500)
        assert done["status"] == "succeeded", done
        assert done["worker"] == "rescuer@convlens-test"
        assert len(done["result"]["history"]["loss"]) == 4  # resumed from its checkpoint, no epoch twice
        assert _job(tmp_path, job_id).attempts == 1
        assert _count(tmp_path, select(func.count()).select_from(TrainedModelRow)
                      .where(TrainedModelRow.job_id == job_id)) == 1
        # one accuracy row per split: test, test_tta (flip TTA), validation, thresholded
        assert _count(tmp_path, select(func.count()).select_from(Metric).where(
            Metric.job_id == job_id, Metric.name == "accuracy")) == 4
    finally:
        for w in (first, second):
            if w is not None:
                w.stop()
        _stop_embedded(env)


def test_queued_job_lost_by_the_broker_is_sent_again(tmp_path, trained, cifar):
    env = _embedded_env(tmp_path)
    folder = tmp_path / "images"
    n, bad = make_messy_folder(folder, cifar, n=30)
    job_id = cli(env, "submit", "classify", str(folder), "--model", str(trained["path"]),
                 "--shard-size", "10").stdout.strip()
    # The broker loses everything (a restart without its append-only file): the message is gone.
    _stop_embedded(env)
    for leftover in ("appendonly.aof", "appendonlydir", "redis.rdb"):
        shutil.rmtree(tmp_path / leftover, ignore_errors=True)
        (tmp_path / leftover).unlink(missing_ok=True)
    worker = Worker(env, "late@convlens-test", tmp_path)
    try:
        worker.wait_ready()
        done = cli_json(env, "jobs", "wait", job_id, "--timeout", "300", timeout=400)
        assert done["status"] == "succeeded", done
        assert done["result"]["classified"] == n and done["result"]["unreadable"] == len(bad)
        paths = _count(tmp_path, select(func.count()).select_from(Prediction).where(Prediction.job_id == job_id))
        assert paths == n + len(bad)  # every file exactly once
        assert "recovery" in worker.log.read_text()
    finally:
        worker.stop()
        _stop_embedded(env)


def test_purged_queues_lose_no_job(tmp_path):
    """`convlens queues purge` drops the broker's messages through the adapter; the job, stored as queued, is sent
    again by recovery and runs."""
    env = _embedded_env(tmp_path)
    n = image_folder(tmp_path / "images", per_class=6)
    model = saved_model(tmp_path / "m.keras", ["cat", "dog"])
    job_id = cli(env, "submit", "classify", str(tmp_path / "images"), "--model", str(model)).stdout.strip()
    assert {q["queue"]: q["messages"] for q in cli_json(env, "queues", "list")} == {"gpu": 0, "cpu": 1}
    refused = cli(env, "queues", "purge", check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert cli(env, "queues", "purge", "--yes").stdout.strip() == "dropped 1 messages from gpu, cpu"
    assert [q["messages"] for q in cli_json(env, "queues", "list")] == [0, 0]
    worker = Worker(env, "after-purge@convlens-test", tmp_path)
    try:
        worker.wait_ready()
        done = cli_json(env, "jobs", "wait", job_id, "--timeout", "300", timeout=400)
        assert done["status"] == "succeeded" and done["result"]["classified"] == n, done
    finally:
        worker.stop()
        _stop_embedded(env)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    with tmpfs(tmp_path / "small-disk", "size=3m") as mount:
        yield mount


def test_full_disk_fails_the_job_with_the_os_reason(tiny_tmpfs, tmp_path):
    """CONVLENS_HOME on a 3 MB disk (the database elsewhere): the first checkpoint does not fit."""
    pg, broker = create_pg_database(), free_redis_db()
    env = {**os.environ, "CONVLENS_HOME": str(tiny_tmpfs), "CONVLENS_DATABASE_URL": pg, "CONVLENS_BROKER_URL": broker,
           **FAST_RECOVERY}
    worker = None
    try:
        cli(env, "db", "upgrade")
        worker = Worker(env, "full@convlens-test", tmp_path)
        worker.wait_ready()
        proc = cli(env, "submit", "train", "--limit", "1000", "--epochs", "2", "--wait", "--timeout", "300",
                   "--json", check=False, timeout=400)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "No space left on device" in proc.stdout and '"status": "failed"' in proc.stdout
    finally:
        if worker is not None:
            worker.stop()
        drop_pg_database(pg)
        services.release_redis_db(broker)


def test_read_only_home_is_a_clear_error(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as home:
        proc = cli(_embedded_env(home), "submit", "train", "--limit", "100", check=False, timeout=120)
        assert proc.returncode == 2
        assert "Read-only file system" in proc.stderr and "Traceback" not in proc.stderr
