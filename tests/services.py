"""Helpers for tests against real services: throwaway PostgreSQL databases, Redis, worker processes."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379"
FAST_RECOVERY = {"CONVLENS_HEARTBEAT_S": "1", "CONVLENS_STALE_AFTER_S": "6"}


def embedded_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment on the embedded default (SQLite and the embedded Redis) under `home`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS")}
    return {**env, "CONVLENS_HOME": str(home), **extra}


def create_pg_database() -> str:
    name = f"convlens_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(url: str) -> None:
    from convlens.db.session import _engine

    _engine.cache_clear()  # engines of this process; WITH (FORCE) ends any other session
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


CLAIM = "convlens-test:claimed-by"  # which test process holds a Redis database index


def _claim_alive(owner: bytes | None) -> bool:
    """Whether the process named by a claim still runs (a claim from another host lives until its expiry)."""
    if owner is None:
        return False
    host, pid, started = owner.decode().split(":")
    if host != socket.gethostname():
        return True
    try:
        return psutil.Process(int(pid)).create_time() == float(started)
    except (psutil.NoSuchProcess, ValueError):
        return False


def free_redis_db() -> str:
    """A Redis database index (2-15) claimed for this process and emptied. An index whose claim is held by a
    process that has ended is taken over, so a run that died or forgot to release one leaves nothing that blocks."""
    me = f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time()}"
    for n in random.sample(range(2, 16), 14):
        with redis.Redis.from_url(f"{REDIS}/{n}").pipeline() as pipe:
            try:
                pipe.watch(CLAIM)
                if _claim_alive(pipe.get(CLAIM)):
                    continue
                pipe.multi()
                pipe.flushdb()
                pipe.set(CLAIM, me, ex=6 * 3600)
                pipe.execute()
                return f"{REDIS}/{n}"
            except redis.WatchError:
                continue  # another process claimed it meanwhile
    raise RuntimeError("every Redis database index 2-15 is claimed by a running test process")


def release_redis_db(url: str) -> None:
    """Empties a claimed database (the queued jobs nobody consumed) and gives up the claim with them."""
    redis.Redis.from_url(url).flushdb()


def cli(env: dict, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"convlens {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def cli_json(env: dict, *args: str, timeout: float = 600, check: bool = True):
    return json.loads(cli(env, *args, "--json", timeout=timeout, check=check).stdout)


@contextmanager
def private_site(base: Path, root: Path, database: str) -> Iterator[dict]:
    """Settings for an API and its workers: their own database (a new PostgreSQL one, or SQLite under
    base/home), a private Redis database and one allowed root. This process reads the same database meanwhile."""
    env = {**os.environ, "CONVLENS_HOME": str(base / "home"), "CONVLENS_ALLOWED_ROOTS": str(root),
           "CONVLENS_BROKER_URL": free_redis_db(), "CONVLENS_DATABASE_URL": ""}
    db = create_pg_database() if database == "postgresql" else None
    if db:
        env["CONVLENS_DATABASE_URL"] = db
    cli(env, "db", "upgrade")
    saved = {k: os.environ.get(k) for k in ("CONVLENS_HOME", "CONVLENS_DATABASE_URL", "CONVLENS_ALLOWED_ROOTS")}
    os.environ.update({k: env[k] for k in saved})
    try:
        yield env
    finally:
        release_redis_db(env["CONVLENS_BROKER_URL"])
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        if db:
            drop_pg_database(db)


class Worker:
    """A real `convlens worker` process (Celery main process plus one prefork child)."""

    def __init__(self, env: dict, name: str, log_dir: Path, queues: str = "gpu,cpu") -> None:
        self.name = name
        self.log = log_dir / f"{name.split('@')[0]}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "convlens.api.cli", "worker", "--queues", queues, "--concurrency", "1",
             "--hostname", name, "--loglevel", "INFO"],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "ready." in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)
        raise TimeoutError(f"worker {self.name} not ready:\n{self.log.read_text()[-3000:]}")

    def pool_children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def wait_for(predicate, timeout: float = 300, interval: float = 0.5, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


class ApiServer:
    """`convlens api` as a real process on a free port; `token` is the admin token its first start printed."""

    def __init__(self, env: dict, log_dir: Path, host: str = "127.0.0.1", *extra: str) -> None:
        import re
        import socket

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log_dir / f"api-{self.port}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "convlens.api.cli", "api", "--host", host, "--port",
                                          str(self.port), *extra], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        probe = httpx.Client(base_url=self.url, timeout=5)

        def up() -> bool:
            try:
                return probe.get("/health").status_code == 200
            except httpx.TransportError:
                assert self.proc.poll() is None, self.log.read_text()
                return False

        wait_for(up, 90, what="the HTTP API")
        self.output = self.log.read_text()
        # The first start writes the admin token's login URL to a file of its owner's, never to the log.
        written = "login URL is in" in self.output
        url = (Path(env["CONVLENS_HOME"]) / "first-login-url.txt").read_text() if written else ""
        found = re.search(r"/\?token=(\S+)", url)
        self.token = found.group(1) if found else None

    def client(self, token: str | None = None, **kwargs):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 30, **kwargs})

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at path for the test (skipped, saying why, where this machine cannot mount one)."""
    path.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: {made.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def embedded_fleet(home: Path, names: list[str], **extra: str) -> Iterator[dict]:
    """Real workers on the embedded default under `home` (fast recovery), stopped with the embedded Redis after."""
    env = embedded_env(home, **FAST_RECOVERY, **extra)
    workers = [Worker(env, name, home) for name in names]
    try:
        for w in workers:
            w.wait_ready()
        yield {"env": env, "home": home, "workers": workers}
    finally:
        for w in workers:
            w.stop()
        cli(env, "services", "stop", check=False)
