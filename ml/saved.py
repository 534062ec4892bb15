"""Trained models on disk: the `.keras` file plus a JSON sidecar (class names, thresholds, preset)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import keras

import convlens.ml.models  # noqa: F401  registers the custom layers that saved models refer to
from convlens.ml.conformal import Calibration
from convlens.ml.keras_file import ModelFileRefused, private_copy, read_sidecar
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


def load_trained_cached(path: Path | str, registered: bool = False) -> TrainedModel:
    """load_trained, reused while the model file and its sidecar are unchanged (a worker classifying many
    shards with one model loads it once)."""
    path = Path(path)
    try:
        stamp = (path.stat().st_mtime_ns, sidecar_path(path).stat().st_mtime_ns)
    except OSError:
        return load_trained(path, registered)  # says what is missing
    return _cached(str(path), stamp, registered)


@lru_cache(maxsize=2)
def _cached(path: str, stamp: tuple[int, int], registered: bool) -> TrainedModel:
    return load_trained(path, registered)


def _repoint(copy: Path, folder: Path) -> None:
    """Points each imported SavedModel layer of the private copy at the SavedModel beside the registered model
    (the layer's config names the folder it was imported into, elsewhere once the model is in another home or
    machine's cache)."""
    with zipfile.ZipFile(copy) as archive:
        config = json.loads(archive.read("config.json"))
        members = [(item, archive.read(item.filename)) for item in archive.infolist()]
    for layer in config.get("config", {}).get("layers", []):
        if layer.get("class_name") == "TFSMLayer":
            layer["config"]["filepath"] = str(folder)
    with zipfile.ZipFile(copy, "w") as patched:
        for item, data in members:
            patched.writestr(item, json.dumps(config) if item.filename == "config.json" else data)


def load_trained(path: Path | str, registered: bool = False) -> TrainedModel:
    """The model at path with its sidecar, both read as untrusted files (ml.keras_file) and the model loaded
    with Keras' safe mode on. `registered`: the path came from convlens's own registry, not from a user; only
    then may the model wrap a SavedModel that `convlens models import` copied beside it (a SavedModel is a
    TensorFlow graph, which safe mode cannot vet), whatever a sidecar says."""
    path = Path(path)
    meta = read_sidecar(sidecar_path(path))
    savedmodel = bool(meta.get("savedmodel"))
    if savedmodel and not registered:
        raise ModelFileRefused(f"{path}: wraps a TensorFlow SavedModel, which is loaded only as a registered "
                               "model (`convlens models import` on the server, then --model NAME)")
    with private_copy(path) as copy:
        if savedmodel:
            _repoint(copy, path.parent / "savedmodel")
        try:
            model = keras.models.load_model(copy, compile=False, safe_mode=not savedmodel)
        except Exception as exc:  # Keras raises many types for a bad or hostile file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
                first = "it holds Python code (a Lambda layer), which convlens never runs"
            raise ModelFileRefused(f"{path}: cannot load model: {first}") from None
    try:
        calibration = Calibration.model_validate(meta["calibration"]) if meta.get("calibration") else None
        return TrainedModel(model, [str(c) for c in meta["class_names"]], meta.get("thresholds"),
                            str(meta.get("preset", "")), path, float(meta.get("temperature", 1.0)), calibration)
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        raise ModelFileRefused(f"{sidecar_path(path)}: model metadata is malformed") from None
