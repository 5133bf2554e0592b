"""Statistics of latency samples and of paired dense/sparse ratios."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sparsekit.tasks.metrics import DiffCI, paired_difference  # noqa: F401 - item-level intervals live with the tasks; benchmarks import them from here

UNSTABLE_COV = 0.025  # trtexec warns above 2.5 % coefficient of variation ("lock clocks")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, all in milliseconds.

    Attributes:
        n: number of samples.
        median, mean, p90, p95, p99, min, max: in ms.
        cov: coefficient of variation (std / mean), 0..inf.
        throughput: samples/s at ``batch`` (batch / median).
        unstable: ``cov`` above :data:`UNSTABLE_COV`.
    """

    n: int
    median: float
    mean: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float
    cov: float
    throughput: float
    unstable: bool

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(times_ms, batch: int = 1) -> LatencyStats:
    """Summarize latencies (ms) measured at ``batch`` samples per call."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no samples")
    mean = float(t.mean())
    cov = float(t.std(ddof=1) / mean) if t.size > 1 and mean > 0 else 0.0
    median = float(np.median(t))
    p = np.percentile(t, [90, 95, 99])
    return LatencyStats(int(t.size), median, mean, float(p[0]), float(p[1]), float(p[2]), float(t.min()), float(t.max()), cov, batch * 1000.0 / median if median else float("inf"), cov > UNSTABLE_COV)


@dataclass(frozen=True)
class RatioCI:
    """Speedup ``dense / sparse`` of round medians, with a bootstrap percentile interval.

    Attributes:
        ratio: median over rounds of (dense round median / sparse round median).
        low / high: bounds of the ``level`` interval (bootstrap over rounds).
        rounds: number of paired rounds.
    """

    ratio: float
    low: float
    high: float
    level: float
    rounds: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_ratio(dense_rounds_ms, sparse_rounds_ms, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> RatioCI:
    """Speedup of paired rounds: each round's dense median / its sparse median.

    Pairing per round cancels drift (clocks, thermals) that hits both; the bootstrap resamples
    rounds, not single iterations, so correlated iterations do not shrink the interval.

    Args:
        dense_rounds_ms / sparse_rounds_ms: per-round median latencies, same length, same order.
        level: interval coverage (0..1).
    """
    d = np.asarray(dense_rounds_ms, dtype=np.float64)
    s = np.asarray(sparse_rounds_ms, dtype=np.float64)
    if d.shape != s.shape or d.size == 0:
        raise ValueError("dense and sparse need the same, non-zero number of rounds")
    ratios = d / s
    point = float(np.median(ratios))
    if ratios.size == 1:
        return RatioCI(point, point, point, level, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ratios.size, size=(resamples, ratios.size))
    boot = np.median(ratios[idx], axis=1)
    lo, hi = np.percentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return RatioCI(point, float(lo), float(hi), level, int(ratios.size))
