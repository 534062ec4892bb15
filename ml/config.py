"""Training options and recipes: the one definition of every training option.

`TrainOptions` is what a user may set (the job params of train and kfold jobs, the CLI's options and the HTTP
schema are all made from it); `TrainConfig` adds what presets and library callers may set besides. None means
"the preset's value". Nothing here imports TensorFlow, so the CLI and the API can validate without it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from convlens.ml.params import JobParams

# Recipe keys a preset may set and a run may override.
RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "optimizer": "adam",  # adam | sgd (Nesterov)
    "momentum": 0.9,
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "lookahead": False,  # weight averaging of all float weights (BN statistics too), see callbacks.Lookahead
    "schedule": "plateau",  # plateau | cosine | warmup_linear | none
    "warmup_fraction": 0.0,  # of training, for warmup_linear
    "time_budget_s": None,  # wall-clock seconds for training plus evaluation; see callbacks.TrainingClock
    "patience": 3,  # early stopping on validation loss; 0 turns it off
    "val_fraction": 0.1,  # stratified validation split of the training data
    "class_weight": "balanced",  # balanced | none
    "augment": {"flip": True, "alternate_flip": False, "rotation": 0.0, "zoom": 0.0, "translation": 0.1},
    "tta": 0,  # test-time augmentation: 0 none, 1 flip, 2 flip and 1-pixel shifts
    "steps_per_execution": 1,  # training steps per call into TensorFlow: fewer Python round trips per step
}
TRANSFORMS = ("flip", "rotation", "zoom", "translation")
PresetName = Literal["seed", "fast"]  # ml.models registers exactly these (a test checks)


def _cli(flag: str) -> dict[str, Any]:
    """The CLI flag of an option whose name the field's own does not give."""
    return {"cli": flag}


class TrainOptions(JobParams):
    """Training options a user may set; validated once, where a job is created."""

    preset: PresetName = Field("seed", description="model + recipe by name (seed, fast)")
    dataset: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        "cifar10", description="'cifar10' or an image folder root/<class>/...")
    epochs: Annotated[int, Field(ge=1, le=1000)] | None = Field(None, description="epochs (default: the preset's)")
    batch_size: Annotated[int, Field(ge=1, le=8192)] | None = Field(
        None, description="batch size (default: the preset's)")
    learning_rate: Annotated[float, Field(gt=0, le=10)] | None = Field(
        None, description="peak learning rate (default: the preset's)", json_schema_extra=_cli("--lr"))
    schedule: Literal["plateau", "cosine", "warmup_linear", "none"] | None = Field(
        None, description="plateau | cosine | warmup_linear | none")
    patience: Annotated[int, Field(ge=0, le=1000)] | None = Field(
        None, description="early-stopping patience on validation loss; 0: off")
    time_budget_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = Field(
        None, description="seconds for training plus evaluation; the schedule follows the clock (default: the "
        "preset's)", json_schema_extra=_cli("--time-budget"))
    augment: bool = Field(True, description="False turns every augmentation off",
                          json_schema_extra=_cli("--no-augment"))
    flip: bool | None = Field(None, description="random horizontal flips")
    rotation: Annotated[float, Field(ge=0, le=0.5)] | None = Field(
        None, description="random rotation, fraction of a full turn (e.g. 0.05)")
    zoom: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None, description="random zoom, fraction of the side (e.g. 0.1)")
    translation: Annotated[float, Field(ge=0, lt=0.5)] | None = Field(
        None, description="random translation, fraction of the side (e.g. 0.1)")
    val_fraction: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None, description="stratified validation fraction (default: the preset's)")
    limit: Annotated[int, Field(ge=20, le=10_000_000)] | None = Field(
        None, description="stratified subset of N training images")
    class_weight: Literal["balanced", "none"] | None = Field(
        None, description="balanced | none (default: the preset's)")
    long_tail_ratio: Annotated[float, Field(ge=1, le=1e6)] | None = Field(
        None, description="CIFAR-10-LT imbalance ratio r", json_schema_extra=_cli("--long-tail"))
    mixed_precision: bool = Field(True, description="False computes in float32",
                                  json_schema_extra=_cli("--no-mixed-precision"))
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = Field(
        0, description="seed for splits, initialisation and augmentation")
    alpha: Annotated[float, Field(ge=0.001, le=0.5)] = Field(
        0.1, description="conformal miscoverage reported: prediction sets hold the true class with probability "
        ">= 1 - alpha")


class TrainConfig(TrainOptions):
    """A training run: the user's options plus recipe keys only presets and library callers set."""

    optimizer: Literal["adam", "sgd"] | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    lookahead: bool | None = None
    warmup_fraction: float | None = None
    tta: Literal[0, 1, 2] | None = None
    steps_per_execution: Annotated[int, Field(ge=1, le=1000)] | None = None
    image_size: int = 32
    data_dir: str | None = None

    def recipe(self) -> dict[str, Any]:
        """The effective recipe: defaults, then the preset's, then this run's overrides."""
        from convlens.ml.models import get_preset  # TensorFlow: only when a run needs its recipe

        merged = {**RECIPE_DEFAULTS, **get_preset(self.preset).recipe}
        for key in RECIPE_DEFAULTS:
            value = getattr(self, key, None)
            if value is not None and key != "augment":
                merged[key] = value
        augment = dict(merged["augment"])
        if not self.augment:
            augment = {**augment, "flip": False, "alternate_flip": False, "rotation": 0.0, "zoom": 0.0,
                       "translation": 0.0}
        else:  # a transform set for this run changes only itself
            augment |= {t: getattr(self, t) for t in TRANSFORMS if getattr(self, t) is not None}
        merged["augment"] = augment
        return merged
