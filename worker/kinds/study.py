"""study: the seed report's whole analysis as one job. Stage one trains the model and runs the k-fold beside it;
stage two probes every conv layer of the trained model and classifies a folder (by default a stratified sample
of CIFAR-10 test images) with Grad-CAM; then one self-contained HTML report puts the answers side by side."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from convlens.db.rows import ArtifactRow
from convlens.db.session import session_scope
from convlens.ml.config import TrainConfig, TrainOptions
from convlens.ml.params import refused
from convlens.worker.artifacts import artifact_store
from convlens.worker.kinds.base import Child, Context, Done, JobKind, Output
from convlens.worker.kinds.train import validate_training
from convlens.worker.paths import check_folder, stored

STAGES = ("train and k-fold", "probes and classify")


class StudyParams(TrainOptions):
    folds: Annotated[int, Field(ge=2, le=20)] = Field(5, description="k-fold folds, with the same options")
    folder: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        None, description="images to classify with Grad-CAM (default: a stratified sample of CIFAR-10 test images)")
    sample: Annotated[int, Field(ge=10, le=10_000)] = Field(
        1000, description="CIFAR-10 test images classified when no folder is given")
    probe_limit: Annotated[int, Field(ge=20, le=10_000_000)] = Field(
        10_000, description="training images the layer probes are fit on (at most the training pool)")


class StudyResult(BaseModel):
    report: str = Field(description="the self-contained HTML report (also among the artifacts)")
    jobs: dict[str, str] = Field(description="the id of each child job, by kind")
    accuracy: float
    macro_f1: float
    kfold_accuracy: float
    kfold_accuracy_std: float = Field(description="the sample standard deviation over the folds (ddof=1)")
    kfold_folds: int | None = Field(None, description="the folds `kfold_accuracy_std` is taken over")
    best_probe: str | None = None
    best_probe_accuracy: float | None = None
    classify_accuracy: float | None = Field(None, description="on the classified folder, when it is labelled")


def _spread(result: StudyResult) -> str:
    over = f"s.d. over {result.kfold_folds} folds" if result.kfold_folds else "sample s.d. over the folds"
    return f"{result.kfold_accuracy:.4f} ± {result.kfold_accuracy_std:.4f} ({over})"


def _training(p: StudyParams) -> dict[str, Any]:
    return p.model_dump(include=set(TrainOptions.model_fields))


class Study(JobKind, name="study", params=StudyParams, result=StudyResult, stages=STAGES, template="_study.html",
            title="the whole analysis: train, k-fold, layer probes, Grad-CAM classify, one HTML report"):

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        from convlens.ml.feasible import folds_problem

        validated = validate_training(self, params, strict_paths)
        parsed = StudyParams.model_validate(validated)
        problem = folds_problem(TrainConfig(**_training(parsed)), parsed.folds)
        if problem:
            raise refused(StudyParams, "folds", problem, parsed.folds)
        if parsed.folder is not None:
            validated["folder"] = str(check_folder(parsed.folder, require_roots=strict_paths))
        elif parsed.dataset != "cifar10":
            raise refused(StudyParams, "folder", "with an image-folder dataset, name the folder to classify", None)
        return validated

    def stage(self, ctx: Context, index: int, done: list[Done]) -> list[Child]:
        p: StudyParams = ctx.params
        if index == 0:
            return [Child("train", _training(p)), Child("kfold", {**_training(p), "folds": p.folds})]
        train = next(d for d in done if d.kind == "train")
        folder = p.folder or self._sample(ctx)
        probes = min(p.probe_limit, p.limit or p.probe_limit)
        return [Child("layers", {"model": train.job_id, "dataset": p.dataset, "limit": probes}),
                Child("classify", {"folder": folder, "model": train.job_id, "gradcam": True})]

    @staticmethod
    def _sample(ctx: Context) -> str:
        """A stratified sample of CIFAR-10 test images, published to the artifact store and named by its stored
        path (`runs/ID/sample`), so the classify job finds it on whichever machine runs it."""
        from convlens.ml.data.cifar import export_test_sample, load_cifar10
        from convlens.ml.settings import settings

        folder = ctx.out_dir / "sample"
        if not folder.exists():  # a stage re-run after a crash reuses the sample it wrote
            partial = Path(tempfile.mkdtemp(prefix="sample-", dir=ctx.out_dir))
            export_test_sample(load_cifar10(settings().datasets_dir), ctx.params.sample, partial, ctx.params.seed)
            try:
                partial.rename(folder)
            except OSError:  # written meanwhile by another attempt: the same seeded sample
                shutil.rmtree(partial, ignore_errors=True)
        with session_scope() as s:
            artifact_store().publish(s, ctx.job_id, sorted(p for p in folder.rglob("*") if p.is_file()))
        return stored(folder)

    def compose(self, ctx: Context, done: list[Done]) -> Output:
        from convlens.worker.kinds.study_report import write_study_report

        by_kind = {d.kind: d for d in done}
        train, kfold, layers = by_kind["train"].result, by_kind["kfold"].result, by_kind["layers"].result
        classify = by_kind["classify"].result
        report = write_study_report(ctx.out_dir / "report.html", ctx.params, by_kind)
        best = max(layers.rows, key=lambda r: r.probe_accuracy, default=None)
        result = StudyResult(report=str(report), jobs={d.kind: d.job_id for d in done}, accuracy=train.accuracy,
                             macro_f1=train.macro_f1, kfold_accuracy=kfold.metrics["accuracy"].mean,
                             kfold_accuracy_std=kfold.metrics["accuracy"].std, kfold_folds=kfold.folds,
                             best_probe=best.layer if best else None,
                             best_probe_accuracy=best.probe_accuracy if best else None,
                             classify_accuracy=classify.accuracy)
        return Output(result=result, artifacts=[ArtifactRow(kind="report", path=str(report))])

    def headline(self, result: StudyResult) -> str | None:
        return f"accuracy {result.accuracy:.4f}, k-fold {_spread(result)}"

    def describe(self, result: StudyResult) -> list[str]:
        lines = [f"test accuracy {result.accuracy:.4f}, macro F1 {result.macro_f1:.4f}",
                 f"k-fold accuracy {_spread(result)}"]
        if result.best_probe:
            lines.append(f"best probe {result.best_probe} {result.best_probe_accuracy:.4f}")
        if result.classify_accuracy is not None:
            lines.append(f"classified folder accuracy {result.classify_accuracy:.4f}")
        lines += [f"{kind} job: {job_id}" for kind, job_id in result.jobs.items()]
        return [*lines, f"report: {result.report}"]
