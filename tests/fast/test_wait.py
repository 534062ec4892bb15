"""Waiting on a job no worker will take: a warning within 30 s, and --timeout ends the wait (exit code 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def test_wait_without_workers_warns_and_times_out(tmp_path, monkeypatch):
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL"):
        env.pop(key, None)
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", "submit", "train", "--limit", "100",
                               "--wait", "--timeout", "24", "--json"], capture_output=True, text=True, env=env,
                              timeout=120)
    finally:
        monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
        from convlens.worker.broker import stop_embedded_redis

        stop_embedded_redis()
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "no live worker consumes queue gpu (it needs gpu)" in proc.stderr
    assert "`convlens worker` serves them all" in proc.stderr and proc.stderr.count("warning:") == 1
    assert "interrupted" not in proc.stderr
    assert "still queued after 24 s" in proc.stderr
    assert time.monotonic() - started < 60


def test_a_queued_job_survives_an_embedded_redis_restart(tmp_path, monkeypatch):
    import redis

    from convlens.worker.broker import embedded_redis_status, ensure_embedded_redis, socket_path, stop_embedded_redis

    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL"):
        monkeypatch.delenv(key, raising=False)
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "convlens.api.cli"]
    job_id = subprocess.run([*cli, "submit", "train", "--limit", "100"], capture_output=True, text=True, env=env,
                            timeout=120, check=True).stdout.strip()
    try:
        assert embedded_redis_status()["appendonly"] == "yes"
        stopped = subprocess.run([*cli, "services", "stop"], capture_output=True, text=True, env=env, timeout=60)
        assert "embedded Redis stopped" in stopped.stdout and not embedded_redis_status()["running"]
        assert ensure_embedded_redis()  # a fresh server, from the append-only file
        queued = redis.Redis(unix_socket_path=str(socket_path())).lrange("gpu", 0, -1)
        assert len(queued) == 1 and job_id.encode() in queued[0]
    finally:
        stop_embedded_redis()


def test_ctrl_c_while_waiting_says_the_job_goes_on(tmp_path, monkeypatch):
    import select
    import signal

    env = {**os.environ, "CONVLENS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL"):
        env.pop(key, None)
    cli = [sys.executable, "-m", "convlens.api.cli"]
    job_id = subprocess.run([*cli, "submit", "train", "--limit", "100"], capture_output=True, text=True, env=env,
                            timeout=120, check=True).stdout.strip()
    proc = subprocess.Popen([*cli, "jobs", "wait", job_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        seen, deadline = b"", time.monotonic() + 120
        while f"job {job_id[:8]}".encode() not in seen and time.monotonic() < deadline:  # the progress bar is up
            if select.select([proc.stderr], [], [], 1)[0]:
                seen += os.read(proc.stderr.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
        err = (seen + rest).decode()
    finally:
        proc.kill()
        monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
        from convlens.worker.broker import stop_embedded_redis

        stop_embedded_redis()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert lines[-1] == (f"interrupted: job {job_id} is still queued; follow it again with `convlens jobs wait "
                        f"{job_id}`, or stop it with `convlens jobs cancel {job_id}`")
