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


class Noisy(Scripted):
    """Latencies drawn around ``ms`` with a relative spread (seeded), like a loaded CPU."""

    def __init__(self, label, ms, log, spread, seed):
        super().__init__(label, ms, log)
        import random

        self.rng, self.spread = random.Random(seed), spread

    def step(self):
        super().step()
        return self.ms * (1 + self.spread * (self.rng.random() - 0.5))


def test_steady_sides_stop_at_the_minimum_rounds_and_noisy_ones_get_more():
    steady = measure_pair(Scripted("d", 2.0, []), Scripted("s", 2.0, []), 1, BenchConfig(warmup_seconds=0, rounds=5, max_rounds=40, min_iters=1, round_seconds=0))
    assert steady.speedup.rounds == 5  # the interval is a point: nothing to add
    noisy = measure_pair(Noisy("d", 2.0, [], 0.8, 1), Noisy("s", 2.0, [], 0.8, 2), 1, BenchConfig(warmup_seconds=0, rounds=5, max_rounds=40, min_iters=1, round_seconds=0, target_width=0.02))
    assert 5 < noisy.speedup.rounds <= 40
    fixed = measure_pair(Noisy("d", 2.0, [], 0.8, 1), Noisy("s", 2.0, [], 0.8, 2), 1, BenchConfig(warmup_seconds=0, rounds=5, min_iters=1, round_seconds=0))
    assert fixed.speedup.rounds == 5  # rounds given alone: exactly that many


def test_extra_rounds_stop_at_the_time_budget():
    class Slow(Noisy):
        def step(self):
            time.sleep(0.01)
            return super().step()

    result = measure_pair(Slow("d", 2.0, [], 0.8, 1), Slow("s", 2.0, [], 0.8, 2), 1, BenchConfig(warmup_seconds=0, rounds=2, max_rounds=1000, min_iters=1, round_seconds=0, target_width=0.001, budget_seconds=0.3))
    assert 2 < result.speedup.rounds < 40
