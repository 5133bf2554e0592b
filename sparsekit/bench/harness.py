"""The paired A/B harness: dense and sparse measured in one process, interleaved in rounds.

Method (what trtexec, Model Navigator and MLPerf do, plus pairing):
  * time-based warm-up of each side;
  * rounds A B A B ...: each round runs one side for at least ``min_iters`` calls AND
    ``round_seconds``, then the other, alternating which goes first, so clock and thermal drift
    hit both sides;
  * each call gets the next of ``buffers`` pre-made random inputs (never zeros, never one input
    reused in cache);
  * latency per call from the runner's own timer (CUDA events on GPUs, perf_counter on CPU);
  * the speedup is the median over rounds of the per-round median ratio, with a bootstrap
    interval over rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from sparsekit.bench.stats import LatencyStats, RatioCI, paired_ratio, summarize
from sparsekit.bench.config import BenchConfig


class TimedRunner(Protocol):
    """Something the harness can time: one call = one inference on the next input buffer."""

    label: str

    def step(self) -> float:
        """Run one inference and return its latency in milliseconds."""


@dataclass
class PairResult:
    """One paired measurement at one batch size."""

    batch: int
    dense: LatencyStats
    sparse: LatencyStats
    speedup: RatioCI
    dense_rounds: list[float] = field(default_factory=list)
    sparse_rounds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"batch": self.batch, "dense": self.dense.to_dict(), "sparse": self.sparse.to_dict(), "speedup": self.speedup.to_dict(), "dense_round_medians_ms": self.dense_rounds, "sparse_round_medians_ms": self.sparse_rounds}


def _warm(runner: TimedRunner, seconds: float) -> None:
    end = time.perf_counter() + seconds
    runner.step()
    while time.perf_counter() < end:
        runner.step()


def _round(runner: TimedRunner, config: BenchConfig) -> list[float]:
    times: list[float] = []
    end = time.perf_counter() + config.round_seconds
    while len(times) < config.min_iters or time.perf_counter() < end:
        times.append(runner.step())
    return times


def measure_pair(dense: TimedRunner, sparse: TimedRunner, batch: int, config: BenchConfig, progress: Callable[[int], None] = lambda i: None) -> PairResult:
    """Measure ``dense`` against ``sparse`` in interleaved rounds (see module docstring)."""
    import numpy as np

    _warm(dense, config.warmup_seconds)
    _warm(sparse, config.warmup_seconds)
    all_d: list[float] = []
    all_s: list[float] = []
    d_med: list[float] = []
    s_med: list[float] = []
    start = time.perf_counter()
    r = 0
    while r < config.rounds or _wants_more(d_med, s_med, config, time.perf_counter() - start, r):
        order = (dense, sparse) if r % 2 == 0 else (sparse, dense)
        results = {}
        for runner in order:
            results[runner is dense] = _round(runner, config)
        all_d += results[True]
        all_s += results[False]
        d_med.append(float(np.median(results[True])))
        s_med.append(float(np.median(results[False])))
        r += 1
        progress(r)
    return PairResult(batch, summarize(all_d, batch), summarize(all_s, batch), paired_ratio(d_med, s_med, config.level, seed=config.seed), d_med, s_med)


def _wants_more(d_med: list[float], s_med: list[float], config: BenchConfig, elapsed: float, rounds: int) -> bool:
    """After the minimum rounds: another round while the interval is wider than
    ``config.target_width`` of the ratio, within ``max_rounds`` and ``budget_seconds``."""
    if rounds >= config.max_rounds or elapsed >= config.budget_seconds:
        return False
    ci = paired_ratio(d_med, s_med, config.level, resamples=500, seed=config.seed)
    return (ci.high - ci.low) > config.target_width * ci.ratio


def measure_single(runner: TimedRunner, batch: int, config: BenchConfig) -> LatencyStats:
    """Latency statistics of one runner alone (used to check the harness's own overhead)."""
    _warm(runner, config.warmup_seconds)
    times: list[float] = []
    for _ in range(config.rounds):
        times += _round(runner, config)
    return summarize(times, batch)
