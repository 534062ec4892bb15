"""Typed rows: what workers store and what the CLI and the HTTP API read back (metrics, predictions, artifacts)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from convlens.db.models import Artifact, Metric, Prediction


class MetricRow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    value: float
    class_name: str | None = Field(None, alias="class", serialization_alias="class")
    fold: int | None = None
    split: str = "test"

    def orm(self, job_id: str) -> Metric:
        return Metric(job_id=job_id, name=self.name, value=self.value, class_name=self.class_name, fold=self.fold,
                      split=self.split)

    @classmethod
    def of(cls, m: Metric) -> MetricRow:
        return cls(name=m.name, value=m.value, class_name=m.class_name, fold=m.fold, split=m.split)


class PredictionRow(BaseModel):
    id: int | None = Field(None, description="the stored row's id (None before it is stored)")
    path: str
    predicted: str | None = None
    confidence: float | None = None
    top_k: list[tuple[str, float]] | None = None
    decision: str | None = None
    true_label: str | None = None
    error: str | None = None
    shard: int | None = None
    prediction_set: list[str] | None = Field(None, description="the conformal prediction set (classify jobs)")
    overlay: str | None = Field(None, description="its Grad-CAM overlay file (a classify job run with gradcam)")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def set_size(self) -> int | None:
        return None if self.prediction_set is None else len(self.prediction_set)

    def stored(self) -> tuple[Any, ...]:
        """The values of STORED_COLUMNS, JSON already encoded: what a bulk store writes. A store writes 100,000s
        of rows, and a serializer pass per row cost more than the database's own insert."""
        return (self.path, self.predicted, self.confidence, _json(self.top_k), self.decision, self.true_label,
                self.error, _json(self.prediction_set), self.set_size)

    @classmethod
    def of(cls, p: Prediction) -> PredictionRow:
        return cls(id=p.id, path=p.path, predicted=p.predicted, confidence=p.confidence, top_k=p.top_k,
                   decision=p.decision, true_label=p.true_label, error=p.error, shard=p.shard,
                   prediction_set=p.prediction_set)


# The predictions table's columns a row fills, in PredictionRow.stored()'s order (the store adds job_id and shard).
STORED_COLUMNS = ("path", "predicted", "confidence", "top_k", "decision", "true_label", "error", "prediction_set",
                  "set_size")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


class ArtifactRow(BaseModel):
    kind: str
    path: str
    part: int | None = None
    key: str | None = Field(None, description="its address: GET /artifacts/{key}")

    def orm(self, job_id: str) -> Artifact:
        return Artifact(job_id=job_id, kind=self.kind, path=self.path, part=self.part)

    @classmethod
    def of(cls, a: Artifact) -> ArtifactRow:
        return cls(key=a.key, kind=a.kind, path=a.path, part=a.part)

