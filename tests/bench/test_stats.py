import numpy as np
import pytest

from sparsekit.bench.stats import paired_ratio, summarize


def test_summarize():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0], batch=8)
    assert s.median == 3.0 and s.max == 100.0 and s.p99 > s.p90 > s.median
    assert s.throughput == pytest.approx(8 * 1000 / 3.0)
    assert s.unstable
    assert not summarize([10.0, 10.01, 9.99, 10.0]).unstable
    with pytest.raises(ValueError):
        summarize([])


def test_paired_ratio_recovers_a_known_speedup():
    rng = np.random.default_rng(1)
    drift = np.linspace(1.0, 1.3, 20)  # clocks drifting: both sides slow down together
    dense = 10.0 * drift * rng.normal(1.0, 0.01, 20)
    sparse = 6.25 * drift * rng.normal(1.0, 0.01, 20)
    ci = paired_ratio(dense, sparse)
    assert ci.low <= 1.6 <= ci.high and ci.high - ci.low < 0.05
    assert ci.rounds == 20


def test_paired_ratio_aa_contains_one():
    rng = np.random.default_rng(2)
    a, b = rng.normal(5.0, 0.2, 15), rng.normal(5.0, 0.2, 15)
    ci = paired_ratio(a, b)
    assert ci.low <= 1.0 <= ci.high


def test_paired_ratio_rejects_mismatched_rounds():
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])
