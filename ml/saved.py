"""Trained models on disk: the `.keras` file plus a JSON sidecar (class names, thresholds, preset)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import keras

import convlens.ml.models  # noqa: F401  registers the custom layers that saved models refer to
from convlens.ml.conformal import Calibration
from convlens.ml.errors import ConvlensError
from convlens.ml.model_layout import sidecar_path


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def atomic_save_model(model: keras.Model, path: Path) -> None:
    """Writes a temp file and renames it over path, so a crash never leaves a half-written model."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


@dataclass
class TrainedModel:
    model: keras.Model
    class_names: list[str]
    thresholds: list[float] | None
    preset: str
    path: Path
    temperature: float = 1.0  # applied by every prediction path (ml.calibration)
    calibration: Calibration | None = None  # for conformal prediction sets (ml.conformal)

    @property
    def input_size(self) -> tuple[int, int]:
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2])


def save_trained(
    model: keras.Model, path: Path, class_names: list[str], thresholds: list[float] | None, preset: str,
    temperature: float = 1.0, calibration: Calibration | None = None, savedmodel: bool = False,
) -> Path:
    """`savedmodel`: the model wraps an imported TensorFlow SavedModel (copied beside it), which Keras loads only
    outside its safe mode; convlens imports one only from the CLI, where its user chose it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_model(model, path)
    meta = {"class_names": class_names, "thresholds": thresholds, "preset": preset, "temperature": temperature,
            "calibration": calibration.model_dump() if calibration else None, "savedmodel": savedmodel}
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2))
    return path


def load_trained_cached(path: Path | str) -> TrainedModel:
    """load_trained, reused while the model file and its sidecar are unchanged (a worker classifying many
    shards with one model loads it once)."""
    path = Path(path)
    try:
        stamp = (path.stat().st_mtime_ns, sidecar_path(path).stat().st_mtime_ns)
    except OSError:
        return load_trained(path)  # says what is missing
    return _cached(str(path), stamp)


@lru_cache(maxsize=2)
def _cached(path: str, stamp: tuple[int, int]) -> TrainedModel:
    return load_trained(path)


@contextmanager
def _repointed(path: Path) -> Iterator[Path]:
    """The model file with each imported SavedModel layer pointed at the copy beside it (the layer's config names
    the folder it was imported into, which is elsewhere once the model is in another home or machine's cache)."""
    folder = str(path.parent / "savedmodel")
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        layers = [layer for layer in config.get("config", {}).get("layers", [])
                  if layer.get("class_name") == "TFSMLayer"]
        if all(layer["config"].get("filepath") == folder for layer in layers):
            yield path
            return
        for layer in layers:
            layer["config"]["filepath"] = folder
        fd, copy = tempfile.mkstemp(suffix=".keras", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w") as patched:
                for item in archive.infolist():
                    patched.writestr(item, json.dumps(config) if item.filename == "config.json"
                                     else archive.read(item.filename))
            yield Path(copy)
        finally:
            os.unlink(copy)


def load_trained(path: Path | str) -> TrainedModel:
    path = Path(path)
    if not path.is_file():
        raise ConvlensError(f"{path}: model file not found")
    meta_path = sidecar_path(path)
    if not meta_path.is_file():
        raise ConvlensError(f"{meta_path}: model metadata (class names, thresholds) not found")
    meta = json.loads(meta_path.read_text())
    try:
        if meta.get("savedmodel"):
            with _repointed(path) as repointed:
                model = keras.models.load_model(repointed, compile=False, safe_mode=False)
        else:
            model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        raise ConvlensError(f"{path}: cannot load model: {exc}") from exc
    calibration = Calibration.model_validate(meta["calibration"]) if meta.get("calibration") else None
    return TrainedModel(model, meta["class_names"], meta.get("thresholds"), meta.get("preset", ""), path,
                        float(meta.get("temperature", 1.0)), calibration)
