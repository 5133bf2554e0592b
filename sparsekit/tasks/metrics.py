"""Intervals of per-item metrics: a bootstrap over items for one model, a paired bootstrap for the
difference of two models on the same items (item difficulty cancels), and macro-F1."""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
RESAMPLES = 5000


def bootstrap_interval(items, scale: float = 100.0, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """The ``level`` percentile interval of ``mean(items) * scale``, resampling items."""
    x = np.asarray(items, dtype=np.float64) * scale
    if x.size < 2:
        value = float(x.mean()) if x.size else float("nan")
        return value, value
    boot = x[np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    lo, hi = np.percentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def paired_difference(a_items, b_items, scale: float = 100.0, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """``(mean(b - a) * scale, low, high)``: the paired bootstrap of the difference of two models
    scored on the same items (the method of :func:`sparsekit.bench.stats.paired_difference`)."""
    a = np.asarray(a_items, dtype=np.float64)
    b = np.asarray(b_items, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("both models need scores on the same, non-zero number of items")
    d = b - a
    lo, hi = bootstrap_interval(d, scale, level, resamples, seed)
    return float(d.mean() * scale), lo, hi


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of ``2 TP / (2 TP + FP + FN)``, in percent."""
    scores = []
    for c in np.unique(labels):
        tp = float(np.sum((predictions == c) & (labels == c)))
        fp = float(np.sum((predictions == c) & (labels != c)))
        fn = float(np.sum((predictions != c) & (labels == c)))
        scores.append(2 * tp / max(2 * tp + fp + fn, 1.0))
    return 100.0 * float(np.mean(scores)) if scores else float("nan")


def with_interval(metrics: dict, name: str, items, scale: float = 100.0) -> None:
    """Add ``name_low`` / ``name_high`` (bootstrap over items) to ``metrics``."""
    metrics[f"{name}_low"], metrics[f"{name}_high"] = bootstrap_interval(items, scale)


def with_paired(metrics: dict, name: str, reference_items, items, scale: float = 100.0) -> None:
    """Add ``name_vs_dense`` and its paired interval (``_low`` / ``_high``) to ``metrics``."""
    diff, lo, hi = paired_difference(reference_items, items, scale)
    metrics[f"{name}_vs_dense"], metrics[f"{name}_vs_dense_low"], metrics[f"{name}_vs_dense_high"] = diff, lo, hi
