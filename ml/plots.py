"""PNG plots: training curves and confusion matrices (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from convlens.ml.pyplot import plt


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _history_figure(history: dict[str, list[float]], runs: dict[str, dict[str, list[float]]] | None = None,
                    size: float = 5.0) -> plt.Figure:
    """Loss and accuracy per epoch, train and validation; with `runs`, one line per run (validation figures)."""
    runs = runs or {"": history}
    keys = [k for k in ("loss", "accuracy") if any(k in h for h in runs.values())]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(size * max(1, len(keys)), 0.8 * size), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        for run, h in runs.items():
            for series, label in ((key, "train"), (f"val_{key}", "validation")):
                if h.get(series) and (len(runs) == 1 or series.startswith("val_") or f"val_{key}" not in h):
                    # markers: one epoch is a point, not nothing
                    ax.plot(range(1, len(h[series]) + 1), h[series], "o-", label=f"{run} {label}".strip())
        longest = max((len(h.get(key) or []) for h in runs.values()), default=1)
        ax.set_xlim(0.5, longest + 0.5)  # whole epochs, one alone included
        ax.set_xticks(range(1, longest + 1, max(1, longest // 10)))
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    return _save(_history_figure(history), path)


def history_svg(history: dict[str, list[float]], runs: dict[str, dict[str, list[float]]] | None = None) -> str:
    """The training curves as an SVG document: one run's, or several runs' overlaid."""
    return _svg(_history_figure(history, runs, size=4.0))


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

    if fig.get_layout_engine() is None:
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


def _numbers(values: list[float | str | None]) -> list[float]:
    return [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def log_scaled(values: list[float | str | None]) -> bool:
    """Whether numbers are best read on a log axis: all positive and spanning at least two decades (learning
    rates, weight decays), where a linear axis would crowd all but the largest into one end."""
    numbers = _numbers(values)
    return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 100


def number_axis(numbers: list[float], log: bool) -> tuple[dict[float, float], list[tuple[float, str]]]:
    """Each number's height on a 0-1 axis (linear, or log10 for positive numbers) and the axis's ticks: its ends,
    and on a log axis the powers of ten between them, so the scale reads as logarithmic."""
    at = np.log10 if log else (lambda v: v)
    lo, hi = float(at(min(numbers))), float(at(max(numbers)))
    if hi <= lo:
        return {v: 0.5 for v in numbers}, [(0.5, f"{min(numbers):.4g}")]
    ticks = [(0.0, f"{min(numbers):.4g}"), (1.0, f"{max(numbers):.4g}")]
    if log:
        ticks += [((k - lo) / (hi - lo), f"1e{k}") for k in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)
                  if 0.08 < (k - lo) / (hi - lo) < 0.92]
    return {v: (float(at(v)) - lo) / (hi - lo) for v in numbers}, ticks


def parallel_svg(runs: dict[str, dict[str, float | str | None]], axes: list[str], color_by: str,
                 log_axes: set[str] | None = None) -> str:
    """Parallel coordinates: one line per run across `axes` (numbers scaled to each axis's range, on a log
    scale for the axes in `log_axes` (default: those `log_scaled` picks), text as evenly spaced categories),
    coloured by the figure `color_by`, as an SVG document. Drawn with matplotlib: pandas' version has no log
    axes."""
    log_axes = {a for a in axes if log_scaled([runs[r].get(a) for r in runs])} if log_axes is None else log_axes
    axes = list(axes)  # labels gain "(log)" below
    fig, ax = plt.subplots(figsize=(max(7.0, 2.2 * len(axes)), 4.0), layout="constrained")
    scaled: dict[str, list[float]] = {r: [] for r in runs}
    for i, name in enumerate(axes):
        values = [runs[r].get(name) for r in runs]
        numbers = _numbers(values)
        if numbers and len(numbers) == len([v for v in values if v is not None]):
            log = name in log_axes and min(numbers) > 0
            position, ticks = number_axis(numbers, log)
            axes[i] = f"{name} (log)" if log else name
        else:
            levels = sorted({str(v) for v in values if v is not None})
            position = {lv: (k / (len(levels) - 1) if len(levels) > 1 else 0.5) for k, lv in enumerate(levels)}
            position = {**{v: position[str(v)] for v in values if v is not None}}
            ticks = [(p, str(v)) for v, p in position.items()]
        for r, v in zip(runs, values, strict=True):
            scaled[r].append(np.nan if v is None else position[v])
        ax.axvline(i, color="gray", lw=0.8)
        for p, label in ticks:
            ax.annotate(label, (i, p), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center")
    figures = [runs[r].get(color_by) for r in runs]
    known = [v for v in figures if isinstance(v, int | float)]
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    cmap = plt.get_cmap("viridis")
    for (r, ys), v in zip(scaled.items(), figures, strict=True):
        shade = cmap((v - lo) / (hi - lo) if isinstance(v, int | float) and hi > lo else 0.5)
        ax.plot(range(len(axes)), ys, "o-", color=shade, label=f"{r} ({color_by} {v:.4g})" if isinstance(
            v, int | float) else r)
    ax.set_xticks(range(len(axes)), axes, fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6)
    fig.legend(fontsize=7, loc="outside right upper")
    return _svg(fig)
