"""Job bodies shared by the Celery tasks and `convlens run`: each runs ml/ code and records it in the database.

Every unit of work (a training run, a fold, a shard, an aggregation) writes its rows in one transaction that
first deletes what an earlier attempt of the same unit wrote, so re-deliveries never duplicate rows.
TensorFlow is imported lazily inside the bodies, never in a process before it forks.
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, OperationalError

from db.models import FINISHED, Artifact, Job, Metric, Prediction, TrainedModelRow, utcnow
from db.session import session_scope
from worker import params as P
from worker.paths import check_folder, files_within, job_dir

TRANSIENT: tuple[type[BaseException], ...] = (OperationalError,)


class JobCancelled(Exception):
    pass


class JobError(Exception):
    """A job cannot run as asked (bad reference, missing folder)."""


def create_job(kind: str, params: dict, parent_id: str | None = None, part: int | None = None) -> str:
    validated = P.validate(kind, params) if parent_id is None else params
    with session_scope() as s:
        job = Job(kind=kind, params=validated, parent_id=parent_id, part=part, status="queued")
        s.add(job)
        s.flush()
        return job.id


def _hostname(hostname: str | None) -> str:
    return hostname or f"inline@{socket.gethostname()}"


def start(job_id: str, hostname: str | None) -> Job | None:
    """Marks the job running; None when it is cancelled or already finished (a redelivery to skip)."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobError(f"job {job_id} not found")
        if job.status in FINISHED:
            return None
        job.status, job.worker, job.error = "running", _hostname(hostname), None
        job.started_at = job.started_at or utcnow()
        return job


def finish(s, job: Job, result: dict | None = None) -> None:
    job.status, job.finished_at = "succeeded", utcnow()
    if result is not None:
        job.result = result
    job.progress = {**(job.progress or {}), "fraction": 1.0}


def fail(job_id: str, error: str) -> None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is not None and job.status not in FINISHED:
            job.status, job.error, job.finished_at = "failed", error, utcnow()
            if job.parent_id:
                parent = s.get(Job, job.parent_id)
                if parent is not None and parent.status not in FINISHED:
                    parent.status, parent.finished_at = "failed", utcnow()
                    parent.error = f"part {job.part} failed: {error}"


def is_cancelled(job_id: str) -> bool:
    with session_scope() as s:
        job = s.get(Job, job_id)
        return job is None or job.status == "cancelled"


class Reporter:
    """Progress callback for ml/: writes job.progress at most once a second and stops cancelled jobs."""

    def __init__(self, job_id: str, every_s: float = 1.0, watch: list[str] | None = None) -> None:
        self.job_id, self.every_s, self.last = job_id, every_s, 0.0
        self.watch = watch or [job_id]

    def __call__(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and event.get("stage") not in ("epoch", "evaluate"):
            return
        self.last = now
        with session_scope() as s:
            job = s.get(Job, self.job_id)
            if job is None or any(s.get(Job, j).status == "cancelled" for j in self.watch if s.get(Job, j)):
                raise JobCancelled(self.job_id)
            job.progress = {**(job.progress or {}), **_progress_fields(event)}


def _progress_fields(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if k != "metrics"}
    if "done" in event and event.get("total"):
        out["fraction"] = round(event["done"] / event["total"], 4)
    if event.get("metrics"):
        out["metrics"] = {k: round(v, 4) for k, v in event["metrics"].items()}
    return out


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Marks the job failed on a permanent error (transient DB errors are left to the caller's retry)."""

    def wrapper(job_id: str, *args, **kwargs):
        try:
            return fn(job_id, *args, **kwargs)
        except JobCancelled:
            return None
        except TRANSIENT:
            raise
        except Exception as exc:
            fail(job_id, f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, JobError | ValueError | DBAPIError):
                traceback.print_exc()
            raise

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def resolve_model(ref: str) -> Path:
    """A model path, or the model that train job `ref` registered."""
    path = Path(ref).expanduser()
    if path.suffix == ".keras" and path.is_file():
        return path.resolve()
    with session_scope() as s:
        row = s.scalars(select(TrainedModelRow).where(TrainedModelRow.job_id == ref)
                        .order_by(TrainedModelRow.id.desc())).first()
        if row is not None:
            return Path(row.path)
    raise JobError(f"model {ref!r}: neither a .keras file nor the id of a train job with a model")


def _metric_rows(job_id: str, metrics: dict, class_names: list[str], split: str,
                 fold: int | None = None) -> list[Metric]:
    from ml.evaluate import flat_metrics

    return [Metric(job_id=job_id, name=n, value=float(v), class_name=c, fold=fold, split=split)
            for n, v, c in flat_metrics(metrics, class_names)]


def _replace(s, model, job_id: str, column: str | None, part: int | None) -> None:
    stmt = delete(model).where(model.job_id == job_id)
    if column is not None:
        col = getattr(model, column)
        stmt = stmt.where(col.is_(None) if part is None else col == part)
    s.execute(stmt)


def _train_config(params: dict, **overrides):
    from ml.train import TrainConfig

    return TrainConfig.from_dict({**P.TrainParams.model_validate(
        {k: v for k, v in params.items() if k != "folds"}).train_config(), **overrides})


def _summary(result: dict) -> dict:
    """The parts of an ml result worth keeping on the job row (no confusion matrices, no per-step data)."""
    test = result["metrics"]["test"]
    return {
        "accuracy": test["accuracy"], "macro_f1": test["macro"]["f1"],
        "thresholded_accuracy": result["metrics"].get("test_thresholded", {}).get("accuracy"),
        "epochs_run": result["epochs_run"], "epochs_trained": result["epochs_trained"],
        "warnings": result["warnings"], "best_epoch": result["best_epoch"],
        "precision_policy": result["precision_policy"], "timings": result["timings"],
        "history": result["history"], "paths": result["paths"], "n_train": result["n_train"],
        "n_val": result["n_val"], "n_test": result["n_test"], "class_names": result["class_names"],
        "thresholds": result["thresholds"], "confusion_matrix": test["confusion_matrix"],
        "per_class_f1": {c: v["f1"] for c, v in test["per_class"].items()},
    }


# --- train -------------------------------------------------------------------------------------------

@guarded
def run_train(job_id: str, hostname: str | None = None) -> dict | None:
    job = start(job_id, hostname)
    if job is None:
        return None
    from ml.train import train

    result = train(_train_config(job.params), job_dir(job_id), progress=Reporter(job_id))
    with session_scope() as s:
        for model in (Metric, Artifact, TrainedModelRow):
            _replace(s, model, job_id, None, None)
        for split in ("test", "validation", "test_thresholded"):
            if split in result["metrics"]:
                s.add_all(_metric_rows(job_id, result["metrics"][split], result["class_names"], split))
        s.add_all(Artifact(job_id=job_id, kind=k, path=p) for k, p in result["paths"].items())
        s.add(TrainedModelRow(job_id=job_id, path=result["paths"]["model"], preset=result["preset"],
                              class_names=result["class_names"], thresholds=result["thresholds"]))
        job = s.get(Job, job_id)
        finish(s, job, _summary(result))
    return result


# --- k-fold ------------------------------------------------------------------------------------------

def _children(s, job_id: str) -> list[Job]:
    return list(s.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.part)))


def _ready_to_aggregate(s, job_id: str, what: str) -> tuple[Job | None, list[Job]]:
    """The parent and its children when every child succeeded; (None, []) when the parent already ended."""
    job = s.get(Job, job_id)
    if job is None or job.status in FINISHED:
        return None, []
    children = _children(s, job_id)
    missing = [c.part for c in children if c.status != "succeeded"]
    if missing:
        raise JobError(f"{what} {missing} did not succeed")
    return job, children


@guarded
def plan_kfold(job_id: str, hostname: str | None = None) -> list[str]:
    """Creates one child job per fold (once: a redelivery reuses them) and returns their ids."""
    job = start(job_id, hostname)
    if job is None:
        return []
    with session_scope() as s:
        existing = _children(s, job_id)
        if not existing:
            existing = [Job(kind="kfold_fold", params={}, parent_id=job_id, part=i)
                        for i in range(job.params["folds"])]
            s.add_all(existing)
            s.flush()
        return [c.id for c in existing]


@guarded
def run_fold(child_id: str, hostname: str | None = None) -> dict | None:
    child = start(child_id, hostname)
    if child is None:
        return None
    with session_scope() as s:
        parent = s.get(Job, child.parent_id)
        parent_id, params = parent.id, parent.params
    from ml.kfold import run_fold as ml_run_fold

    cfg = _train_config(params)
    result = ml_run_fold(cfg, params["folds"], child.part, job_dir(parent_id) / f"fold{child.part}",
                         progress=Reporter(child_id, watch=[child_id, parent_id]))
    with session_scope() as s:
        _replace(s, Metric, parent_id, "fold", child.part)
        _replace(s, Artifact, parent_id, "part", child.part)
        s.add_all(_metric_rows(parent_id, result["metrics"]["test"], result["class_names"], "fold",
                               child.part))
        s.add(Artifact(job_id=parent_id, kind="fold_model", path=result["paths"]["model"], part=child.part))
        finish(s, s.get(Job, child_id), _summary(result))
        parent = s.get(Job, parent_id)
        done = sum(c.status == "succeeded" for c in _children(s, parent_id))
        parent.progress = {"stage": "folds", "done": done, "total": params["folds"],
                           "fraction": round(done / params["folds"], 4)}
    return result


@guarded
def aggregate_kfold(job_id: str, hostname: str | None = None) -> dict | None:
    from ml.kfold import aggregate_folds

    with session_scope() as s:
        job, children = _ready_to_aggregate(s, job_id, "folds")
        if job is None:
            return None
        agg = aggregate_folds([c.result for c in children])
        _replace(s, Metric, job_id, "fold", None)
        for name, stats in agg["metrics"].items():
            metric, _, cls = name.partition(":")
            s.add(Metric(job_id=job_id, name=f"{metric}_mean", value=stats["mean"], class_name=cls or None,
                         split="kfold"))
            s.add(Metric(job_id=job_id, name=f"{metric}_std", value=stats["std"], class_name=cls or None,
                         split="kfold"))
        finish(s, job, {**agg, "workers": sorted({c.worker for c in children if c.worker})})
        return job.result


# --- layer analysis --------------------------------------------------------------------------------

@guarded
def run_layers(job_id: str, hostname: str | None = None) -> dict | None:
    job = start(job_id, hostname)
    if job is None:
        return None
    from ml.analysis import layer_probes
    from ml.saved import load_trained
    from ml.train import TrainConfig, load_dataset

    p = P.LayersParams.model_validate(job.params)
    trained = load_trained(resolve_model(p.model))
    data = load_dataset(TrainConfig(dataset=p.dataset, image_size=trained.input_size[0]))
    report = Reporter(job_id)
    result = layer_probes(trained.model, data, layers=p.layers, train_limit=p.limit, test_limit=p.test_limit,
                          out_dir=job_dir(job_id), progress=report)
    with session_scope() as s:
        _replace(s, Metric, job_id, None, None)
        _replace(s, Artifact, job_id, None, None)
        for row in result["rows"]:
            s.add(Metric(job_id=job_id, name=f"probe_accuracy.{row['layer']}", value=row["probe_accuracy"],
                         split="test"))
            if row.get("cumulative_accuracy") is not None:
                s.add(Metric(job_id=job_id, name=f"cumulative_accuracy.{row['layer']}",
                             value=row["cumulative_accuracy"], split="test"))
        s.add(Artifact(job_id=job_id, kind="layer_plot", path=result["plot"]))
        finish(s, s.get(Job, job_id), result)
    return result


# --- bulk classification ---------------------------------------------------------------------------

@guarded
def plan_classify(job_id: str, hostname: str | None = None) -> list[str]:
    """Lists the folder once and fixes each shard's files in its child job, so shards never overlap."""
    job = start(job_id, hostname)
    if job is None:
        return []
    from ml.classify import list_folder, shard_files

    p = P.ClassifyParams.model_validate(job.params)
    resolve_model(p.model)  # fail early on a bad reference
    root = check_folder(p.folder)
    files = files_within(root, list_folder(root))
    n = p.shards or max(1, -(-len(files) // p.shard_size))
    with session_scope() as s:
        existing = _children(s, job_id)
        if not existing:
            existing = [Job(kind="classify_shard", params={"files": [str(f) for f in shard]},
                            parent_id=job_id, part=i) for i, shard in enumerate(shard_files(files, n))]
            s.add_all(existing)
            parent = s.get(Job, job_id)
            parent.progress = {"stage": "classify", "done": 0, "total": len(files), "fraction": 0.0}
            s.flush()
        return [c.id for c in existing]


@guarded
def run_classify_shard(child_id: str, hostname: str | None = None) -> dict | None:
    child = start(child_id, hostname)
    if child is None:
        return None
    with session_scope() as s:
        parent = s.get(Job, child.parent_id)
        parent_id = parent.id
        p = P.ClassifyParams.model_validate(parent.params)
    from ml.classify import classify_files
    from ml.saved import load_trained

    trained = load_trained(resolve_model(p.model))
    out = job_dir(parent_id) / "overlays" if p.gradcam else None
    rows = classify_files(trained, [Path(f) for f in child.params["files"]], top_k=p.top_k, gradcam=p.gradcam,
                          out_dir=out, batch_size=p.batch_size,
                          progress=Reporter(child_id, watch=[child_id, parent_id]))
    with session_scope() as s:
        _replace(s, Prediction, parent_id, "shard", child.part)
        _replace(s, Artifact, parent_id, "part", child.part)
        s.add_all(Prediction(job_id=parent_id, shard=child.part, path=r["path"], predicted=r.get("predicted"),
                             confidence=r.get("confidence"), top_k=r.get("top_k"), decision=r.get("decision"),
                             true_label=r.get("true_label"), error=r.get("error")) for r in rows)
        s.add_all(Artifact(job_id=parent_id, kind="gradcam_overlay", path=r["overlay"], part=child.part)
                  for r in rows if r.get("overlay"))
        ok = sum(r.get("error") is None for r in rows)
        finish(s, s.get(Job, child_id), {"classified": ok, "errors": len(rows) - ok})
        parent = s.get(Job, parent_id)
        done = sum(len(c.params["files"]) for c in _children(s, parent_id) if c.status == "succeeded")
        total = (parent.progress or {}).get("total") or done
        parent.progress = {"stage": "classify", "done": done, "total": total,
                           "fraction": round(done / max(1, total), 4)}
    return {"classified": ok, "errors": len(rows) - ok}


@guarded
def aggregate_classify(job_id: str, hostname: str | None = None) -> dict | None:
    with session_scope() as s:
        job, children = _ready_to_aggregate(s, job_id, "shards")
        if job is None:
            return None
        preds = list(s.scalars(select(Prediction).where(Prediction.job_id == job_id)))
        counts: dict[str, int] = {}
        for pr in preds:
            if pr.error is None:
                counts[pr.predicted] = counts.get(pr.predicted, 0) + 1
        errors = sum(pr.error is not None for pr in preds)
        _replace(s, Metric, job_id, None, None)
        s.add_all(Metric(job_id=job_id, name="count", value=float(n), class_name=c, split="classify")
                  for c, n in sorted(counts.items()))
        s.add(Metric(job_id=job_id, name="unreadable", value=float(errors), split="classify"))
        result = {"files": len(preds), "classified": len(preds) - errors, "unreadable": errors,
                  "per_class": counts, "shards": len(children),
                  "workers": sorted({c.worker for c in children if c.worker})}
        overlays = s.scalars(select(Artifact.path).where(Artifact.job_id == job_id,
                                                          Artifact.kind == "gradcam_overlay")).first()
        if overlays:
            result["overlay_dir"] = str(Path(overlays).parent)
        finish(s, job, result)
        return result


# --- running in this process, cancelling -----------------------------------------------------------

def run_inline(kind: str, params: dict) -> str:
    """Runs a job in this process (folds and shards one after another), recorded like a queued one."""
    job_id = create_job(kind, params)
    execute_inline(job_id)
    return job_id


def execute_inline(job_id: str) -> None:
    with session_scope() as s:
        kind = s.get(Job, job_id).kind
    if kind == "train":
        run_train(job_id)
    elif kind == "layers":
        run_layers(job_id)
    elif kind == "kfold":
        for child in plan_kfold(job_id):
            run_fold(child)
        if not is_cancelled(job_id):
            aggregate_kfold(job_id)
    elif kind == "classify":
        for child in plan_classify(job_id):
            run_classify_shard(child)
        if not is_cancelled(job_id):
            aggregate_classify(job_id)
    else:
        raise JobError(f"unknown job kind {kind!r}")


def mark_cancelled(job_id: str) -> list[str]:
    """Marks the job and its unfinished children cancelled; returns every id to revoke."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobError(f"job {job_id} not found")
        ids = [job_id] + [c.id for c in _children(s, job_id)]
        now: datetime = utcnow()
        for j in [job, *_children(s, job_id)]:
            if j.status not in FINISHED:
                j.status, j.finished_at = "cancelled", now
        return ids
