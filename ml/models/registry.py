"""Presets: a named model builder plus the training recipe defaults that go with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras


@dataclass
class Preset:
    name: str
    build: Callable[[tuple[int, int, int], int], keras.Model]
    description: str
    # Training recipe defaults; any of them can be overridden per run.
    recipe: dict[str, Any] = field(default_factory=dict)
    # The convolutional layer Grad-CAM uses by default (None: the last conv layer).
    gradcam_layer: str | None = None
    # Sets data-dependent weights (e.g. a whitening layer) on a freshly built model from uint8 training images.
    init_from_data: Callable[[keras.Model, Any], None] | None = None


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    _PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(_PRESETS))}") from None


def list_presets() -> list[str]:
    return sorted(_PRESETS)
