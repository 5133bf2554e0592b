"""The GPU suite's CPU fallback: with no CUDA GPU, every job still runs its orchestration through the
dense path at tiny shapes, times dense work only and says so (``no_gpu``); nothing pretends to be
a 2:4 measurement. It checks on any machine that the suite runs end to end and writes what the
renderer reads, before a lent GPU's minutes are spent.
"""

from __future__ import annotations

import time

from sparsekit.bench.config import BenchConfig
from sparsekit.bench.gemm import GemmShape
from sparsekit.bench.harness import measure_single

NO_GPU = "no GPU: dense path timed on the CPU at tiny shapes; no 2:4 kernel ran"
TINY_BERT = {"vocab": 1000, "hidden": 64, "layers": 2, "heads": 4, "ffn": 256}
CONFIG = BenchConfig(rounds=2, round_seconds=0.01, min_iters=2, warmup_seconds=0.0, buffers=2)


def tiny_seq(seq: int) -> int:
    """A sequence length small enough for a CPU dry run (384 -> 24, 128 -> 8)."""
    return max(seq // 16, 4)


def tiny_batches(batches) -> tuple[int, ...]:
    """Batch sizes for a dry run: one to a few rows, one per requested batch (their order kept)."""
    return tuple(min(1 << i, 4) for i, _ in enumerate(batches))


def tiny_gemm(shape: GemmShape) -> GemmShape:
    """``shape`` scaled down for the CPU (K and N / 64, at least 16; M at most 64), its name kept."""
    return GemmShape(shape.name, min(shape.m, 64), max(shape.k // 64, 16), max(shape.n // 64, 16))


class CpuDenseRunner:
    """Times ``fn()`` with ``perf_counter`` (ms); ``fn`` rotates its own inputs."""

    def __init__(self, fn, label: str = "dense") -> None:
        self.label, self._fn = label, fn

    def step(self) -> float:
        start = time.perf_counter()
        self._fn()
        return (time.perf_counter() - start) * 1e3


def model_step(model, spec, buffers: int = 2):
    """A no-grad forward of ``model`` over ``buffers`` rotated random inputs of ``spec``."""
    import torch

    inputs = [spec.random(seed=i) for i in range(buffers)]
    state = {"i": 0}

    def step() -> None:
        x = inputs[state["i"] % len(inputs)]
        state["i"] += 1
        with torch.no_grad():
            model(*x)

    return step


def dense_model_row(model, spec, batch: int, config: BenchConfig = CONFIG, **extra) -> dict:
    """Dense latency of one CPU forward at ``batch`` (``no_gpu`` row)."""
    stats = measure_single(CpuDenseRunner(model_step(model, spec.with_batch(batch), config.buffers)), batch, config)
    return {"no_gpu": True, "note": NO_GPU, "batch": batch, **extra, "dense": stats.to_dict(), "timing": "cpu perf_counter"}


def dense_gemm_row(shape: GemmShape, config: BenchConfig = CONFIG, **extra) -> dict:
    """Dense ``F.linear`` latency of the CPU-sized ``tiny_gemm(shape)`` in float32 (``no_gpu`` row)."""
    import torch

    small = tiny_gemm(shape)
    w = torch.randn(small.n, small.k)
    xs = [torch.randn(small.m, small.k) for _ in range(config.buffers)]
    state = {"i": 0}

    def step() -> None:
        state["i"] += 1
        torch.nn.functional.linear(xs[state["i"] % len(xs)], w)

    stats = measure_single(CpuDenseRunner(step), small.m, config)
    return {"no_gpu": True, "note": NO_GPU, "shape": shape.name, "m": small.m, "k": small.k, "n": small.n, "full_shape": [shape.m, shape.k, shape.n], "dtype": "float32", **extra, "dense": stats.to_dict(), "timing": "cpu perf_counter"}
