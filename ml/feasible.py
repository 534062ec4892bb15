"""What can be checked of a job before it runs, without TensorFlow and without decoding an image: a k-fold's
folds against the images per class, probe layer names against a saved model's own config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convlens.ml.config import TrainConfig
from convlens.ml.data.folders import class_folders
from convlens.ml.data.images import file_paths
from convlens.ml.data.splits import long_tailed_indices, stratified_split, stratified_subset
from convlens.ml.keras_file import ModelFileRefused, read_config

CIFAR_TRAIN_PER_CLASS = 5000
FOLDER_TEST_FRACTION = 0.2  # ml.data.folders.load_image_folder's default


PICKLES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".npy", ".npz")


def import_source_problem(source: Path) -> str | None:
    """Why `source` cannot be imported as a model, told before any job row is written (no TensorFlow): a
    folder without saved_model.pb, a pickle or legacy HDF5 file (loading one runs code), not a .keras file, or
    a .keras archive that is unreadable or over a limit (ml.keras_file). None when it may be tried."""
    name = source.name.lower()
    if source.is_dir():
        return None if (source / "saved_model.pb").is_file() else \
            f"{source}: a folder without saved_model.pb is no TensorFlow SavedModel"
    if name.endswith((".h5", ".hdf5")):
        return (f"{source}: a legacy HDF5 model (which may carry pickled code) is not loaded; load it in Keras "
                "yourself and save it as .keras")
    if name.endswith(PICKLES):
        return (f"{source}: a pickle is not loaded (loading one runs code); export a .keras file or a TensorFlow "
                "SavedModel")
    if not name.endswith(".keras"):
        return f"{source}: not a Keras model (.keras) or a TensorFlow SavedModel folder"
    try:
        read_config(source)
    except ModelFileRefused as exc:
        return str(exc)
    return None


def pool_class_counts(cfg: TrainConfig) -> list[int]:
    """Images per class in the training pool (after the test split, long tail and --limit), counted from the
    listing: unreadable files count too, so this is an upper bound."""
    if cfg.dataset == "cifar10":
        y = np.repeat(np.arange(10), CIFAR_TRAIN_PER_CLASS)
    else:
        root = Path(cfg.dataset)
        folders = class_folders(root)
        y = np.repeat(np.arange(len(folders)), [len(file_paths(d)) for d in folders])
        y = y[stratified_split(y, FOLDER_TEST_FRACTION, cfg.seed)[0]]
    if cfg.long_tail_ratio:
        y = y[long_tailed_indices(y, cfg.long_tail_ratio, cfg.seed)]
    if cfg.limit:
        y = y[stratified_subset(y, cfg.limit, cfg.seed)]
    return np.bincount(y, minlength=int(y.max()) + 1 if len(y) else 0).tolist()


def folds_problem(cfg: TrainConfig, folds: int) -> str | None:
    """Why `folds` stratified folds cannot be made of this training pool, or None when they can."""
    try:
        counts = pool_class_counts(cfg)
    except ValueError as exc:  # too few images to split off a test part at all
        return f"the dataset is too small to split: {exc}"
    if len(counts) < 2:
        return "the dataset needs at least two classes"
    if min(counts) < folds:
        return (f"{folds} folds need at least {folds} training images of every class; the smallest class has "
                f"{min(counts)} (after the test split, --limit and --long-tail)")
    return None


SPATIAL_CLASSES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")  # what Grad-CAM can explain (ml.explain)


def _layers(config: Any) -> list[tuple[str, str]]:
    """(class name, layer name) of every layer in a model config, nested models' layers included."""
    found: list[tuple[str, str]] = []
    if isinstance(config, dict):
        inner = config.get("config")
        if "class_name" in config and isinstance(inner, dict) and isinstance(inner.get("name"), str) and \
                "DTypePolicy" not in str(config["class_name"]):  # a layer's dtype policy is named too ("float32")
            found.append((str(config["class_name"]), inner["name"]))
        for value in config.values():
            found += _layers(value)
    elif isinstance(config, list):
        for value in config:
            found += _layers(value)
    return found


def saved_layer_names(config: dict[str, Any]) -> list[str]:
    """The layer names in a model's config (ml.keras_file.read_config: read without loading the model)."""
    return list(dict.fromkeys(name for _, name in _layers(config)))


def feature_map_problem(config: dict[str, Any]) -> str | None:
    """Why the model of this config has no feature map to explain (Grad-CAM) or probe (layers), told without
    TensorFlow; None when it has one."""
    classes = {cls for cls, _ in _layers(config)}
    if classes & set(SPATIAL_CLASSES):
        return None
    if "TFSMLayer" in classes:
        return ("this model was imported from a TensorFlow SavedModel, which hides its layers: import its .keras "
                "file instead to explain or probe it")
    return "this model has no convolutional layer (Conv2D): no feature map to explain or probe"
