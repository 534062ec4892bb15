"""`convlens worker`, `convlens api`, `convlens db ...` and `convlens demo`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from convlens.api.output import fail, print_json, ready_database, require_tensorflow

services_app = typer.Typer()
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
embedded_app = typer.Typer(help="The embedded Redis that convlens starts itself (it outlives the command).",
                           no_args_is_help=True)


@services_app.command()
def worker(queues: Annotated[str, typer.Option(help="comma-separated: gpu,cpu")] = "gpu,cpu",
           concurrency: Annotated[int, typer.Option(help="worker processes (1 per GPU)")] = 1,
           hostname: Annotated[str | None, typer.Option(help="worker name, e.g. gpu0@%h")] = None,
           gpu: Annotated[str | None, typer.Option(help="pin to this GPU index (CUDA_VISIBLE_DEVICES)")] = None,
           loglevel: str = "INFO") -> None:
    """Start a Celery worker (TensorFlow loads in its child processes only)."""
    require_tensorflow()
    ready_database()
    from convlens.ml.precision import training_choice

    typer.echo(training_choice(), err=True)
    env = {**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    from convlens.worker.broker import ensure_embedded_redis

    ensure_embedded_redis()
    cmd = [sys.executable, "-m", "celery", "-A", "convlens.worker.app", "worker", "-Q", queues, "-c",
           str(concurrency), "-l", loglevel, "--pool", "prefork"]
    if hostname:
        cmd += ["-n", hostname]
    os.execvpe(cmd[0], cmd, env)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@services_app.command()
def api(host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 for every interface")] = "127.0.0.1",
        port: int = 8000,
        ssl_certfile: Annotated[str | None, typer.Option(help="serve HTTPS with this certificate (PEM)")] = None,
        ssl_keyfile: Annotated[str | None, typer.Option(help="the certificate's private key (PEM)")] = None,
        behind_tls_proxy: Annotated[bool, typer.Option(help="a TLS-terminating proxy is in front (no warning)")]
        = False) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs). Every request needs a token; on the first
    start (no token yet) an admin token is created and its login URL printed."""
    import uvicorn

    from convlens.api.tokens import first_admin_token

    ready_database()
    scheme = "https" if ssl_certfile else "http"
    new = first_admin_token()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if new is not None:
        url = f"{scheme}://{shown}:{port}/?token={new.token}"
        if sys.stderr.isatty():
            typer.echo(f"No API token existed: created admin token {new.name!r} (shown only now; "
                       f"`convlens tokens create` makes more).\nLog in: {url}", err=True)
        else:  # stderr goes to a log: the secret goes to a file only its owner can read, never to the log
            where = first_login_file()
            where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(url + "\n")
            typer.echo(f"No API token existed: created admin token {new.name!r}; its login URL is in {where} "
                       "(readable by you only; delete it once used).", err=True)
    else:
        typer.echo("Requests need a token: `convlens tokens create NAME --scope read|submit|admin`.", err=True)
    if not _loopback(host) and not ssl_certfile and not behind_tls_proxy:
        typer.secho(f"warning: serving on {host} over plain HTTP: tokens and session cookies cross the network "
                    "unencrypted. Put a TLS-terminating proxy in front (then pass --behind-tls-proxy) or pass "
                    "--ssl-certfile/--ssl-keyfile; or bind 127.0.0.1.", fg="yellow", err=True)
    uvicorn.run("convlens.api.http:app", host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                proxy_headers=behind_tls_proxy, forwarded_allow_ips="*" if behind_tls_proxy else None,
                log_config=access_log_without_secrets())


def first_login_file() -> Path:
    from convlens.ml.settings import settings

    return settings().home_dir / "first-login-url.txt"


def access_log_without_secrets() -> dict:
    """uvicorn's logging, with login URLs' tokens blanked in the access log (api.observe.NoSecrets)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["no_secrets"] = {"()": "convlens.api.observe.NoSecrets"}
    config["handlers"]["access"]["filters"] = ["no_secrets"]
    return config


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    from convlens.db.session import database_url

    return make_url(database_url()).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    from convlens.db.session import upgrade

    upgrade(revision=revision)
    typer.echo(f"database at {revision}: {_safe_url()}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument("base", help="target revision")) -> None:
    from convlens.db.session import downgrade

    downgrade(revision=revision)
    typer.echo(f"database at {revision}: {_safe_url()}")


@db_app.command("current")
def db_current() -> None:
    from convlens.db.session import current_revision, head_revision

    typer.echo(f"current {current_revision() or 'none'}, head {head_revision()}")


@services_app.command()
def demo(limit: Annotated[int | None, typer.Option(help="train on a subset (default: all 50,000)")] = None,
         images: Annotated[int, typer.Option(help="test images exported and bulk-classified")] = 300,
         time_budget: Annotated[float | None, typer.Option(
             help="seconds for training plus its evaluation (default: the full recipe where the CPU trains in bf16, "
             "else 180)", min=1)] = None) -> None:
    """The main job end to end: worker, training, layer analysis, bulk classification with Grad-CAM."""
    from convlens.api.demo import run_demo

    raise typer.Exit(run_demo(limit=limit, n_images=images, time_budget_s=time_budget))


@embedded_app.command("status")
def services_status(json_out: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False) -> None:
    """Whether the embedded Redis of this CONVLENS_HOME runs (its socket, pid, persistence)."""
    from convlens.worker.broker import embedded_redis_status

    status = embedded_redis_status()
    if json_out:
        print_json(status)
    else:
        typer.echo("  ".join(f"{k}={v}" for k, v in status.items()))


@embedded_app.command("stop")
def services_stop(with_workers: Annotated[bool, typer.Option(
        "--with-workers", help="first ask the live workers to stop (each finishes its running task)")] = False,
        wait: Annotated[float, typer.Option(help="seconds to wait for the workers to stop", min=0)] = 60) -> None:
    """Stops the embedded Redis (its queues are saved to disk and come back when it next starts)."""
    from convlens.worker.broker import embedded_redis_status, stop_embedded_redis

    if not embedded_redis_status()["running"]:
        typer.echo("embedded Redis was not running")
        return
    from convlens.worker.monitor import live_workers, stop_workers

    workers = [w.name for w in live_workers()]
    if workers and not with_workers:
        # A worker would start the embedded Redis again on its next poll, so stopping it alone is a no-op.
        fail(f"{len(workers)} live worker(s) use the embedded Redis ({', '.join(workers)}): stop them first, or "
             "run `convlens services stop --with-workers`", code=1)
    if workers:
        left = stop_workers(workers, wait)
        if left:
            fail(f"worker(s) still running their task after {wait:g} s: {', '.join(left)}; the embedded Redis "
                 "keeps running (run this again once they have stopped)", code=1)
        typer.echo(f"stopped {len(workers)} worker(s): {', '.join(workers)}")
    stop_embedded_redis()
    typer.echo("embedded Redis stopped")
