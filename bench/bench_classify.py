"""Bulk-classification throughput of the seed model on a folder of 10,000 PNG files, decode included,
with and without Grad-CAM overlays. Usage: python bench/bench_classify.py [--model M.keras] [--n 10000]"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from convlens.ml.classify import classify_files
from convlens.ml.config import TrainConfig
from convlens.ml.data.cifar import load_cifar10
from convlens.ml.listing import list_folder
from convlens.ml.saved import load_trained
from convlens.ml.settings import settings
from convlens.ml.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a trained .keras model (default: train the seed preset briefly)")
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-classify-"))
    data = load_cifar10(settings().datasets_dir)
    model_path = args.model or train(TrainConfig(limit=5000, epochs=2), work / "model", data=data)["paths"]["model"]
    trained = load_trained(model_path)
    folder = work / "images"
    for i in range(args.n):
        j = i % len(data.y_test)
        d = folder / data.class_names[data.y_test[j]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.x_test[j]).save(d / f"{i:05d}.png")
    files = list_folder(folder)
    classify_files(trained, files[:512], batch_size=256)  # warm-up: tracing, thread pool
    for gradcam in (False, True):
        start = time.perf_counter()
        rows = classify_files(trained, files, gradcam=gradcam, out_dir=work / "overlays", batch_size=256)
        wall = time.perf_counter() - start
        acc = np.mean([r["predicted"] == r["true_label"] for r in rows])
        target = 300 if gradcam else 2000
        print(f"{'with Grad-CAM overlays' if gradcam else 'classification only   '}: {len(rows)} files in "
              f"{wall:.2f} s = {len(rows) / wall:,.0f} images/s (target >= {target}); accuracy {acc:.3f}",
              flush=True)


if __name__ == "__main__":
    main()
