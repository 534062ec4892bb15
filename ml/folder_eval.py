"""Evaluation of a classify job on a labelled folder (images under class-named folders).

Shards count what they saw into `LabelledCounts` (a confusion matrix, top-k hits, per-bin reliability sums
before and after the temperature, conformal hits and set sizes); counts add up across shards, so the parent
gets the exact figures of all images without reading a row back. `evaluate` turns the sums into figures with
scikit-learn (the confusion matrix expanded back into label pairs). The result models load with every CLI
command, so scikit-learn and SciPy are imported only where figures are made.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


class LabelledCounts(BaseModel):
    """Additive counts over a shard's labelled images."""

    classes: list[str]
    confusion: list[list[int]]  # [true][predicted]
    k: int
    top_k_hits: int = 0
    # Per equal-width confidence bin: [images, sum of confidence, images right]; raw and temperature-scaled.
    bins_raw: list[list[float]]
    bins_scaled: list[list[float]]
    with_sets: int = 0
    covered: int = 0  # true class in the conformal set
    set_size_sum: int = 0

    @classmethod
    def of(cls, classes: list[str], true: np.ndarray, raw: np.ndarray, scaled: np.ndarray, k: int,
           sets: np.ndarray | None) -> LabelledCounts:
        """From one batch: true class indices, raw and scaled probabilities (N, C), boolean sets (N, C)."""
        n = len(classes)
        pred = scaled.argmax(1)
        confusion = np.zeros((n, n), np.int64)
        np.add.at(confusion, (true, pred), 1)
        top = np.argsort(-scaled, axis=1)[:, :k]
        from convlens.ml.calibration import bin_sums

        counts = cls(classes=classes, confusion=confusion.tolist(), k=k,
                     top_k_hits=int((top == true[:, None]).any(1).sum()),
                     bins_raw=bin_sums(raw, true).tolist(), bins_scaled=bin_sums(scaled, true).tolist())
        if sets is not None:
            counts.with_sets, counts.covered = len(true), int(sets[np.arange(len(true)), true].sum())
            counts.set_size_sum = int(sets.sum())
        return counts

    def __add__(self, other: LabelledCounts) -> LabelledCounts:
        return LabelledCounts(
            classes=self.classes, k=self.k,
            confusion=(np.asarray(self.confusion) + np.asarray(other.confusion)).tolist(),
            top_k_hits=self.top_k_hits + other.top_k_hits,
            bins_raw=(np.asarray(self.bins_raw) + np.asarray(other.bins_raw)).tolist(),
            bins_scaled=(np.asarray(self.bins_scaled) + np.asarray(other.bins_scaled)).tolist(),
            with_sets=self.with_sets + other.with_sets, covered=self.covered + other.covered,
            set_size_sum=self.set_size_sum + other.set_size_sum)


class ClassFigures(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class Averages(BaseModel):
    precision: float
    recall: float
    f1: float


class FolderEvaluation(BaseModel):
    """The figures of a classify job on the images whose folder named their class."""

    labelled: int
    accuracy: float
    top_k: int
    top_k_accuracy: float
    macro: Averages
    weighted: Averages
    per_class: dict[str, ClassFigures]
    class_names: list[str]
    confusion_matrix: list[list[int]] = Field(description="[true][predicted] counts")
    ece_before: float = Field(description="ECE of the raw probabilities (15 bins)")
    ece_after: float = Field(description="ECE after the model's temperature")
    coverage: float | None = Field(None, description="share of images whose conformal set holds the true class")
    mean_set_size: float | None = None


def evaluate(c: LabelledCounts) -> FolderEvaluation:
    from convlens.ml.calibration import ece_of
    from convlens.ml.evaluate import classification_metrics

    cm = np.asarray(c.confusion)
    true, pred = np.nonzero(cm)
    reps = cm[true, pred]
    m = classification_metrics(np.repeat(true, reps), np.repeat(pred, reps), c.classes)
    labelled = int(cm.sum())
    return FolderEvaluation(
        labelled=labelled, accuracy=m["accuracy"], top_k=c.k, top_k_accuracy=c.top_k_hits / labelled,
        macro=m["macro"], weighted=m["weighted"], per_class=m["per_class"], class_names=c.classes,
        confusion_matrix=m["confusion_matrix"], ece_before=ece_of(c.bins_raw), ece_after=ece_of(c.bins_scaled),
        coverage=c.covered / c.with_sets if c.with_sets else None,
        mean_set_size=c.set_size_sum / c.with_sets if c.with_sets else None)
