"""Model registry: presets (a model builder plus its training recipe) plug in by name."""

from convlens.ml.models.registry import Preset, get_preset, list_presets, register_preset

# Importing the preset modules registers them.
from convlens.ml.models import seed as _seed  # noqa: E402,F401  isort: skip
from convlens.ml.models import fast as _fast  # noqa: E402,F401  isort: skip

__all__ = ["Preset", "get_preset", "list_presets", "register_preset"]
