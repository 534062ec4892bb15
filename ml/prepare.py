"""Data for a training run: the dataset, the training pool (long tail, --limit), the validation split, class weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from convlens.ml.config import TrainConfig
from convlens.ml.data.cifar import ImageDataset, load_cifar10
from convlens.ml.data.folders import load_image_folder
from convlens.ml.data.splits import long_tailed_indices, stratified_split, stratified_subset
from convlens.ml.settings import settings

MIN_CALIBRATION_SPLIT = 100  # validation images below which none are set aside for conformal calibration
# A preset's validation fraction is sized for CIFAR-10 (2% of 50,000: 1,000 images); on a smaller pool the split
# keeps at least this many, or a tenth of the pool where that is fewer, so the temperature, the thresholds and
# the conformal calibration still see enough images. A fraction the run sets is taken as it is.
MIN_VALIDATION = 1000


@dataclass
class PreparedData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    # Conformal calibration images: half the validation split, which neither early stopping, the temperature
    # nor the thresholds see (empty when the validation split is too small to halve).
    x_cal: np.ndarray | None = None
    y_cal: np.ndarray | None = None


def load_dataset(cfg: TrainConfig) -> ImageDataset:
    if cfg.dataset == "cifar10":
        return load_cifar10(Path(cfg.data_dir) if cfg.data_dir else settings().datasets_dir)
    data, _errors = load_image_folder(Path(cfg.dataset), (cfg.image_size, cfg.image_size), seed=cfg.seed)
    return data


def training_pool(cfg: TrainConfig, data: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """The training images after the long-tail and --limit options (the test set is never touched)."""
    x, y = data.x_train, data.y_train
    if cfg.long_tail_ratio:
        idx = long_tailed_indices(y, cfg.long_tail_ratio, cfg.seed)
        x, y = x[idx], y[idx]
    if cfg.limit:
        idx = stratified_subset(y, cfg.limit, cfg.seed)
        x, y = x[idx], y[idx]
    return x, y


def validation_fraction(cfg: TrainConfig, pool: int) -> float:
    """The share of the training pool held out for validation (see MIN_VALIDATION)."""
    fraction = float(cfg.recipe()["val_fraction"])
    if cfg.val_fraction is not None or fraction == 0 or pool == 0:
        return fraction
    return max(fraction, min(MIN_VALIDATION, pool / 10) / pool)


def prepare_data(
    cfg: TrainConfig,
    data: ImageDataset | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> PreparedData:
    """Train/validation/test arrays; `split` (indices into the training pool) overrides the validation split."""
    data = data or load_dataset(cfg)
    x, y = training_pool(cfg, data)
    fraction = validation_fraction(cfg, len(y))
    train_idx, val_idx = split if split is not None else stratified_split(y, fraction, cfg.seed)
    cal_idx = val_idx[:0]
    if len(val_idx) >= MIN_CALIBRATION_SPLIT:
        keep, held = stratified_split(y[val_idx], 0.5, cfg.seed)
        val_idx, cal_idx = val_idx[keep], val_idx[held]
    return PreparedData(x[train_idx], y[train_idx], x[val_idx], y[val_idx], data.x_test, data.y_test,
                        data.class_names, x[cal_idx], y[cal_idx])


def class_weights(y: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"unknown class_weight {mode!r}; use balanced or none")
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights, strict=True)} | {
        c: 1.0 for c in range(num_classes) if c not in present
    }
