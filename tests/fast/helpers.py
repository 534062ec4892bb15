"""Tiny synthetic data for the fast tier: PNG folders and an untrained model saved like a trained one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 12, seed: int = 0) -> int:
    """root/<class>/*.png with a colour per class (so a model can learn them), plus nothing else."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((32, 32, 3), np.uint8)
            base[..., c % 3] = 200
            noisy = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / name / f"{name}_{i:03d}.png")
    return per_class * len(classes)


def saved_model(path: Path, class_names: list[str]) -> Path:
    from convlens.ml.models import get_preset
    from convlens.ml.saved import save_trained

    model = get_preset("seed").build((32, 32, 3), len(class_names))
    return save_trained(model, path, class_names, None, "seed")


def lambda_model(path: Path, class_names: list[str], marker: Path, savedmodel_claim: bool = True) -> Path:
    """A .keras file whose Lambda layer creates `marker` when Keras runs it, with a sidecar that claims the model
    wraps a SavedModel (the claim that once switched Keras' safe mode off)."""
    import json

    import keras

    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Dense(len(class_names), activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(touch, output_shape=(32, 32, 3))(inp)))
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inp, out).save(path)
    path.with_suffix(".json").write_text(json.dumps({"class_names": class_names, "savedmodel": savedmodel_claim}))
    marker.unlink(missing_ok=True)  # building the model ran the layer once
    return path


def zip_bomb(path: Path, inflated: int = 1 << 30) -> Path:
    """A .keras-named zip whose config.json inflates to `inflated` bytes (deflate shrinks zeros ~1000-fold)."""
    import zipfile

    if not path.exists():
        chunk = b"\0" * (16 << 20)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
                zf.open("config.json", "w", force_zip64=True) as member:
            for _ in range(inflated // len(chunk)):
                member.write(chunk)
    return path
