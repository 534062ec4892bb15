"""classify: every file under a folder gets a row (prediction or error); shards of the listing run anywhere."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from convlens.db.rows import ArtifactRow, MetricRow, PredictionRow
from convlens.ml.feasible import feature_map_problem
from convlens.ml.folder_eval import FolderEvaluation, LabelledCounts, evaluate
from convlens.ml.keras_file import read_config
from convlens.ml.params import JobParams, refused
from convlens.worker.artifacts import artifact_store, resolve_model
from convlens.worker.errors import JobError
from convlens.worker.heap import freeze_long_lived
from convlens.worker.kinds.base import Context, Done, JobKind, Output, table_lines
from convlens.worker.kinds.layers import ModelRef
from convlens.worker.paths import check_folder, check_model, is_run_key, stored, unchanged


class ClassifyParams(JobParams):
    folder: Annotated[str, Field(min_length=1, max_length=4096, description="folder of images, walked recursively")]
    model: ModelRef
    gradcam: bool = Field(False, description="write Grad-CAM overlays")
    top_k: Annotated[int, Field(ge=1, le=100)] = Field(3, description="classes listed per file")
    shards: Annotated[int, Field(ge=1, le=1000)] | None = Field(None, description="parts (default: by shard size)")
    shard_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        5000, description="files per shard (each ends with a store and a task hand-over: larger ones cost less)")
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 256
    conformal: Literal["aps", "lac", "none"] = Field(
        "aps", description="conformal prediction set per image (aps: adaptive; lac: smallest on average; none)")
    alpha: Annotated[float, Field(ge=0.001, le=0.5)] = Field(
        0.1, description="sets hold the true class with probability >= 1 - alpha")
    class_conditional: bool = Field(False, description="cover every class at 1 - alpha, not only on average")
    decision: Literal["threshold", "conformal"] = Field(
        "threshold", description="threshold: per-class thresholds; conformal: uncertain unless the set is one class")


class ShardResult(BaseModel):
    classified: int
    errors: int
    # Counted where the rows are made, so the aggregation sums the shards instead of scanning the rows.
    per_class: dict[str, int] = {}
    set_sizes: dict[str, int] = {}
    overlay_dir: str | None = None
    labelled: int = 0  # readable files whose parent folder names a class
    correct: int = 0  # of those, predicted as that class
    counts: LabelledCounts | None = None  # what the evaluation on those files is computed from


class ClassifyResult(BaseModel):
    files: int
    classified: int
    unreadable: int
    per_class: dict[str, int]
    shards: int
    workers: list[str] = []
    overlay_dir: str | None = None
    set_sizes: dict[str, int] = Field({}, description="images per conformal set size")
    labelled: int = Field(0, description="readable images whose folder names a class (their true label)")
    accuracy: float | None = Field(None, description="accuracy on the labelled images (None: no labels)")
    evaluation: FolderEvaluation | None = Field(None, description="the figures on the labelled images")

    def summary(self) -> dict[str, float | None]:
        ev = self.evaluation
        return {"files": self.files, "classified": self.classified, "unreadable": self.unreadable,
                "labelled": self.labelled, "accuracy": self.accuracy, "macro_f1": ev.macro.f1 if ev else None,
                "ece": ev.ece_after if ev else None, "coverage": ev.coverage if ev else None}


def refresh_planner_statistics(s: Session, rows: int) -> None:
    """PostgreSQL plans a job's filtered pages from table statistics; right after a large job's rows arrive they
    are stale until autovacuum gets to them, and a page that walks an index can take hundreds of times longer
    meanwhile. ANALYZE samples a fixed number of rows, so its cost does not shrink with a small job: it runs only
    when the job's `rows` are a tenth of what the statistics last counted, as autovacuum's own rule has it, sooner."""
    if s.get_bind().dialect.name != "postgresql":
        return
    counted = s.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'predictions'")) or 0
    if rows >= 0.1 * max(counted, 0):
        s.execute(text("ANALYZE predictions"))


def folder_root(folder: str) -> Path:
    """The folder to classify on this machine: a checked path as it was checked, or a stored folder of
    convlens's own (`runs/ID/...`) from the artifact store."""
    return artifact_store().fetch_folder(folder) if is_run_key(folder) else check_folder(str(unchanged(folder)))


def prediction_rows(rows: list[dict[str, Any]]) -> list[PredictionRow]:
    """ml/ made these rows itself: typed without a validation pass per row."""
    return [PredictionRow.model_construct(**{k: v for k, v in r.items() if k != "overlay"}) for r in rows]


class Classify(JobKind, name="classify", params=ClassifyParams, result=ClassifyResult, part="shard",
               part_result=ShardResult, template="_classify.html",
               title="classify every image under a folder (unreadable files are recorded and skipped)"):
    predicts = True

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        validated = super().validate(params, strict_paths)
        if not (is_run_key(validated["folder"]) and not strict_paths):  # not one convlens stored (a sample)
            validated["folder"] = str(check_folder(validated["folder"], require_roots=strict_paths))
        validated["model"] = check_model(validated["model"], require_roots=strict_paths)
        try:
            model = resolve_model(validated["model"]).path
        except JobError:
            return validated  # no model registered under that id yet: the run says so
        problem = feature_map_problem(read_config(model))  # a file that is no Keras model is refused here
        if validated.get("gradcam") and problem:
            raise refused(ClassifyParams, "gradcam", problem, True)
        return validated

    def plan(self, ctx: Context) -> list[dict[str, Any]]:
        """Lists the folder once and fixes each shard's files, so shards never overlap."""
        from convlens.ml.listing import list_folder, shard_files

        p: ClassifyParams = ctx.params
        resolve_model(p.model)  # fail early on a bad reference
        root = folder_root(p.folder)
        files = list_folder(root)
        if is_run_key(p.folder):  # the folder lies elsewhere on each machine: shards name files within it
            files = [str(Path(f).relative_to(root)) for f in files]
        n = p.shards or max(1, -(-len(files) // p.shard_size))
        return [{"files": shard} for shard in shard_files(files, n)]

    def part_size(self, part_params: dict[str, Any]) -> int:
        return len(part_params.get("files", []))

    def run_part(self, ctx: Context) -> Output:
        from convlens.ml.classify import SetOptions, classify_files
        from convlens.ml.saved import load_trained_cached

        p: ClassifyParams = ctx.params
        model = resolve_model(p.model)
        trained = load_trained_cached(model.path, model.registered)
        root = folder_root(p.folder)
        files = [str(root / f) for f in ctx.part_params["files"]] if is_run_key(p.folder) else ctx.part_params["files"]
        freeze_long_lived()  # the model and TensorFlow stay: full collections need not walk them every shard
        # Rows are typed for the store on a thread, batch by batch, while the model runs the next batch.
        tallies: list[LabelledCounts] = []
        with ThreadPoolExecutor(max_workers=1) as typing_thread:
            typed: list[Future[list[PredictionRow]]] = []
            rows = classify_files(trained, files, top_k=p.top_k,
                                  gradcam=p.gradcam, out_dir=ctx.out_dir / "overlays" if p.gradcam else None,
                                  batch_size=p.batch_size, progress=ctx.progress, within=root,
                                  conformal=None if p.conformal == "none" else SetOptions(
                                      p.alpha, p.conformal, p.class_conditional, p.decision == "conformal"),
                                  on_rows=lambda batch: typed.append(typing_thread.submit(prediction_rows, batch)),
                                  on_labelled=tallies.append)
            predictions = [row for batch in typed for row in batch.result()]
        good = [r for r in rows if r.get("error") is None]
        overlays = [ArtifactRow(kind="gradcam_overlay", path=r["overlay"]) for r in good if r.get("overlay")]
        return Output(result=ShardResult(classified=len(good), errors=len(rows) - len(good),
                                         per_class=dict(Counter(r["predicted"] for r in good)),
                                         set_sizes={str(k): n for k, n in Counter(
                                             len(r["prediction_set"]) for r in good
                                             if r.get("prediction_set") is not None).items()},
                                         overlay_dir=str(Path(overlays[0].path).parent) if overlays else None,
                                         labelled=sum(r.get("true_label") is not None for r in good),
                                         correct=sum(r["predicted"] == r.get("true_label") for r in good),
                                         counts=sum(tallies[1:], tallies[0]) if tallies else None),
                      predictions=predictions, artifacts=overlays)

    def aggregate(self, ctx: Context, parts: list[Done]) -> Output:
        shards: list[ShardResult] = [p.result for p in parts]
        counts, sizes = Counter(), Counter()
        for shard in shards:
            counts.update(shard.per_class)
            sizes.update(shard.set_sizes)
        errors = sum(shard.errors for shard in shards)
        files = errors + sum(shard.classified for shard in shards)
        labelled = sum(shard.labelled for shard in shards)
        tallies = [shard.counts for shard in shards if shard.counts is not None]
        result = ClassifyResult(files=files, classified=files - errors, unreadable=errors,
                                per_class=dict(sorted(counts.items())), shards=len(parts),
                                workers=sorted({p.worker for p in parts if p.worker}),
                                overlay_dir=next((sh.overlay_dir for sh in shards if sh.overlay_dir), None),
                                set_sizes={k: sizes[k] for k in sorted(sizes, key=int)}, labelled=labelled,
                                accuracy=sum(shard.correct for shard in shards) / labelled if labelled else None,
                                evaluation=evaluate(sum(tallies[1:], tallies[0])) if tallies else None)
        metrics = [MetricRow(name="count", value=float(n), class_name=c, split="classify")
                   for c, n in sorted(counts.items())]
        if result.evaluation is not None:  # the labelled images' figures, queryable like a training run's
            ev = result.evaluation
            metrics += [MetricRow(name=name, value=value, split="labelled") for name, value in (
                ("accuracy", ev.accuracy), (f"top{ev.top_k}_accuracy", ev.top_k_accuracy),
                ("macro_f1", ev.macro.f1), ("weighted_f1", ev.weighted.f1), ("ece_before", ev.ece_before),
                ("ece_after", ev.ece_after), ("labelled", float(ev.labelled)),
                *((("coverage", ev.coverage), ("mean_set_size", ev.mean_set_size)) if ev.coverage is not None else ()))]
            metrics += [MetricRow(name=m, value=getattr(f, m), class_name=c, split="labelled")
                        for c, f in ev.per_class.items() for m in ("precision", "recall", "f1")]
        return Output(result=result, metrics=[*metrics, MetricRow(name="unreadable", value=float(errors),
                                                                  split="classify")])

    def after_finish(self, s: Session, job_id: str, result: ClassifyResult) -> None:
        refresh_planner_statistics(s, result.files)  # the aggregation counted them: no second count

    def headline(self, result: ClassifyResult) -> str | None:
        accuracy = f", accuracy {result.accuracy:.4f}" if result.accuracy is not None else ""
        return f"{result.classified} classified, {result.unreadable} unreadable{accuracy}"

    def describe(self, result: ClassifyResult) -> list[str]:
        lines = [f"{result.classified} classified, {result.unreadable} unreadable, "
                 f"{result.shards} shards; per class: {json.dumps(result.per_class)}"]
        ev = result.evaluation
        if ev is not None:
            lines.append(f"on the {ev.labelled} labelled images: accuracy {ev.accuracy:.4f}, macro F1 "
                         f"{ev.macro.f1:.4f}, top-{ev.top_k} {ev.top_k_accuracy:.4f}; ECE {ev.ece_before:.4f} -> "
                         f"{ev.ece_after:.4f} with the model's temperature" + (
                             f"; conformal coverage {ev.coverage:.4f}, mean set size {ev.mean_set_size:.2f}"
                             if ev.coverage is not None else ""))
            lines += ["confusion matrix (rows: true class, columns: predicted):", *table_lines(
                [{"true": c, **dict(zip(ev.class_names, row, strict=True))}
                 for c, row in zip(ev.class_names, ev.confusion_matrix, strict=True)], ["true", *ev.class_names])]
        elif result.accuracy is not None:
            lines.append(f"accuracy on the {result.labelled} labelled images: {result.accuracy:.4f}")
        if result.set_sizes:
            lines.append(f"conformal set sizes: {json.dumps(result.set_sizes)}")
        if result.overlay_dir:
            lines.append(f"Grad-CAM overlays: {result.overlay_dir}" + ("" if Path(result.overlay_dir).is_dir() else
                         f" (not on this machine: `convlens artifacts get {stored(result.overlay_dir)}` copies them)"))
        return lines

    def public_params(self, params: dict[str, Any], is_part: bool) -> dict[str, Any]:
        return {"files": len(params.get("files", []))} if is_part else params
