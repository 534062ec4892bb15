"""Models trained elsewhere: a Keras 3 `.keras` file or a TensorFlow SavedModel folder, wrapped to take what
convlens feeds every model (RGB pixels divided by 255, at the model's own input size: images are resized to it)
and to output probabilities, then saved as a convlens model with its class names and, when a labelled folder
is given, the temperature, per-class thresholds and conformal calibration fitted on it (two stratified halves,
as training does: thresholds and temperature on one, the temperature's check and the conformal scores on the
other)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from convlens.ml.calibration import apply_temperature, calibration_metrics
from convlens.ml.conformal import Calibration
from convlens.ml.data.confined import copy_tree_confined
from convlens.ml.data.folders import load_image_folder
from convlens.ml.errors import ConvlensError
from convlens.ml.feasible import import_source_problem
from convlens.ml.keras_file import ModelFileRefused, private_copy
from convlens.ml.predict import predict_probs
from convlens.ml.report import MIN_CALIBRATION, kept_temperature
from convlens.ml.saved import save_trained
from convlens.ml.thresholds import tune_thresholds

# What the imported model takes, as (scale, offset) applied to convlens's pixels in [0, 1].
INPUT_SCALES = {"1/255": (1.0, 0.0), "1": (255.0, 0.0), "-1..1": (2.0, -1.0)}


class ImportRefused(ConvlensError):
    """A file that is not a model convlens can import, or one whose outputs do not fit the classes given."""


@dataclass
class Imported:
    path: Path
    class_names: list[str]
    input_size: tuple[int, int]
    outputs: str  # "probabilities" | "logits (softmax added)"
    temperature: float = 1.0
    thresholds: list[float] | None = None
    n_calibration: int = 0
    ece_before: float | None = None
    ece_after: float | None = None
    warnings: tuple[str, ...] = ()


def _core(source: Path, out_dir: Path) -> tuple[keras.layers.Layer, tuple[int | None, int | None]]:
    """The model (or SavedModel layer) and its input's height and width (None where it takes any)."""
    if problem := import_source_problem(source):
        raise ImportRefused(problem)
    if source.is_dir():
        import tensorflow as tf

        copy = out_dir / "savedmodel"  # the imported model refers to its own copy, not to the user's folder
        copy_tree_confined(source, copy)
        try:
            signature = tf.saved_model.load(str(copy)).signatures["serving_default"]
        except (KeyError, ValueError, OSError) as exc:
            raise ImportRefused(f"{source}: a SavedModel without a usable serving_default signature ({exc})") from None
        spec = next(iter(signature.structured_input_signature[1].values()))
        return keras.layers.TFSMLayer(str(copy), call_endpoint="serving_default"), (spec.shape[1], spec.shape[2])
    try:  # safe_mode: a Lambda layer's Python code is refused, not run
        with private_copy(source) as copy:
            model = keras.models.load_model(copy, compile=False, safe_mode=True)
    except ModelFileRefused as exc:
        raise ImportRefused(str(exc)) from None
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise ImportRefused(f"{source}: holds Python code (a Lambda layer), which is not run; rebuild it "
                                "without one") from None
        raise ImportRefused(f"{source}: cannot be loaded as a Keras model ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # a zip that is no Keras archive raises several types
        raise ImportRefused(f"{source}: cannot be loaded as a Keras model ({str(exc).splitlines()[0]})") from None
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] != 3:
        raise ImportRefused(f"{source}: takes input of shape {shape}, not a batch of RGB images (N, H, W, 3)")
    return model, (shape[1], shape[2])


def import_model(source: Path, class_names: list[str], input_scale: str, out_dir: Path,
                 calibrate: Path | None = None) -> Imported:
    """Wraps and saves the model at `source` as out_dir/model.keras; checks its outputs on random images."""
    out_dir.mkdir(parents=True, exist_ok=True)
    core, (height, width) = _core(source, out_dir)
    size = (height or 32, width or 32)
    inp = keras.Input((*size, 3))
    scale, offset = INPUT_SCALES[input_scale]
    raw = core(keras.layers.Rescaling(scale, offset)(inp))
    if isinstance(raw, dict):  # a SavedModel signature's outputs by name
        if len(raw) != 1:
            raise ImportRefused(f"{source}: its signature has {len(raw)} outputs ({', '.join(raw)}), not one")
        raw = next(iter(raw.values()))
    probe = np.random.default_rng(0).random((4, *size, 3)).astype(np.float32)
    out = np.asarray(keras.Model(inp, raw)(probe))
    if out.ndim != 2:
        raise ImportRefused(f"{source}: outputs shape {out.shape[1:]} per image, not one value per class")
    if out.shape[1] != len(class_names):
        raise ImportRefused(f"{source}: outputs {out.shape[1]} values per image, but {len(class_names)} classes "
                            "were given")
    is_probs = bool((out >= 0).all() and np.allclose(out.sum(1), 1.0, atol=1e-3))
    model = keras.Model(inp, raw if is_probs else keras.layers.Softmax()(raw), name="imported")
    result = Imported(out_dir / "model.keras", class_names, size,
                      "probabilities" if is_probs else "logits (softmax added)")
    calibration = None
    if calibrate is not None:
        calibration = _calibrate(model, calibrate, class_names, size, result)
    save_trained(model, result.path, class_names, result.thresholds, "imported", result.temperature, calibration,
                 savedmodel=source.is_dir())
    return result


def _calibrate(model: keras.Model, folder: Path, class_names: list[str], size: tuple[int, int],
               result: Imported) -> Calibration:
    data, _ = load_image_folder(folder, size, test_fraction=0.5, seed=0)
    unknown = [c for c in data.class_names if c not in class_names]
    if unknown:
        raise ImportRefused(f"{folder}: class folders {unknown} are not among the model's classes")
    index = np.array([class_names.index(c) for c in data.class_names])
    y_fit, y_check = index[data.y_train], index[data.y_test]
    raw_fit, raw_check = predict_probs(model, data.x_train), predict_probs(model, data.x_test)
    result.temperature, warned = kept_temperature(raw_fit, y_fit, raw_check, y_check)
    result.thresholds = tune_thresholds(y_fit, apply_temperature(raw_fit, result.temperature))
    scaled = apply_temperature(raw_check, result.temperature)
    result.ece_before = calibration_metrics(raw_check, y_check)["ece"]
    result.ece_after = calibration_metrics(scaled, y_check)["ece"]
    result.n_calibration = len(y_check)
    if len(y_check) < MIN_CALIBRATION:
        warned.append(f"conformal sets rest on {len(y_check)} calibration images (under {MIN_CALIBRATION}): "
                      "their coverage is noisy")
    result.warnings = tuple(warned)
    return Calibration.fit(scaled, y_check)
