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
