"""Stratified validation splits, subsets and long-tailed (imbalanced) variants, all seeded."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) index arrays; held_out is `fraction` of y with the class proportions of y."""
    idx = np.arange(len(y))
    if fraction <= 0:
        return idx, idx[:0]
    # At least one image per class is held out, or stratification is impossible on small subsets.
    n_held = max(int(round(fraction * len(y))), len(np.unique(y)))
    keep, held = train_test_split(idx, test_size=n_held, stratify=y, random_state=seed)
    return np.sort(keep), np.sort(held)


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n indices of y with the class proportions of y."""
    if n >= len(y):
        return np.arange(len(y))
    keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(keep)


def long_tailed_indices(y: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """CIFAR-10-LT: class c keeps n_max * ratio^(-c/(C-1)) images (exponential profile, head class 0)."""
    classes = np.unique(y)
    n_max = min(int((y == c).sum()) for c in classes)
    rng = np.random.default_rng(seed)
    keep = []
    for rank, c in enumerate(classes):
        n_c = max(1, int(n_max * ratio ** (-rank / (len(classes) - 1))))
        keep.append(rng.choice(np.flatnonzero(y == c), n_c, replace=False))
    return np.sort(np.concatenate(keep))


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, validation) index pairs; every index is validated exactly once."""
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(y)), y))
