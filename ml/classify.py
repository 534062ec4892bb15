"""Bulk classification of image folders in streaming batches, with optional Grad-CAM overlays."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from convlens.ml.calibration import apply_temperature
from convlens.ml.conformal import Method, sets, uniforms_of
from convlens.ml.data.images import decoded, fit_pixels
from convlens.ml.errors import ImageReadError
from convlens.ml.explain import CamModel, compute_cam, save_overlay
from convlens.ml.folder_eval import LabelledCounts
from convlens.ml.hardware import decode_threads
from convlens.ml.listing import overlay_name
from convlens.ml.progress import ProgressEvent, ProgressFn
from convlens.ml.saved import TrainedModel
from convlens.ml.thresholds import decisions

DECODE_CHUNK = 32  # files per decoding task
# Overlays of larger images are scaled down to this: one of 64 megapixels would take gigabytes to blend.
OVERLAY_PIXELS = 4_000_000
OVERLAY_THREADS = 2  # Grad-CAM overlays written (PNG-encoded) beside the model


@dataclass(frozen=True)
class SetOptions:
    """Conformal prediction sets for bulk classification (see ml.conformal)."""

    alpha: float = 0.1
    method: Method = "aps"
    class_conditional: bool = False
    decide: bool = False  # the decision is the set's one class, or "uncertain" when it holds more or none


@lru_cache(maxsize=4)
def _predictor(model: tf.keras.Model):  # noqa: ANN202  (a tf.function)
    """The model's traced forward pass, kept while the model is (a worker reuses both across shards). Traced once
    for any batch size: a shard's last, smaller batch would otherwise trace it again in each new process."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _read(path: Path, size: tuple[int, int], keep_original: bool, within: Path | None):
    """The model's view of an image and, for an overlay, the image itself scaled to at most OVERLAY_PIXELS."""
    try:
        with decoded(path, within) as img:
            view = np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR)) \
                if img.size != (size[1], size[0]) else np.asarray(img)
            original = np.asarray(fit_pixels(img, OVERLAY_PIXELS)) if keep_original else None
        return path, view, original, None
    except ImageReadError as exc:
        return path, None, None, exc.reason


def _read_chunk(paths: list[Path], size: tuple[int, int], keep: bool, within: Path | None) -> list:
    return [_read(p, size, keep, within) for p in paths]


def _batches(paths: list[Path], size: tuple[int, int], batch_size: int, keep: bool,
             within: Path | None, ahead: int = 2) -> Iterator[list]:
    """Decoded batches in order. Decoding runs in threads (PIL releases the GIL) `ahead` batches in front of the
    caller, so the model never waits for a batch that could have been decoded while it ran the last one. Each
    thread takes a chunk of files: a future per file cost more in locking than a small PNG's decoding."""
    pending: deque[list[Future]] = deque()
    chunk = max(1, min(DECODE_CHUNK, batch_size // decode_threads()))
    with ThreadPoolExecutor(max_workers=decode_threads()) as pool:
        for start in range(0, len(paths), batch_size):
            batch = paths[start:start + batch_size]
            pending.append([pool.submit(_read_chunk, batch[i:i + chunk], size, keep, within)
                            for i in range(0, len(batch), chunk)])
            if len(pending) > ahead:
                yield [r for f in pending.popleft() for r in f.result()]
        while pending:
            yield [r for f in pending.popleft() for r in f.result()]


def classify_files(
    trained: TrainedModel,
    paths: Sequence[str | Path],
    top_k: int = 3,
    gradcam: bool = False,
    out_dir: Path | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cam_layer: str | None = None,
    within: Path | None = None,
    conformal: SetOptions | None = None,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    on_labelled: Callable[[LabelledCounts], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per file: predicted class, confidence, top-k, thresholded decision, true label when the parent
    folder is a class name, overlay path with gradcam, or the error for an unreadable file (files that, once
    opened, lie outside `within` are unreadable too). Probabilities are temperature-scaled; with `conformal`
    (and a model that kept its calibration) each row also holds its prediction set. `on_rows` gets each batch's
    rows as soon as they are made (a worker prepares them for its store while the model runs the next batch);
    `on_labelled` gets each batch's counts over its labelled images (see folder_eval), when it has any."""
    paths = [Path(p) for p in paths]
    model, names = trained.model, trained.class_names
    size = trained.input_size
    predict = _predictor(model)
    cam_model = CamModel(model, cam_layer) if gradcam else None
    if gradcam:
        if out_dir is None:
            raise ValueError("gradcam needs an output folder for the overlays")
        out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    k = min(top_k, len(names))
    set_thresholds = None
    if conformal is not None and trained.calibration is not None:
        set_thresholds = trained.calibration.thresholds(len(names), conformal.alpha, conformal.method,
                                                        conformal.class_conditional)
    # Overlays are written by threads (PNG encoding and file creation release the GIL) while the model goes on.
    writer = ThreadPoolExecutor(max_workers=OVERLAY_THREADS) if gradcam else None
    written: list[Future] = []
    try:
        for batch in _batches(paths, size, batch_size, gradcam, within):
            good = [b for b in batch if b[1] is not None]
            by_path: dict[Path, dict[str, Any]] = {}
            if good:
                x = np.stack([g[1] for g in good]).astype(np.float32) / 255.0
                raw = predict(tf.constant(x)).numpy().astype(np.float32)
                probs = apply_temperature(raw, trained.temperature)
                members = None if set_thresholds is None else sets(
                    probs, set_thresholds, conformal.method, uniforms_of([str(g[0]) for g in good]))
                order = np.argsort(-probs, axis=1)[:, :k]
                if trained.thresholds:
                    dec, passed = decisions(probs, trained.thresholds)
                else:
                    dec, passed = probs.argmax(1), np.ones(len(probs), bool)
                cams = compute_cam(model, x, class_idx=order[:, 0], cam_model=cam_model)[0] if gradcam else None
                labelled = [i for i, g in enumerate(good) if g[0].parent.name in names]
                if on_labelled is not None and labelled:
                    on_labelled(LabelledCounts.of(
                        names, np.array([names.index(good[i][0].parent.name) for i in labelled]), raw[labelled],
                        probs[labelled], k, None if members is None else members[labelled]))
                for i, (path, _, original, _) in enumerate(good):
                    row = {
                        "path": str(path),
                        "predicted": names[order[i, 0]],
                        "confidence": float(probs[i, order[i, 0]]),
                        "top_k": [[names[c], float(probs[i, c])] for c in order[i]],
                        "decision": names[dec[i]] if passed[i] else "uncertain",
                        "prediction_set": None if members is None
                        else [names[c] for c in np.flatnonzero(members[i])],
                        "true_label": path.parent.name if path.parent.name in names else None,
                        "error": None,
                    }
                    if members is not None and conformal is not None and conformal.decide:
                        single = len(row["prediction_set"]) == 1
                        row["decision"] = row["prediction_set"][0] if single else "uncertain"
                    if gradcam:
                        target = out_dir / overlay_name(path)
                        written.append(writer.submit(save_overlay, original, cams[i], target))
                        row["overlay"] = str(target)
                    by_path[path] = row
            # Rows keep the order of the input list; unreadable files get their error instead of a prediction.
            made = [by_path.get(path) or {"path": str(path), "error": error} for path, _, _, error in batch]
            rows.extend(made)
            if on_rows is not None:
                on_rows(made)
            if progress is not None:
                progress(ProgressEvent(stage="classify", done=len(rows), total=len(paths)))
            finished = {f for f in written if f.done()}
            for f in finished:
                f.result()  # a failed write (a full disk) fails the shard now
            written = [f for f in written if f not in finished]
    finally:
        if writer is not None:
            writer.shutdown(wait=True)
    for f in written:
        f.result()
    return rows
