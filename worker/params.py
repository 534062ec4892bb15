"""Job parameters, validated with pydantic for the CLI, the HTTP API and the workers alike."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainParams(_Params):
    preset: str = "seed"
    dataset: str = Field("cifar10", description="'cifar10' or an image folder root/<class>/...")
    epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=8192)] | None = None
    learning_rate: Annotated[float, Field(gt=0, le=10)] | None = None
    schedule: Literal["plateau", "cosine", "warmup_linear", "none"] | None = None
    patience: Annotated[int, Field(ge=0)] | None = None
    time_budget_s: Annotated[float, Field(gt=0)] | None = Field(
        None, description="wall-clock seconds for training plus evaluation (default: the preset's)")
    augment: bool = Field(True, description="False turns every augmentation off")
    flip: bool | None = None
    rotation: Annotated[float, Field(ge=0, le=0.5)] | None = None
    zoom: Annotated[float, Field(ge=0, lt=1)] | None = None
    translation: Annotated[float, Field(ge=0, lt=0.5)] | None = None
    val_fraction: Annotated[float, Field(ge=0, lt=1)] | None = None
    limit: Annotated[int, Field(ge=20)] | None = None
    class_weight: Literal["balanced", "none"] | None = None
    long_tail_ratio: Annotated[float, Field(ge=1)] | None = None
    mixed_precision: bool = True
    seed: int = 0

    def train_config(self) -> dict:
        """Keyword arguments for ml.train.TrainConfig (no augmentation: every transform off)."""
        transforms = ("flip", "rotation", "zoom", "translation")
        cfg = self.model_dump(exclude={"augment", "folds", *transforms}, exclude_none=True)
        if not self.augment:
            cfg["augment"] = {"flip": False, "rotation": 0.0, "zoom": 0.0, "translation": 0.0}
        elif any(getattr(self, t) is not None for t in transforms):
            cfg["augment"] = {t: getattr(self, t) for t in transforms if getattr(self, t) is not None}
        return cfg


class KfoldParams(TrainParams):
    folds: Annotated[int, Field(ge=2, le=20)] = 5


class LayersParams(_Params):
    model: str = Field(description="a .keras model path, or the id of a succeeded train job")
    layers: list[str] | None = None
    dataset: str = "cifar10"
    limit: Annotated[int, Field(ge=20)] | None = Field(10_000, description="training images used for probes")
    test_limit: Annotated[int, Field(ge=20)] | None = None
    cumulative: bool = True


class ClassifyParams(_Params):
    folder: str
    model: str = Field(description="a .keras model path, or the id of a succeeded train job")
    gradcam: bool = False
    top_k: Annotated[int, Field(ge=1, le=100)] = 3
    shards: Annotated[int, Field(ge=1, le=1000)] | None = None
    shard_size: Annotated[int, Field(ge=1)] = 2000
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 256


PARAMS: dict[str, type[_Params]] = {
    "train": TrainParams, "kfold": KfoldParams, "layers": LayersParams, "classify": ClassifyParams,
}
KINDS = tuple(PARAMS)


def validate(kind: str, params: dict) -> dict:
    """Validated params with defaults filled in; ValueError (pydantic's ValidationError) when bad."""
    if kind not in PARAMS:
        raise ValueError(f"unknown job kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return PARAMS[kind].model_validate(params).model_dump()
