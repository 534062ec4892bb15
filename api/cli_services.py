"""`convlens worker`, `convlens api`, `convlens db ...` and `convlens demo`."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from convlens.api.output import print_json, ready_database, require_tensorflow

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


@services_app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    ready_database()
    uvicorn.run("convlens.api.http:app", host=host, port=port)


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
         images: Annotated[int, typer.Option(help="test images exported and bulk-classified")] = 300) -> None:
    """The main job end to end: worker, training, layer analysis, bulk classification with Grad-CAM."""
    from convlens.api.demo import run_demo

    raise typer.Exit(run_demo(limit=limit, n_images=images))


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
def services_stop() -> None:
    """Stops the embedded Redis (its queues are saved to disk and come back when it next starts)."""
    from convlens.worker.broker import embedded_redis_status, stop_embedded_redis

    was = embedded_redis_status()["running"]
    stop_embedded_redis()
    typer.echo("embedded Redis stopped" if was else "embedded Redis was not running")
