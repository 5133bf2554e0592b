"""Intervals of per-item metrics: a bootstrap over items for one model, a paired bootstrap for the
difference of two models on the same items (item difficulty cancels), and macro-F1."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


@dataclass
class DiffCI:
    """Paired difference of a per-item metric between two models on the same items.

    Attributes:
        diff: mean(b) - mean(a), in the metric's unit (percentage points for 0/1 items x 100).
        low / high: bounds of the ``level`` bootstrap interval (resampling items).
        items: number of paired items.
    """

    diff: float
    low: float
    high: float
    level: float
    items: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_difference(a_items, b_items, scale: float = 100.0, level: float = 0.95, resamples: int = 5000, seed: int = 0) -> DiffCI:
    """Bootstrap the mean per-item difference ``b - a`` (e.g. sparse minus dense recall@1).

    Pairing by item removes the items' own difficulty from the noise: on 500 queries a 2-point
    unpaired swing is common, while the paired interval shows whether the models really differ.

    Args:
        a_items / b_items: per-item scores (``[N]``, e.g. 0/1 hits) of the two models, same order.
        scale: multiplier of the result (100: 0/1 items -> percentage points).
        level: interval coverage (0..1).
    """
    a = np.asarray(a_items, dtype=np.float64)
    b = np.asarray(b_items, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("both models need scores on the same, non-zero number of items")
    d = (b - a) * scale
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    lo, hi = np.percentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return DiffCI(float(d.mean()), float(lo), float(hi), level, int(d.size))


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
    d = paired_difference(reference_items, items, scale)
    metrics[f"{name}_vs_dense"], metrics[f"{name}_vs_dense_low"], metrics[f"{name}_vs_dense_high"] = d.diff, d.low, d.high
