"""layers: linear probes on each conv layer's pooled activations of a trained model, individual and cumulative."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from convlens.db.rows import ArtifactRow, MetricRow
from convlens.ml.params import JobParams, refused
from convlens.worker.artifacts import resolve_model
from convlens.worker.errors import JobError
from convlens.worker.kinds.base import Context, JobKind, Output, table_lines
from convlens.worker.paths import check_dataset, check_model, unchanged

ModelRef = Annotated[str, Field(min_length=1, max_length=4096, description="a registered model (NAME, NAME:VERSION, "
                                "NAME@ALIAS), a train job's id, SWEEP_ID:best or a .keras file")]


class LayersParams(JobParams):
    model: ModelRef
    layers: Annotated[list[Annotated[str, Field(min_length=1, max_length=255)]], Field(max_length=64)] | None = Field(
        None, description="conv layers to probe (default: all)")
    dataset: Annotated[str, Field(min_length=1, max_length=4096)] = "cifar10"
    limit: Annotated[int, Field(ge=20, le=10_000_000)] | None = Field(
        10_000, description="training images for the probes")
    test_limit: Annotated[int, Field(ge=20, le=10_000_000)] | None = Field(None, description="test images to score on")
    cumulative: bool = True


class LayerRow(BaseModel):
    layer: str
    features: int
    probe_accuracy: float
    cumulative_accuracy: float | None = None
    cumulative_layers: str
    cumulative_features: int


class LayersResult(BaseModel):
    rows: list[LayerRow]
    n_train: int
    n_test: int
    plot: str | None = None

    def summary(self) -> dict[str, float]:
        probes = {f"probe_{r.layer}": r.probe_accuracy for r in self.rows}
        return {"best_probe_accuracy": max(probes.values(), default=None), **probes, "n_train": self.n_train}


def _check_model(model: str, layers: list[str] | None) -> None:
    """A model with no conv layer to probe, and unknown probe layers, are refused at submit, from the saved
    model's config (no TensorFlow needed)."""
    from convlens.ml.feasible import feature_map_problem, saved_layer_names
    from convlens.ml.keras_file import read_config

    try:
        path = resolve_model(model).path
    except JobError:
        return  # no model registered under that id yet: the run says so
    config = read_config(path)  # a hostile file is refused here, with the reason
    if problem := feature_map_problem(config):
        raise refused(LayersParams, "model", problem, model)
    names = saved_layer_names(config)
    unknown = [n for n in layers or [] if n not in names]
    if unknown:
        raise refused(LayersParams, "layers", f"unknown layers {', '.join(unknown)}; this model's layers: "
                                              f"{', '.join(names)}", layers)


LAYER_COLUMNS = ["layer", "features", "probe_accuracy", "cumulative_layers", "cumulative_accuracy"]


class Layers(JobKind, name="layers", params=LayersParams, result=LayersResult, template="_layers.html",
             title="linear probes on each conv layer's pooled activations, individual and cumulative"):

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        validated = super().validate(params, strict_paths)
        validated["model"] = check_model(validated["model"], require_roots=strict_paths)
        validated["dataset"] = check_dataset(validated["dataset"], require_roots=strict_paths)
        _check_model(validated["model"], validated.get("layers"))
        return validated

    def run(self, ctx: Context) -> Output:
        from convlens.ml.analysis import layer_probes
        from convlens.ml.config import TrainConfig
        from convlens.ml.prepare import load_dataset
        from convlens.ml.saved import load_trained_cached

        p: LayersParams = ctx.params
        model = resolve_model(p.model)
        trained = load_trained_cached(model.path, model.registered)
        if p.dataset != "cifar10":
            unchanged(p.dataset)
        data = load_dataset(TrainConfig(dataset=p.dataset, image_size=trained.input_size[0]))
        result = LayersResult.model_validate(layer_probes(
            trained.model, data, layers=p.layers, train_limit=p.limit, test_limit=p.test_limit, out_dir=ctx.out_dir,
            progress=ctx.progress))
        metrics = [MetricRow(name=f"probe_accuracy.{r.layer}", value=r.probe_accuracy) for r in result.rows]
        metrics += [MetricRow(name=f"cumulative_accuracy.{r.layer}", value=r.cumulative_accuracy)
                    for r in result.rows if r.cumulative_accuracy is not None]
        # Stored as before: every probe row, then the cumulative ones.
        return Output(result=result, metrics=metrics, artifacts=[ArtifactRow(kind="layer_plot", path=result.plot)]
                      if result.plot else [])

    def headline(self, result: LayersResult) -> str | None:
        best = max(result.rows, key=lambda r: r.probe_accuracy, default=None)
        return f"best probe {best.layer} {best.probe_accuracy:.4f}" if best else None

    def describe(self, result: LayersResult) -> list[str]:
        return [*table_lines([r.model_dump() for r in result.rows], LAYER_COLUMNS), f"plot: {result.plot}"]
