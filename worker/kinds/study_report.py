"""A study's report: one self-contained HTML file (every figure embedded as a data URI, no script, nothing
fetched), readable offline and printable to PDF, made from the typed results of the study's children."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from convlens.db.models import Job, Metric
from convlens.db.session import session_scope
from convlens.ml import plots
from convlens.ml.config import TrainConfig, TrainOptions
from convlens.ml.provenance import Provenance
from convlens.worker.artifacts import ArtifactMissing, artifact_store
from convlens.worker.kinds.base import Done

TEMPLATES = Path(__file__).parent.parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def png_uri(path: str | None) -> str | None:
    """A PNG file as a data URI (None when the run did not make it)."""
    if not path:
        return None
    try:
        data = b"".join(artifact_store().chunks(path))
    except ArtifactMissing:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode()


def svg_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _per_class(train_id: str, class_names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall and F1 per class on the test set, as the train job stored them."""
    with session_scope() as s:
        rows = s.scalars(select(Metric).where(Metric.job_id == train_id, Metric.split == "test",
                                              Metric.class_name.is_not(None)))
        values = {(m.class_name, m.name): m.value for m in rows}
    return [{"class": c, **{n: values.get((c, n)) for n in ("precision", "recall", "f1", "support")}}
            for c in class_names]


def _thresholded_macro_f1(train_id: str) -> float | None:
    with session_scope() as s:
        return s.scalar(select(Metric.value).where(Metric.job_id == train_id, Metric.split == "test_thresholded",
                                                   Metric.name == "macro_f1", Metric.class_name.is_(None)))


def _validation_uses(recipe: dict[str, Any]) -> list[str]:
    """What the validation split decides in this recipe (the report says only what happened)."""
    return [*(["early stopping"] if recipe["patience"] else []),
            *(["learning-rate decisions"] if recipe["schedule"] == "plateau" else []),
            "the temperature", "the per-class thresholds"]


KFOLD_LABELS = {"macro_f1": "macro F1", "coverage_lac": "coverage of the LAC sets",
                "coverage_aps": "coverage of the APS sets", "mean_set_size_lac": "mean LAC set size",
                "mean_set_size_aps": "mean APS set size"}


def _kfold_label(name: str) -> str:
    return f"F1 of {name.removeprefix('f1:')}" if name.startswith("f1:") else KFOLD_LABELS.get(name, name)


def _provenance(job_id: str) -> Provenance | None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        return Provenance.model_validate(job.provenance) if job is not None and job.provenance else None


def write_study_report(path: Path, params: Any, by_kind: dict[str, Done]) -> Path:
    train, kfold = by_kind["train"].result, by_kind["kfold"].result
    layers, classify = by_kind["layers"].result, by_kind["classify"].result
    fold_names = [f"fold {i}" for i in range(kfold.folds)]
    fold_chart = svg_uri(plots.bars_svg(fold_names, {"accuracy": kfold.metrics["accuracy"].values,
                                                     "macro F1": kfold.metrics["macro_f1"].values},
                                        "held-out fold"))
    probe_chart = svg_uri(plots.lines_svg([r.layer for r in layers.rows], {
        "this layer": [r.probe_accuracy for r in layers.rows],
        "layers up to here": [r.cumulative_accuracy for r in layers.rows]}, "probe accuracy (test)"))
    cm = train.confusion_matrix
    recipe = TrainConfig(**params.model_dump(include=set(TrainOptions.model_fields))).recipe()
    html = _env.get_template("study_report.html").render(
        params=params, jobs={k: d.job_id for k, d in by_kind.items()}, train=train, kfold=kfold, layers=layers,
        classify=classify, per_class=_per_class(by_kind["train"].job_id, train.class_names), confusion=cm,
        peak=max((v for row in cm for v in row), default=1) or 1, provenance=_provenance(by_kind["train"].job_id),
        kfold_rows=[(_kfold_label(name), m) for name, m in kfold.metrics.items()],
        thresholded_macro_f1=_thresholded_macro_f1(by_kind["train"].job_id), validation_uses=_validation_uses(recipe),
        keeps_best=bool(recipe["patience"]), folder=by_kind["classify"].params.get("folder", ""),
        figures={"history": png_uri(train.paths.get("history_plot")),
                 "reliability": png_uri(train.paths.get("reliability_plot")),
                 "errors": png_uri(train.paths.get("error_gallery")),
                 "folds": fold_chart, "probes": probe_chart})
    path.write_text(html, encoding="utf-8")
    return path
