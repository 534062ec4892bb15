"""The files a saved model is made of (kept free of Keras, so the CLI and the API can name them cheaply)."""

from __future__ import annotations

from pathlib import Path


def sidecar_path(model_path: Path) -> Path:
    """The model's JSON sidecar: class names, thresholds, temperature, conformal calibration."""
    return model_path.with_suffix(".json")


def model_files(model: Path) -> list[Path]:
    """What loading a model file reads: itself, its sidecar and an imported SavedModel's folder beside it."""
    folder = model.parent / "savedmodel"
    return [model, sidecar_path(model), *(sorted(p for p in folder.rglob("*") if p.is_file())
                                          if folder.is_dir() else [])]
