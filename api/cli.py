"""The `convlens` command line: run or submit jobs, follow them, query results, start workers and the API."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from api import queries
from api.follow import describe, follow, follow_in_background

app = typer.Typer(help="convlens: train, evaluate, explain and apply CNN image classifiers as batch jobs.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
run_app = typer.Typer(help="Run a job in this process (recorded in the database like a queued one).",
                      no_args_is_help=True)
submit_app = typer.Typer(help="Queue a job for the workers; prints its id.", no_args_is_help=True)
jobs_app = typer.Typer(help="List, show, wait for and cancel jobs.", no_args_is_help=True)
results_app = typer.Typer(help="Query metrics and predictions.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
for sub, name in ((run_app, "run"), (submit_app, "submit"), (jobs_app, "jobs"), (results_app, "results"),
                  (db_app, "db")):
    app.add_typer(sub, name=name)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def ready_database() -> None:
    from db.session import DatabaseBehind, ensure_current

    try:
        ensure_current()
    except DatabaseBehind as exc:
        fail(str(exc))


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    if not rows:
        typer.echo("(no rows)")
        return
    columns = columns or list(rows[0])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)


def emit(rows: list[dict[str, Any]], fmt: Format, columns: list[str] | None = None) -> None:
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
    elif fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns or (list(rows[0]) if rows else []), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()} for r in rows)
        typer.echo(buf.getvalue(), nl=False)
    else:
        print_table(rows, columns)


# --- running and submitting jobs -----------------------------------------------------------------

def execute(kind: str, params: dict, mode: str, wait: bool, as_json: bool) -> None:
    """Validates params, then runs the job here (`run`) or queues it (`submit`)."""
    from worker import params as P

    params = {k: v for k, v in params.items() if v is not None}
    try:
        P.validate(kind, params)
    except (ValidationError, ValueError) as exc:
        fail(f"bad {kind} options: {exc}")
    if kind == "classify":
        from worker.paths import FolderRefused, check_folder

        try:
            params["folder"] = str(check_folder(params["folder"]))
        except FolderRefused as exc:
            fail(str(exc))
    ready_database()
    if mode == "run":
        from worker import jobs

        job_id = jobs.create_job(kind, params)
        thread, stop = follow_in_background(job_id, quiet=as_json)
        try:
            jobs.execute_inline(job_id)
        except Exception as exc:  # recorded on the job; shown below
            if not as_json:
                typer.secho(f"job {job_id} failed: {exc}", fg="red", err=True)
        finally:
            stop.set()
            thread.join()
        finish_output(job_id, as_json)
        return
    from worker.tasks import submit

    job_id = submit(kind, params)
    if not wait:
        typer.echo(json.dumps({"id": job_id, "kind": kind, "status": "queued"}) if as_json else job_id)
        return
    follow(job_id, quiet=as_json)
    finish_output(job_id, as_json)


def finish_output(job_id: str, as_json: bool) -> None:
    job = queries.get_job(job_id)
    if as_json:
        typer.echo(json.dumps(job, indent=2, default=str))
    else:
        show_job(job)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def show_job(job: dict) -> None:
    typer.echo(f"job {job['id']}  {job['kind']}  {job['status']}  worker={job['worker'] or '-'}")
    if job.get("error"):
        typer.secho(f"error: {job['error']}", fg="red")
    if job["status"] == "running":
        typer.echo(f"progress: {describe(job.get('progress'))}")
    result = job.get("result") or {}
    if job["kind"] == "train" and result:
        typer.echo(f"test accuracy {result['accuracy']:.4f}  macro F1 {result['macro_f1']:.4f}  "
                   f"with thresholds {result.get('thresholded_accuracy') or 0:.4f}  "
                   f"epochs {result.get('epochs_trained', result['epochs_run'])}  "
                   f"fit {result['timings']['fit_s']} s  ({result['precision_policy']})")
        typer.echo(f"model: {result['paths']['model']}")
        for warning in result.get("warnings", []):
            typer.secho(f"warning: {warning}", fg="yellow")
    elif job["kind"] == "kfold" and result:
        m = result["metrics"]
        typer.echo(f"{result['folds']} folds: accuracy {m['accuracy']['mean']:.4f} ± {m['accuracy']['std']:.4f}, "
                   f"macro F1 {m['macro_f1']['mean']:.4f} ± {m['macro_f1']['std']:.4f}; "
                   f"workers {', '.join(result.get('workers', []))}")
    elif job["kind"] == "layers" and result:
        print_table(result["rows"], ["layer", "features", "probe_accuracy", "cumulative_layers",
                                     "cumulative_accuracy"])
        typer.echo(f"plot: {result.get('plot')}")
    elif job["kind"] == "classify" and result:
        typer.echo(f"{result['classified']} classified, {result['unreadable']} unreadable, "
                   f"{result['shards']} shards; per class: {json.dumps(result['per_class'])}")
        if result.get("overlay_dir"):
            typer.echo(f"Grad-CAM overlays: {result['overlay_dir']}")
    for child in job.get("children", [])[:50]:
        typer.echo(f"  part {child['part']}: {child['status']} on {child['worker'] or '-'}")


def _train_params(preset, dataset, epochs, batch_size, lr, schedule, patience, no_augment, val_fraction, limit,
                  class_weight, long_tail, no_mixed_precision, seed, flip, rotation, zoom, translation,
                  time_budget) -> dict:
    return {"time_budget_s": time_budget, "flip": flip, "rotation": rotation, "zoom": zoom, "translation": translation,
            "preset": preset, "dataset": dataset, "epochs": epochs, "batch_size": batch_size,
            "learning_rate": lr, "schedule": schedule, "patience": patience, "augment": not no_augment,
            "val_fraction": val_fraction, "limit": limit, "class_weight": class_weight,
            "long_tail_ratio": long_tail, "mixed_precision": not no_mixed_precision, "seed": seed}


Preset = Annotated[str, typer.Option(help="model + recipe by name (seed, fast)")]
Dataset = Annotated[str, typer.Option(help="'cifar10' or an image folder root/<class>/...")]
Epochs = Annotated[int | None, typer.Option(help="epochs (default: the preset's)")]
Batch = Annotated[int | None, typer.Option(help="batch size (default: the preset's)")]
LR = Annotated[float | None, typer.Option("--lr", help="peak learning rate (default: the preset's)")]
Schedule = Annotated[str | None, typer.Option(help="plateau | cosine | warmup_linear | none")]
Patience = Annotated[int | None, typer.Option(help="early-stopping patience on validation loss; 0: off")]
Budget = Annotated[float | None, typer.Option(
    help="seconds for training plus evaluation; the schedule follows the clock (default: the preset's)")]
NoAug = Annotated[bool, typer.Option("--no-augment", help="turn every augmentation off")]
Flip = Annotated[bool | None, typer.Option("--flip/--no-flip", help="random horizontal flips")]
Rot = Annotated[float | None, typer.Option(help="random rotation, fraction of a full turn (e.g. 0.05)")]
Zoom = Annotated[float | None, typer.Option(help="random zoom, fraction of the side (e.g. 0.1)")]
Shift = Annotated[float | None, typer.Option(help="random translation, fraction of the side (e.g. 0.1)")]
ValFrac = Annotated[float | None, typer.Option(help="stratified validation fraction (default: the preset's)")]
Limit = Annotated[int | None, typer.Option(help="stratified subset of N training images")]
CW = Annotated[str | None, typer.Option(help="balanced | none (default: the preset's)")]
LT = Annotated[float | None, typer.Option("--long-tail", help="CIFAR-10-LT imbalance ratio r")]
NoMP = Annotated[bool, typer.Option("--no-mixed-precision", help="compute in float32")]
Seed = Annotated[int, typer.Option(help="seed for splits, initialisation and augmentation")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON document")]
Wait = Annotated[bool, typer.Option("--wait", help="follow the job with a progress bar until it ends")]
ModelRef = Annotated[str, typer.Option("--model", help="a .keras model or the id of a train job")]


def _register(sub: typer.Typer, mode: str) -> None:
    waits = mode == "submit"

    @sub.command("train")
    def train_cmd(preset: Preset = "seed", dataset: Dataset = "cifar10", epochs: Epochs = None,
                  batch_size: Batch = None, lr: LR = None, schedule: Schedule = None, patience: Patience = None,
                  no_augment: NoAug = False, val_fraction: ValFrac = None, limit: Limit = None,
                  class_weight: CW = None, long_tail: LT = None, no_mixed_precision: NoMP = False,
                  seed: Seed = 0, flip: Flip = None, rotation: Rot = None, zoom: Zoom = None,
                  translation: Shift = None, time_budget: Budget = None, wait: Wait = False,
                  json_out: Json = False) -> None:
        """Train a model and evaluate it on the test set."""
        params = _train_params(preset, dataset, epochs, batch_size, lr, schedule, patience, no_augment,
                               val_fraction, limit, class_weight, long_tail, no_mixed_precision, seed,
                               flip, rotation, zoom, translation, time_budget)
        execute("train", params, mode, wait or not waits, json_out)

    @sub.command("kfold")
    def kfold_cmd(folds: Annotated[int, typer.Option(help="K")] = 5, preset: Preset = "seed",
                  dataset: Dataset = "cifar10", epochs: Epochs = None, batch_size: Batch = None, lr: LR = None,
                  schedule: Schedule = None, patience: Patience = None, no_augment: NoAug = False,
                  val_fraction: ValFrac = None, limit: Limit = None, class_weight: CW = None,
                  long_tail: LT = None, no_mixed_precision: NoMP = False, seed: Seed = 0, flip: Flip = None,
                  rotation: Rot = None, zoom: Zoom = None, translation: Shift = None,
                  time_budget: Budget = None, wait: Wait = False, json_out: Json = False) -> None:
        """Stratified k-fold over the training data: one job per fold, then mean ± std."""
        params = _train_params(preset, dataset, epochs, batch_size, lr, schedule, patience, no_augment,
                               val_fraction, limit, class_weight, long_tail, no_mixed_precision, seed,
                               flip, rotation, zoom, translation, time_budget)
        execute("kfold", {**params, "folds": folds}, mode, wait or not waits, json_out)

    @sub.command("layers")
    def layers_cmd(model: ModelRef, layer: Annotated[list[str] | None, typer.Option(
                       help="a conv layer to probe (repeatable; default: all)")] = None,
                   dataset: Dataset = "cifar10",
                   limit: Annotated[int | None, typer.Option(help="training images for the probes")] = 10000,
                   test_limit: Annotated[int | None, typer.Option(help="test images to score on")] = None,
                   wait: Wait = False, json_out: Json = False) -> None:
        """Linear probes on each conv layer's pooled activations, individual and cumulative."""
        execute("layers", {"model": model, "layers": layer or None, "dataset": dataset, "limit": limit,
                           "test_limit": test_limit}, mode, wait or not waits, json_out)

    @sub.command("classify")
    def classify_cmd(folder: Annotated[str, typer.Argument(help="folder of images, walked recursively")],
                     model: ModelRef, gradcam: Annotated[bool, typer.Option(help="write overlays")] = False,
                     top_k: Annotated[int, typer.Option(help="classes listed per file")] = 3,
                     shards: Annotated[int | None, typer.Option(help="child jobs (default: by shard size)")] = None,
                     shard_size: Annotated[int, typer.Option(help="files per shard")] = 2000,
                     wait: Wait = False, json_out: Json = False) -> None:
        """Classify every image under FOLDER (unreadable files are recorded and skipped)."""
        execute("classify", {"folder": folder, "model": model, "gradcam": gradcam, "top_k": top_k,
                             "shards": shards, "shard_size": shard_size}, mode, wait or not waits, json_out)


_register(run_app, "run")
_register(submit_app, "submit")


# --- jobs and results ------------------------------------------------------------------------------

@jobs_app.command("list")
def jobs_list(status: Annotated[str | None, typer.Option(help="queued|running|succeeded|failed|cancelled")] = None,
              kind: Annotated[str | None, typer.Option(help="train|kfold|layers|classify")] = None,
              limit: int = 50, json_out: Json = False) -> None:
    ready_database()
    rows = queries.list_jobs(status, kind, limit=limit)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_table([{**r, "progress": describe(r["progress"])} for r in rows],
                    ["id", "kind", "status", "progress", "created_at", "worker"])


@jobs_app.command("show")
def jobs_show(job_id: str, json_out: Json = False) -> None:
    ready_database()
    job = queries.get_job(job_id)
    if job is None:
        fail(f"job {job_id} not found")
    if json_out:
        typer.echo(json.dumps(job, indent=2))
    else:
        show_job(job)


@jobs_app.command("wait")
def jobs_wait(job_id: str, json_out: Json = False) -> None:
    ready_database()
    if queries.get_job(job_id) is None:
        fail(f"job {job_id} not found")
    follow(job_id, quiet=json_out)
    finish_output(job_id, json_out)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    ready_database()
    from worker.jobs import JobError
    from worker.tasks import cancel

    try:
        ids = cancel(job_id)
    except JobError as exc:
        fail(str(exc))
    typer.echo(f"cancelled {job_id} ({len(ids) - 1} child jobs)")


@results_app.command("metrics")
def results_metrics(job_id: str, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    ready_database()
    emit(queries.metrics(job_id), fmt, ["split", "fold", "class", "name", "value"])


@results_app.command("predictions")
def results_predictions(
    job_id: str,
    label: Annotated[str | None, typer.Option(help="only this predicted class")] = None,
    min_confidence: Annotated[float | None, typer.Option(help="only confidence >= P")] = None,
    misclassified: Annotated[bool, typer.Option(help="only files whose folder names another class")] = False,
    errors: Annotated[bool, typer.Option("--errors", help="only unreadable files")] = False,
    limit: Annotated[int | None, typer.Option(help="at most N rows")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    ready_database()
    rows = queries.predictions(job_id, label, min_confidence, misclassified, True if errors else None, limit)
    emit(rows, fmt, ["path", "predicted", "confidence", "decision", "true_label", "top_k", "error"])


# --- services ---------------------------------------------------------------------------------------

@app.command()
def worker(queues: Annotated[str, typer.Option(help="comma-separated: gpu,cpu")] = "gpu,cpu",
           concurrency: Annotated[int, typer.Option(help="worker processes (1 per GPU)")] = 1,
           hostname: Annotated[str | None, typer.Option(help="worker name, e.g. gpu0@%h")] = None,
           gpu: Annotated[str | None, typer.Option(help="pin to this GPU index (CUDA_VISIBLE_DEVICES)")] = None,
           loglevel: str = "INFO") -> None:
    """Start a Celery worker (TensorFlow loads in its child processes only)."""
    ready_database()
    env = {**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    from worker.broker import ensure_embedded_redis

    ensure_embedded_redis()
    cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", queues, "-c", str(concurrency),
           "-l", loglevel, "--pool", "prefork"]
    if hostname:
        cmd += ["-n", hostname]
    os.execvpe(cmd[0], cmd, env)


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    ready_database()
    uvicorn.run("api.http:app", host=host, port=port)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    from db.session import database_url, upgrade

    upgrade(revision=revision)
    typer.echo(f"database at {revision}: {_safe_url(database_url())}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument("base", help="target revision")) -> None:
    from db.session import database_url, downgrade

    downgrade(revision=revision)
    typer.echo(f"database at {revision}: {_safe_url(database_url())}")


@db_app.command("current")
def db_current() -> None:
    from db.session import current_revision, head_revision

    typer.echo(f"current {current_revision() or 'none'}, head {head_revision()}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def demo(limit: Annotated[int | None, typer.Option(help="train on a subset (default: all 50,000)")] = None,
         images: Annotated[int, typer.Option(help="test images exported and bulk-classified")] = 300) -> None:
    """The main job end to end: worker, training, layer analysis, bulk classification with Grad-CAM."""
    from api.demo import run_demo

    raise typer.Exit(run_demo(limit=limit, n_images=images))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
