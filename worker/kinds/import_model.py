"""import: a model trained elsewhere (a Keras 3 .keras file or a TensorFlow SavedModel folder) made a convlens
model, calibrated on a labelled folder when one is given, and registered under the job's name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from convlens.ml.data.folders import class_folders
from convlens.ml.feasible import import_source_problem
from convlens.ml.params import JobParams, refused
from convlens.worker.kinds.base import Context, JobKind, ModelRecord, Output
from convlens.worker.paths import PathRefused, check_folder, unchanged

Folder = Annotated[str, Field(min_length=1, max_length=4096)]


class ImportParams(JobParams):
    file: Folder = Field(description="a .keras file or a TensorFlow SavedModel folder")
    classes: Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=10_000)] | None = \
        Field(None, description="the class of each output, in order")
    classes_from: Folder | None = Field(None, description="a folder whose sub-folders name the classes (sorted)")
    input_scale: Literal["1/255", "1", "-1..1"] = Field(
        "1/255", description="what the model takes: pixels / 255 (1/255), raw 0-255 (1) or [-1, 1] (-1..1)")
    calibrate: Folder | None = Field(
        None, description="a labelled folder (FOLDER/<class>/...) to fit temperature, thresholds and conformal sets")


class ImportResult(BaseModel):
    path: str = Field(description="the convlens model")
    source: str
    class_names: list[str]
    input_size: list[int]
    input_scale: str
    outputs: str = Field(description="probabilities, or logits (a softmax was added)")
    temperature: float = 1.0
    thresholds: list[float] | None = None
    n_calibration: int = 0
    ece_before: float | None = Field(None, description="on the calibration half, before temperature scaling")
    ece_after: float | None = None
    warnings: list[str] = []

    def summary(self) -> dict[str, float | None]:
        return {"n_calibration": self.n_calibration, "temperature": self.temperature, "ece": self.ece_after}


class Import(JobKind, name="import", params=ImportParams, result=ImportResult,
             title="import a model trained elsewhere (.keras or SavedModel), calibrated on a labelled folder"):
    over_http = False

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        if strict_paths:  # a SavedModel loads outside Keras' safe mode: only a user of this machine may choose one
            raise PathRefused("models are imported on the server itself: `convlens models import FILE --name NAME`")
        validated = JobKind.validate(self, params, strict_paths)
        p = ImportParams.model_validate(validated)
        source = Path(p.file)
        folder = source if source.is_dir() else source.parent
        real = check_folder(str(folder), require_roots=strict_paths)
        validated["file"] = str(real if source.is_dir() else real / source.name)
        if not source.is_dir() and not Path(validated["file"]).is_file():
            raise PathRefused(f"{p.file}: no such file")
        if problem := import_source_problem(Path(validated["file"])):
            raise refused(ImportParams, "file", problem, p.file)
        if (p.classes is None) == (p.classes_from is None):
            raise refused(ImportParams, "classes", "give the classes (--classes a,b,c) or a folder that names "
                          "them (--classes-from FOLDER), one of the two", p.classes)
        if p.classes_from is not None:
            root = check_folder(p.classes_from, require_roots=strict_paths)
            validated["classes"] = [d.name for d in class_folders(root)]
            validated["classes_from"] = None
        if len(validated["classes"]) < 2 or len(set(validated["classes"])) != len(validated["classes"]):
            raise refused(ImportParams, "classes", "at least two classes, each named once", validated["classes"])
        if p.calibrate is not None:
            validated["calibrate"] = str(check_folder(p.calibrate, require_roots=strict_paths))
        return validated

    def run(self, ctx: Context) -> Output:
        from convlens.ml.imported import import_model

        p: ImportParams = ctx.params
        source = Path(p.file) if Path(p.file).is_dir() else unchanged(p.file)
        done = import_model(source, p.classes, p.input_scale, ctx.out_dir,
                            unchanged(p.calibrate) if p.calibrate else None)
        result = ImportResult(path=str(done.path), source=p.file, class_names=done.class_names,
                              input_size=list(done.input_size), input_scale=p.input_scale, outputs=done.outputs,
                              temperature=done.temperature, thresholds=done.thresholds,
                              n_calibration=done.n_calibration, ece_before=done.ece_before, ece_after=done.ece_after,
                              warnings=list(done.warnings))
        return Output(result=result, model=ModelRecord(str(done.path), "imported", done.class_names, done.thresholds))

    def headline(self, result: ImportResult) -> str | None:
        return f"{len(result.class_names)} classes, {result.outputs}"

    def describe(self, result: ImportResult) -> list[str]:
        lines = [f"imported {result.source}: {len(result.class_names)} classes, input {result.input_size[0]}x"
                 f"{result.input_size[1]} ({result.input_scale}), outputs {result.outputs}",
                 f"model: {result.path}"]
        if result.n_calibration:
            lines.append(f"calibrated on {result.n_calibration} images: temperature {result.temperature:.3f}, ECE "
                         f"{result.ece_before:.4f} -> {result.ece_after:.4f}; per-class thresholds and conformal sets")
        return lines + [f"warning: {w}" for w in result.warnings]
