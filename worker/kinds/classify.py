"""classify: every file under a folder gets a row (prediction or error); shards of the listing run anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from convlens.db.models import Artifact, Job, Prediction
from convlens.db.rows import ArtifactRow, MetricRow, PredictionRow
from convlens.ml.params import JobParams
from convlens.worker.heap import freeze_long_lived
from convlens.worker.kinds.base import Context, JobKind, Output
from convlens.worker.kinds.layers import ModelRef
from convlens.worker.paths import check_folder, check_model, resolve_model, unchanged


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


class ClassifyResult(BaseModel):
    files: int
    classified: int
    unreadable: int
    per_class: dict[str, int]
    shards: int
    workers: list[str] = []
    overlay_dir: str | None = None
    set_sizes: dict[str, int] = Field({}, description="images per conformal set size")


def refresh_planner_statistics(s: Session) -> None:
    """PostgreSQL plans a job's filtered pages from table statistics; right after a large job's rows arrive they
    are stale until autovacuum gets to them, and a page that walks an index for 1 ms can take 400 ms meanwhile.
    ANALYZE samples a fixed number of rows, so it costs about the same whatever the table's size."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("ANALYZE predictions"))


class Classify(JobKind, name="classify", params=ClassifyParams, result=ClassifyResult, part="shard",
               part_result=ShardResult,
               title="classify every image under a folder (unreadable files are recorded and skipped)"):

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        validated = super().validate(params, strict_paths)
        validated["folder"] = str(check_folder(validated["folder"], require_roots=strict_paths))
        validated["model"] = check_model(validated["model"], require_roots=strict_paths)
        return validated

    def plan(self, ctx: Context) -> list[dict[str, Any]]:
        """Lists the folder once and fixes each shard's files, so shards never overlap."""
        from convlens.ml.listing import list_folder, shard_files

        p: ClassifyParams = ctx.params
        resolve_model(p.model)  # fail early on a bad reference
        root = check_folder(str(unchanged(p.folder)))
        files = list_folder(root)
        n = p.shards or max(1, -(-len(files) // p.shard_size))
        return [{"files": shard} for shard in shard_files(files, n)]

    def part_size(self, part_params: dict[str, Any]) -> int:
        return len(part_params.get("files", []))

    def run_part(self, ctx: Context) -> Output:
        from convlens.ml.classify import SetOptions, classify_files
        from convlens.ml.saved import load_trained_cached

        p: ClassifyParams = ctx.params
        trained = load_trained_cached(resolve_model(p.model))
        freeze_long_lived()  # the model and TensorFlow stay: full collections need not walk them every shard
        rows = classify_files(trained, ctx.part_params["files"], top_k=p.top_k,
                              gradcam=p.gradcam, out_dir=ctx.out_dir / "overlays" if p.gradcam else None,
                              batch_size=p.batch_size, progress=ctx.progress, within=unchanged(p.folder),
                              conformal=None if p.conformal == "none" else SetOptions(
                                  p.alpha, p.conformal, p.class_conditional, p.decision == "conformal"))
        ok = sum(r.get("error") is None for r in rows)
        return Output(result=ShardResult(classified=ok, errors=len(rows) - ok),
                      # ml/ made these rows itself: typed without a validation pass per row
                      predictions=[PredictionRow.model_construct(**{k: v for k, v in r.items() if k != "overlay"})
                                   for r in rows],
                      artifacts=[ArtifactRow(kind="gradcam_overlay", path=r["overlay"]) for r in rows
                                 if r.get("overlay")])

    def aggregate(self, s: Session, ctx: Context, parts: list[Job]) -> Output:
        refresh_planner_statistics(s)
        mine = Prediction.job_id == ctx.job_id
        counts = dict(s.execute(select(Prediction.predicted, func.count()).where(mine, Prediction.error.is_(None))
                                .group_by(Prediction.predicted).order_by(Prediction.predicted)).all())
        files = s.scalar(select(func.count()).select_from(Prediction).where(mine)) or 0
        errors = s.scalar(select(func.count()).select_from(Prediction).where(mine, Prediction.error.is_not(None))) or 0
        sizes = s.execute(select(Prediction.set_size, func.count()).where(mine, Prediction.set_size.is_not(None))
                          .group_by(Prediction.set_size).order_by(Prediction.set_size)).all()
        overlay = s.scalars(select(Artifact.path).where(Artifact.job_id == ctx.job_id,
                                                        Artifact.kind == "gradcam_overlay").limit(1)).first()
        result = ClassifyResult(files=files, classified=files - errors, unreadable=errors, per_class=counts,
                                shards=len(parts), workers=sorted({p.worker for p in parts if p.worker}),
                                overlay_dir=str(Path(overlay).parent) if overlay else None,
                                set_sizes={str(k): n for k, n in sizes})
        metrics = [MetricRow(name="count", value=float(n), class_name=c, split="classify")
                   for c, n in sorted(counts.items())]
        return Output(result=result, metrics=[*metrics, MetricRow(name="unreadable", value=float(errors),
                                                                  split="classify")])

    def headline(self, result: dict[str, Any]) -> str | None:
        return f"{result['classified']} classified, {result['unreadable']} unreadable"

    def describe(self, result: dict[str, Any]) -> list[str]:
        lines = [f"{result['classified']} classified, {result['unreadable']} unreadable, "
                 f"{result['shards']} shards; per class: {json.dumps(result['per_class'])}"]
        if result.get("set_sizes"):
            lines.append(f"conformal set sizes: {json.dumps(result['set_sizes'])}")
        if result.get("overlay_dir"):
            lines.append(f"Grad-CAM overlays: {result['overlay_dir']}")
        return lines

    def public_params(self, params: dict[str, Any], is_part: bool) -> dict[str, Any]:
        return {"files": len(params.get("files", []))} if is_part else params
