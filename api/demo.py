"""`convlens demo`: the main job end to end on whatever broker and database are configured
(by default the embedded Redis and SQLite under CONVLENS_HOME), with a worker it starts and stops itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import typer
from pydantic import BaseModel

from convlens.api import queries
from convlens.api.follow import follow
from convlens.api.output import print_table, ready_database
from convlens.api.schemas import PredictionFilter
from convlens.ml.settings import settings
from convlens.worker.kinds.classify import ClassifyResult
from convlens.worker.kinds.layers import LAYER_COLUMNS, LayersResult
from convlens.worker.kinds.train import TrainResult

# Training seconds (plus its evaluation) on a CPU that trains in float32 (no native bf16, or bf16 no faster), where
# the preset's epochs take up to three times as long: the clock keeps the whole demo within 5 minutes on 2 cores
# (probes and classification take about a minute more), even on a slower or busier CPU, and still trains a model worth
# probing.
FLOAT32_BUDGET_S = 180.0


@dataclass(frozen=True)
class DemoPlan:
    """How the demo trains, and the line that says why."""

    train_params: dict
    note: str


def plan_training(trains_bf16: bool, limit: int | None = None, time_budget_s: float | None = None) -> DemoPlan:
    """The full seed recipe where training runs in bf16; on the clock in float32, unless the user chose a size or
    budget."""
    params: dict = {"preset": "seed"}
    if limit is not None:
        params["limit"] = limit
    if time_budget_s is not None:
        return DemoPlan(params | {"time_budget_s": time_budget_s}, f"training on a {time_budget_s:g} s budget")
    if limit is not None:
        return DemoPlan(params, f"training the full recipe on {limit} images")
    from convlens.ml.models import get_preset  # TensorFlow: only once the demo plans its training

    epochs = get_preset("seed").recipe["epochs"]
    if trains_bf16:
        return DemoPlan(params, f"this CPU trains in bf16 (native and measured faster than float32): training the full "
                                f"{epochs}-epoch recipe")
    return DemoPlan(params | {"time_budget_s": FLOAT32_BUDGET_S},
                    f"this CPU trains in float32 (no native bf16, or bf16 measured no faster): training the "
                    f"{epochs}-epoch recipe on a "
                    f"{FLOAT32_BUDGET_S:g} s budget, which stops it early only on a slow CPU (`convlens submit "
                    "train` trains the full recipe)")


def export_test_images(n: int, folder: Path, seed: int = 0) -> int:
    from convlens.ml.data.cifar import export_test_sample, load_cifar10

    return export_test_sample(load_cifar10(settings().datasets_dir), n, folder, seed)


def _start_worker(log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "convlens.api.cli", "worker", "--queues", "gpu,cpu", "--concurrency", "1",
           "--hostname", "demo@%h", "--loglevel", "WARNING"]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _step(title: str) -> None:
    typer.secho(f"\n== {title}", bold=True)


R = TypeVar("R", bound=BaseModel)


def _run(kind: str, params: dict, result: type[R], name: str | None = None) -> tuple[str, R]:
    """Submit a job, follow it to its end, and return its id and its kind's typed result."""
    from convlens.worker.labels import JobLabels
    from convlens.worker.tasks import submit

    job_id = submit(kind, params, labels=JobLabels(name=name)).job_id
    typer.echo(f"{kind} job {job_id}")
    job = follow(job_id)
    if job["status"] != "succeeded":
        raise RuntimeError(f"{kind} job {job_id} {job['status']}: {job.get('error')}")
    return job_id, result.model_validate(queries.get_job(job_id).result)


def run_demo(limit: int | None = None, n_images: int = 300, time_budget_s: float | None = None) -> int:
    from convlens.ml.precision import cpu_choice
    from convlens.worker.broker import ensure_embedded_redis, stop_embedded_redis

    plan = plan_training(cpu_choice().policy == "mixed_bfloat16", limit, time_budget_s)

    started = time.perf_counter()
    ready_database()
    started_redis = ensure_embedded_redis()
    out = settings().home_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    worker = _start_worker(out / "worker.log")
    typer.echo(f"worker started (pid {worker.pid}, log {out / 'worker.log'})")
    try:
        _step("1. train the seed preset on CIFAR-10")
        typer.echo(plan.note)
        train_id, r = _run("train", plan.train_params, TrainResult, name="demo")  # registered as demo:N
        typer.echo(f"test accuracy {r.accuracy:.4f}, macro F1 {r.macro_f1:.4f}, "
                   f"{r.epochs} epochs in {r.timings['fit_s']} s ({r.precision_policy})")
        print_table([{"class": m.class_name or "(all)", "metric": m.name, "value": m.value}
                     for m in queries.metrics(train_id) if m.split == "test"
                     and (m.class_name is None or m.name == "f1")])

        _step("2. layer-wise linear probes on that model")
        _, layers = _run("layers", {"model": train_id, "limit": 5000}, LayersResult)
        print_table([row.model_dump() for row in layers.rows], LAYER_COLUMNS)

        _step(f"3. bulk-classify {n_images} exported test images with Grad-CAM")
        folder = out / "images"
        export_test_images(n_images, folder)
        cls_id, res = _run("classify", {"folder": str(folder), "model": train_id, "gradcam": True,
                                        "shard_size": max(1, n_images // 2)}, ClassifyResult)
        wrong = queries.predictions(cls_id, PredictionFilter(misclassified=True))
        typer.echo(f"{res.classified} classified ({len(wrong)} misclassified), {res.unreadable} unreadable, "
                   f"across {res.shards} shards")
        if ev := res.evaluation:  # the exported images lie in class folders: the job evaluated them
            typer.echo(f"accuracy on those {ev.labelled} labelled images {ev.accuracy:.4f}, macro F1 "
                       f"{ev.macro.f1:.4f}, ECE {ev.ece_before:.4f} -> {ev.ece_after:.4f}")
        typer.echo(f"Grad-CAM overlays: {res.overlay_dir}")
        typer.echo(f"training curves: {r.paths['history_plot']}\nconfusion matrix: {r.paths['confusion_plot']}"
                   f"\nlayer plot: {layers.plot}")
        typer.echo(f"\ndemo finished in {time.perf_counter() - started:.0f} s; query it again with "
                   f"`convlens jobs list` and `convlens results metrics {train_id}`, or look at it in the "
                   "dashboard: run `convlens api` and open the login URL it prints")
        return 0
    except RuntimeError as exc:
        typer.secho(f"demo failed: {exc}", fg="red", err=True)
        return 1
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        if started_redis and settings().embedded_broker:
            stop_embedded_redis()
        typer.echo("worker stopped" + (", embedded Redis stopped" if started_redis else ""))
