"""Exports of a convlens model for other runtimes (TF SavedModel, LiteRT/TFLite, ONNX), each checked in its own
runtime against Keras.

An export takes raw RGB pixels (float32, 0-255, the model's input size) and outputs the temperature-scaled
probabilities convlens itself reports: the division by 255 and the temperature are inside it. Beside it,
`convlens-model.json` names the classes, the input and the thresholds. The export is made from a float32 copy
of the model (a bf16-trained model's weights, computed in float32), and checked against that copy in Keras.
Keras' own export writes SavedModel and ONNX (through tf2onnx); the LiteRT converter makes the .tflite file.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convlens.ml.calibration import apply_temperature
from convlens.ml.errors import ConvlensError
from convlens.ml.predict import predict_probs
from convlens.ml.saved import TrainedModel, atomic_write_text

FORMATS = ("savedmodel", "tflite", "onnx")
CHECK_BATCH = 100


class ExportError(ConvlensError):
    """An export that cannot be made here (a missing optional package) or that fails its check."""


@dataclass
class ExportReport:
    path: Path
    format: str
    images: int
    top1_agreement: float  # with the model as classify and /predict serve it
    max_probability_difference: float
    served_policy: str  # the precision that model computes in (the export computes in float32)


def _float32(config: Any) -> Any:
    """A model config with every mixed-precision dtype policy set to float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name", "")).startswith(
                "mixed_"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32(v) for v in config]
    return config


class _Temperature(keras.layers.Layer):
    """Probabilities scaled by a temperature: softmax(log(p) / T)."""

    def __init__(self, temperature: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature

    def call(self, probs):
        return keras.ops.softmax(keras.ops.log(keras.ops.maximum(probs, 1e-12)) / self.temperature)


def servable(trained: TrainedModel) -> keras.Model:
    """A float32 model from raw 0-255 pixels to temperature-scaled probabilities."""
    source = trained.model
    config = source.get_config()
    copy = source
    if _float32(config) != config:  # a mixed-precision model is rebuilt in float32 (a float32 one, as it is)
        copy = source.__class__.from_config(_float32(config))
        copy.set_weights(source.get_weights())
    height, width = trained.input_size
    inp = keras.Input((height, width, 3), dtype="float32", name="pixels")
    probs = copy(keras.layers.Rescaling(1 / 255)(inp))
    if trained.temperature != 1.0:
        probs = _Temperature(trained.temperature)(probs)
    return keras.Model(inp, probs, name="convlens_export")


def _runtime(fmt: str, path: Path):  # noqa: ANN202  (a function from a batch to probabilities)
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # kept by the closure: its variables live as long as it does
        return lambda x: loaded.serve(tf.constant(x)).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))

    def run(x: np.ndarray) -> np.ndarray:
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return run


def export(trained: TrainedModel, fmt: str, out_dir: Path, check_images: np.ndarray) -> ExportReport:
    """Writes the export into out_dir, reloads it in its runtime and compares it, on check_images (uint8 RGB at
    the model's input size), with what classify and /predict serve: the saved model in its own precision policy
    (bf16 where it trained in bf16), temperature-scaled, not the float32 copy that was exported."""
    needs = {"onnx": ("onnxruntime", "tf2onnx"), "tflite": ("ai_edge_litert",)}.get(fmt, ())
    for module in needs:
        try:
            __import__(module)
        except ImportError:
            raise ExportError(f"--format {fmt} needs {module}: pip install 'convlens[export]'") from None
    model = servable(trained)
    model(np.zeros((1, *trained.input_size, 3), np.float32))  # built and traced once (the ONNX export needs it)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "savedmodel":
        path = out_dir / "savedmodel"
        model.export(str(path), format="tf_saved_model", verbose=False)
    elif fmt == "onnx":
        path = out_dir / "model.onnx"
        with warnings.catch_warnings():  # Keras' bundled tf2onnx probes the removed np.object: noise for the user
            warnings.filterwarnings("ignore", message="In the future `np.object`", category=FutureWarning)
            model.export(str(path), format="onnx", verbose=False)
    else:
        import tensorflow as tf

        path = out_dir / "model.tflite"
        with tempfile.TemporaryDirectory() as tmp:
            model.export(tmp, format="tf_saved_model", verbose=False)
            path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(tmp).convert())
    atomic_write_text(out_dir / "convlens-model.json", json.dumps({
        "format": fmt, "file": path.name, "class_names": trained.class_names,
        "input": {"shape": [None, *trained.input_size, 3], "dtype": "float32", "range": [0, 255], "channels": "RGB"},
        "output": "probabilities, temperature-scaled", "temperature": trained.temperature,
        "thresholds": trained.thresholds}, indent=2))
    run = _runtime(fmt, path)
    x = check_images.astype(np.float32)
    served = apply_temperature(predict_probs(trained.model, check_images), trained.temperature)
    their = np.concatenate([np.asarray(run(x[i:i + CHECK_BATCH])) for i in range(0, len(x), CHECK_BATCH)])
    return ExportReport(path, fmt, len(x), float((their.argmax(1) == served.argmax(1)).mean()),
                        float(np.abs(their - served).max()), _compute_policy(trained.model))


def _compute_policy(model: keras.Model) -> str:
    """The precision the model's layers compute in (the model object's own policy says float32 regardless)."""
    return next((layer.dtype_policy.name for layer in model.layers if layer.dtype_policy.name != "float32"),
                "float32")
