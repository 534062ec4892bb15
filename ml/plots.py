"""PNG plots: training curves and confusion matrices (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    keys = [k for k in ("loss", "accuracy") if k in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        epochs = range(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", label=f"train {key}")  # markers: one epoch is a point, not nothing
        if f"val_{key}" in history:
            ax.plot(range(1, len(history[f"val_{key}"]) + 1), history[f"val_{key}"], "o-", label=f"validation {key}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    return _save(fig, path)


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(
        ax=ax, xticks_rotation=45, colorbar=False
    )
    return _save(fig, path)


def plot_bars(labels: list[str], series: dict[str, list[float]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 4))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + i * width, values, width, label=name)
    ax.set_xticks(x + width * (len(series) - 1) / 2, labels)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def _svg(fig: plt.Figure) -> str:
    import io

    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def bars_svg(labels: list[str], series: dict[str, list[float]], ylabel: str,
             errors: dict[str, list[float]] | None = None, ylim: tuple[float, float] | None = (0, 1)) -> str:
    """Grouped bars (one group per label, one bar per series, optional ± error bars) as an SVG document."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(labels) * max(1, len(series)) ** 0.5), 3.2))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name,
               yerr=(errors or {}).get(name), capsize=3)
    ax.set_xticks(x, labels, rotation=30 if max(map(len, labels), default=0) > 5 else 0, ha="right")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _svg(fig)


def lines_svg(labels: list[str], series: dict[str, list[float | None]], ylabel: str) -> str:
    """One line per series over the labels (e.g. probe accuracy per layer) as an SVG document."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(labels)), 3.2))
    for name, values in series.items():
        ax.plot(labels, [np.nan if v is None else v for v in values], marker="o", label=name)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)
