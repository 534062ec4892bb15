"""kfold: stratified k-fold over the training data, one part per fold (any worker), then mean ± sample s.d.."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from convlens.db.rows import ArtifactRow, MetricRow
from convlens.ml.config import TrainConfig, TrainOptions
from convlens.ml.params import refused
from convlens.worker.kinds.base import Context, Done, JobKind, Output
from convlens.worker.kinds.train import TrainResult, calibration_rows, metric_rows, train_config, validate_training


class KfoldParams(TrainOptions):
    folds: Annotated[int, Field(ge=2, le=20)] = Field(5, description="K")


class MeanStd(BaseModel):
    mean: float
    std: float = Field(description="the sample standard deviation over the folds (ddof=1)")
    values: list[float]


class KfoldResult(BaseModel):
    folds: int
    metrics: dict[str, MeanStd]  # accuracy, macro_f1, f1:<class>
    workers: list[str] = []

    def summary(self) -> dict[str, float]:
        overall = {k: v for k, v in self.metrics.items() if ":" not in k}
        return {"folds": self.folds, **{k: v.mean for k, v in overall.items()},
                **{f"{k}_std": v.std for k, v in overall.items()}}


class Kfold(JobKind, name="kfold", params=KfoldParams, result=KfoldResult, part="fold", part_result=TrainResult,
            template="_kfold.html", part_template="_train.html",
            title="stratified k-fold over the training data: one job per fold, then mean ± sample s.d."):

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        from convlens.ml.feasible import folds_problem

        validated = validate_training(self, params, strict_paths)
        parsed = KfoldParams.model_validate(validated)
        problem = folds_problem(TrainConfig(**parsed.model_dump(include=set(TrainOptions.model_fields))), parsed.folds)
        if problem:
            raise refused(KfoldParams, "folds", problem, parsed.folds)
        return validated

    def plan(self, ctx: Context) -> list[dict[str, Any]]:
        return [{} for _ in range(ctx.params.folds)]

    def run_part(self, ctx: Context) -> Output:
        from convlens.ml.kfold import run_fold

        assert ctx.part is not None
        result = run_fold(train_config(ctx.params), ctx.params.folds, ctx.part, ctx.out_dir / f"fold{ctx.part}",
                          progress=ctx.progress)
        return Output(result=TrainResult.of(result),
                      metrics=[*metric_rows(result["metrics"]["test"], result["class_names"], "fold"),
                               *calibration_rows(result, "fold")],
                      artifacts=[ArtifactRow(kind="fold_model", path=result["paths"]["model"])])

    def aggregate(self, ctx: Context, parts: list[Done]) -> Output:
        from convlens.ml.kfold import aggregate_folds

        agg = aggregate_folds([p.result.model_dump() for p in parts])
        rows = []
        for name, stats in agg["metrics"].items():
            metric, _, cls = name.partition(":")
            rows += [MetricRow(name=f"{metric}_{stat}", value=stats[stat], class_name=cls or None, split="kfold")
                     for stat in ("mean", "std")]
        workers = sorted({p.worker for p in parts if p.worker})
        return Output(result=KfoldResult(**agg, workers=workers), metrics=rows)

    def headline(self, result: KfoldResult) -> str | None:
        acc = result.metrics["accuracy"]
        return f"accuracy {acc.mean:.4f} ± {acc.std:.4f} (s.d. over {result.folds} folds)"

    def describe(self, result: KfoldResult) -> list[str]:
        acc, f1 = result.metrics["accuracy"], result.metrics["macro_f1"]
        return [f"{result.folds} folds: accuracy {acc.mean:.4f} ± {acc.std:.4f}, macro F1 {f1.mean:.4f} ± "
                f"{f1.std:.4f} (± the sample s.d. over {result.folds} folds); workers {', '.join(result.workers)}"]
