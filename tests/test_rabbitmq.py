"""RabbitMQ as the broker (a private vhost on 127.0.0.1:5672) with PostgreSQL: jobs run, a cancel stops a
running job, a whole worker killed with kill -9 has its job taken up by another worker as soon as the broker
sees the connection drop (no visibility timeout to wait out), and the no-worker warning names the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest
from sqlalchemy import select

from convlens.db.models import Job
from convlens.db.session import session_scope
from services import Worker, cli, cli_json, create_pg_database, drop_pg_database, embedded_env, wait_for

pytestmark = [pytest.mark.services, pytest.mark.cifar]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def rabbit(tmp_path):
    vhost, pg = f"convlens-{uuid.uuid4().hex[:8]}", create_pg_database()
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    env = embedded_env(tmp_path, CONVLENS_DATABASE_URL=pg, CONVLENS_BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/"
                       f"{vhost}", CONVLENS_HEARTBEAT_S="1")
    cli(env, "db", "upgrade")
    try:
        yield env, pg
    finally:
        _rabbitmqctl("delete_vhost", vhost)
        drop_pg_database(pg)


def _job(pg: str, job_id: str) -> Job:
    with session_scope(pg) as s:
        job = s.scalars(select(Job).where(Job.id == job_id)).one()
        s.expunge(job)
        return job


def test_rabbitmq_runs_cancels_and_redelivers_at_once(rabbit, tmp_path):
    env, pg = rabbit
    first = Worker(env, "doomed@convlens-test", tmp_path)
    second = None
    try:
        first.wait_ready()
        long_one = cli(env, "submit", "train", "--limit", "4000", "--epochs", "30").stdout.strip()
        wait_for(lambda: (_job(pg, long_one).progress or {}).get("stage") == "train", 120, what="training")
        cli(env, "jobs", "cancel", long_one)
        wait_for(lambda: _job(pg, long_one).status == "cancelled", 30, what="the cancel")
        # The seed preset (no test-time augmentation) on 10,000 images: 3 epochs remain after the kill, 4-5
        # seconds on the fastest CPU here, so the worker always dies mid-training.
        job_id = cli(env, "submit", "train", "--limit", "10000", "--epochs", "5").stdout.strip()
        wait_for(lambda: (_job(pg, job_id).progress or {}).get("epoch", 0) >= 2, 300, interval=0.2, what="epoch 2")
        os.killpg(first.proc.pid, signal.SIGKILL)  # the Celery main process and its child, at once
        first.proc.wait(10)
        killed = time.monotonic()
        second = Worker(env, "rescuer@convlens-test", tmp_path)
        second.wait_ready()
        wait_for(lambda: _job(pg, job_id).worker == "rescuer@convlens-test", 60, interval=0.2,
                 what="the job on the second worker")
        delay = time.monotonic() - killed
        print(f"kill -9 to running again on another worker (its start included): {delay:.1f} s")
        assert delay < 40  # the worker's own start; Redis would wait for the stale heartbeat or visibility timeout
        done = cli_json(env, "jobs", "wait", job_id, "--timeout", "300", timeout=400)
        assert done["status"] == "succeeded" and len(done["result"]["history"]["loss"]) == 5
    finally:
        for w in (first, second):
            if w is not None:
                w.stop()
    # No worker left: the wait warns, naming the queue nobody consumes.
    waiting = cli(env, "submit", "train", "--limit", "100", "--wait", "--timeout", "25", check=False, timeout=120)
    assert waiting.returncode == 3 and "no live worker" in waiting.stderr and "gpu" in waiting.stderr, waiting.stderr


def test_a_message_rabbitmq_lost_is_sent_again_and_no_recovery_pass_fails(rabbit, tmp_path):
    """The queue purged while nobody consumes it (a lost message); then one worker with a fast recovery loop, a
    job running and another waiting behind it: the lost one is re-sent, every pass succeeds (issue 46)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fast"))
    from helpers import image_folder, saved_model

    env, pg = rabbit
    env = {**env, "CONVLENS_STALE_AFTER_S": "3"}
    image_folder(tmp_path / "images", per_class=20)
    model = saved_model(tmp_path / "m.keras", ["cat", "dog"])
    vhost = env["CONVLENS_BROKER_URL"].rsplit("/", 1)[1]
    lost = cli(env, "submit", "classify", str(tmp_path / "images"), "--model", str(model)).stdout.strip()
    for queue in ("gpu", "cpu"):
        subprocess.run(["rabbitmqctl", "purge_queue", "-p", vhost, queue], capture_output=True, timeout=60)
    worker = Worker(env, "lonely@convlens-test", tmp_path)
    try:
        worker.wait_ready()
        busy = cli(env, "submit", "train", "--limit", "2000", "--epochs", "3").stdout.strip()
        behind = cli(env, "submit", "classify", str(tmp_path / "images"), "--model", str(model)).stdout.strip()
        for job_id in (lost, busy, behind):
            done = cli_json(env, "jobs", "wait", job_id, "--timeout", "400", timeout=500)
            assert done["status"] == "succeeded", done
        log = worker.log.read_text()
        assert "'resent': 1" in log or "'resent': 2" in log, log[-3000:]
        assert "recovery pass failed" not in log and "Traceback" not in log, log[-3000:]
    finally:
        worker.stop()
