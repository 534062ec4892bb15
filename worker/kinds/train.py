"""train: one training run, evaluated on the test set; its model is registered for later jobs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from convlens.db.rows import ArtifactRow, MetricRow
from convlens.ml.config import TrainConfig, TrainOptions
from convlens.worker.kinds.base import Context, JobKind, ModelRecord, Output
from convlens.worker.paths import check_dataset, unchanged


class CalibrationFigures(BaseModel):
    ece: float = Field(description="expected calibration error, 15 equal-width bins")
    mce: float = Field(description="maximum calibration error")
    nll: float
    brier: float


class SetFigures(BaseModel):
    coverage: float
    per_class_coverage: dict[str, float | None]
    mean_set_size: float
    set_sizes: dict[str, int] = Field(description="test images per set size")
    uncertain_rate: float = Field(description="share of sets not of exactly one class")


class MethodFigures(BaseModel):
    marginal: SetFigures
    class_conditional: SetFigures


class ConformalFigures(BaseModel):
    alpha: float
    n_calibration: int
    lac: MethodFigures
    aps: MethodFigures


class UncertaintyRow(BaseModel):
    uncertain_rate: float
    decided_accuracy: float
    coverage: float = Field(description="true class in the answer (every class when uncertain)")
    cutoff: float | None = None


class ConfusedPair(BaseModel):
    true: str
    predicted: str
    count: int
    rate: float = Field(description="share of the true class's test images")


class TrainResult(BaseModel):
    """What a training run leaves on its job row (no per-image data); also each k-fold part's result."""

    accuracy: float
    macro_f1: float
    thresholded_accuracy: float | None = None
    epochs_run: int
    epochs_trained: float | None = None
    warnings: list[str] = []
    best_epoch: int | None = None
    precision_policy: str
    timings: dict[str, float]
    history: dict[str, list[float]]
    paths: dict[str, str]
    n_train: int
    n_val: int
    n_test: int
    class_names: list[str]
    thresholds: list[float] | None = None
    confusion_matrix: list[list[int]]
    per_class_f1: dict[str, float]
    n_cal: int = 0
    temperature: float = 1.0
    calibration: dict[str, CalibrationFigures] | None = Field(None, description="test set, before/after scaling")
    conformal: ConformalFigures | None = None
    uncertainty: dict[str, UncertaintyRow] | None = Field(None, description="three ways to say uncertain")
    confused_pairs: list[ConfusedPair] = Field([], description="the most-confused (true, predicted) test pairs")
    pruned_at: int | None = Field(None, description="the epoch after which its sweep's pruner stopped it")
    tta_used: int = Field(0, description="views averaged into `tta_accuracy`: 0 none, 1 each image and its mirror, "
                                         "2 and four shifts")
    tta_accuracy: float | None = Field(None, description="test accuracy averaging the test-time augmentation views "
                                                         "(a second figure: classify, predict and exports make one "
                                                         "pass, which `accuracy` is)")

    @property
    def accuracy_views(self) -> str:
        """What `tta_accuracy` averaged, in words."""
        return ("one pass", "each image and its mirror", "each image, its mirror and four shifted views")[self.tta_used]

    @property
    def epochs(self) -> float:
        """The epochs trained: a fraction where a time budget stopped training mid-epoch."""
        return self.epochs_trained if self.epochs_trained is not None else self.epochs_run

    def summary(self) -> dict[str, float | None]:
        after = (self.calibration or {}).get("after")
        before = (self.calibration or {}).get("before")
        val = self.history.get("val_accuracy") or []
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "thresholded_accuracy": self.thresholded_accuracy,
                "val_accuracy": max(val) if val else None, "ece": after.ece if after else None,
                "ece_before": before.ece if before else None, "temperature": self.temperature,
                "epochs": self.epochs,
                "n_train": self.n_train, "fit_s": self.timings.get("fit_s")}

    @classmethod
    def of(cls, result: dict[str, Any]) -> TrainResult:
        test = result["metrics"]["test"]
        return cls(
            accuracy=test["accuracy"], macro_f1=test["macro"]["f1"],
            thresholded_accuracy=result["metrics"].get("test_thresholded", {}).get("accuracy"),
            confusion_matrix=test["confusion_matrix"],
            per_class_f1={c: v["f1"] for c, v in test["per_class"].items()},
            confused_pairs=result.get("errors", {}).get("confused_pairs", []),
            tta_accuracy=result["metrics"].get("test_tta", {}).get("accuracy"),
            **{k: result[k] for k in ("epochs_run", "epochs_trained", "warnings", "best_epoch", "precision_policy",
                                      "timings", "history", "paths", "n_train", "n_val", "n_test", "class_names",
                                      "thresholds", "n_cal", "temperature", "calibration", "conformal",
                                      "uncertainty", "tta_used") if k in result})


def metric_rows(metrics: dict[str, Any], class_names: list[str], split: str) -> list[MetricRow]:
    from convlens.ml.evaluate import flat_metrics

    return [MetricRow(name=n, value=float(v), class_name=c, split=split)
            for n, v, c in flat_metrics(metrics, class_names)]


def calibration_rows(result: dict[str, Any], split: str) -> list[MetricRow]:
    """The calibration and conformal figures of a training run as metric rows."""
    rows = [MetricRow(name="temperature", value=result.get("temperature", 1.0), split=split)]
    for when, figures in (result.get("calibration") or {}).items():
        rows += [MetricRow(name=f"{name}_{when}", value=v, split=split) for name, v in figures.items()]
    conformal = result.get("conformal") or {}
    for method in ("lac", "aps"):
        for mode, figures in (conformal.get(method) or {}).items():
            tag = f"{method}" if mode == "marginal" else f"{method}_class_conditional"
            rows += [MetricRow(name=f"coverage_{tag}", value=figures["coverage"], split=split),
                     MetricRow(name=f"mean_set_size_{tag}", value=figures["mean_set_size"], split=split)]
            rows += [MetricRow(name=f"coverage_{tag}", value=v, class_name=c, split=split)
                     for c, v in figures["per_class_coverage"].items() if v is not None]
    return rows


def train_config(params: TrainOptions) -> TrainConfig:
    """The run's config from a train or kfold job's params (the options TrainOptions defines); its dataset
    folder must still be the one checked when the job was created."""
    config = TrainConfig(**params.model_dump(include=set(TrainOptions.model_fields)))
    if config.dataset != "cifar10":
        unchanged(config.dataset)
    return config


def validate_training(kind: JobKind, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
    validated = JobKind.validate(kind, params, strict_paths)
    validated["dataset"] = check_dataset(validated["dataset"], require_roots=strict_paths)
    return validated


def describe_training(r: TrainResult) -> list[str]:
    lines = [f"test accuracy {r.accuracy:.4f}  macro F1 {r.macro_f1:.4f}  "
             f"with thresholds {r.thresholded_accuracy or 0:.4f}  epochs {r.epochs}  "
             f"fit {r.timings.get('fit_s')} s  ({r.precision_policy})",
             f"model: {r.paths.get('model')}"]
    if r.tta_accuracy is not None:
        lines.insert(1, f"test accuracy {r.accuracy:.4f} is one pass (what classify, predict and the export give); "
                        f"averaging {r.accuracy_views}: {r.tta_accuracy:.4f}")
    if r.calibration and {"before", "after"} <= set(r.calibration):
        before, after = r.calibration["before"], r.calibration["after"]
        lines.append(f"temperature {r.temperature:.3f} (fitted on {r.n_val} validation images): on {r.n_test} test "
                     f"images ECE {before.ece:.4f} -> {after.ece:.4f}, NLL {before.nll:.4f} -> {after.nll:.4f}")
    if r.conformal:
        c = r.conformal
        lines.append(f"conformal sets at alpha {c.alpha} (calibrated on {c.n_calibration} images): " + ", ".join(
            f"{name} coverage {m.marginal.coverage:.4f} mean size {m.marginal.mean_set_size:.2f}"
            for name, m in (("lac", c.lac), ("aps", c.aps))))
    return lines + [f"warning: {w}" for w in r.warnings]


class Train(JobKind, name="train", params=TrainOptions, result=TrainResult, template="_train.html",
            title="train a model and evaluate it on the test set"):

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        return validate_training(self, params, strict_paths)

    def run(self, ctx: Context) -> Output:
        from convlens.ml.callbacks import StopWhen
        from convlens.ml.train import train

        stop = StopWhen(ctx.should_stop) if ctx.should_stop else None  # a sweep's trial: pruned after an epoch
        result = train(train_config(ctx.params), ctx.out_dir, progress=ctx.progress, callbacks=[stop] if stop else None)
        metrics = [row for split in ("test", "test_tta", "validation", "test_thresholded")
                   if split in result["metrics"]
                   for row in metric_rows(result["metrics"][split], result["class_names"], split)]
        metrics += calibration_rows(result, "calibration")
        pruned = stop.stopped_at if stop else None
        return Output(
            result=TrainResult.of(result).model_copy(update={"pruned_at": pruned}),
            metrics=metrics,
            artifacts=[ArtifactRow(kind=k, path=p) for k, p in result["paths"].items()],
            # A trial its sweep's pruner stopped is not registered: its model is half-trained by design.
            model=None if pruned else ModelRecord(result["paths"]["model"], result["preset"], result["class_names"],
                                                  result["thresholds"]))

    def headline(self, result: TrainResult) -> str | None:
        return f"accuracy {result.accuracy:.4f}" + (f", pruned at epoch {result.pruned_at}" if result.pruned_at else "")

    def describe(self, result: TrainResult) -> list[str]:
        return describe_training(result)
