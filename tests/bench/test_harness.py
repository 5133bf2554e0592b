"""The harness's method, with runners whose latencies are known exactly."""

import time

from sparsekit.bench.harness import BenchConfig, measure_pair


class Scripted:
    """Returns a fixed latency per call and records the global call order."""

    def __init__(self, label, ms, log):
        self.label, self.ms, self.log, self.calls = label, ms, log, 0

    def step(self):
        self.calls += 1
        self.log.append(self.label)
        return self.ms


def test_rounds_interleave_and_ratio_is_exact():
    log = []
    dense, sparse = Scripted("d", 3.0, log), Scripted("s", 2.0, log)
    config = BenchConfig(warmup_seconds=0, rounds=4, min_iters=5, round_seconds=0)
    result = measure_pair(dense, sparse, 8, config)
    assert result.speedup.ratio == 1.5 and result.speedup.low == result.speedup.high == 1.5
    assert result.dense.median == 3.0 and result.sparse.throughput == 8 * 1000 / 2.0
    measured = log[2:]  # after one warm-up call each
    firsts = [measured[i * 10] for i in range(4)]
    assert firsts == ["d", "s", "d", "s"]  # the side that goes first alternates per round
    assert len(result.dense_rounds) == 4


def test_rounds_respect_minimum_time():
    class Sleepy(Scripted):
        def step(self):
            time.sleep(0.002)
            return super().step()

    log = []
    dense = Sleepy("d", 1.0, log)
    config = BenchConfig(warmup_seconds=0, rounds=1, min_iters=1, round_seconds=0.05)
    measure_pair(dense, Sleepy("s", 1.0, log), 1, config)
    assert dense.calls >= 10
