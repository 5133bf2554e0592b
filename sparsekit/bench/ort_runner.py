"""ONNX Runtime (CPU) timed runner: the reference harness that runs anywhere.

No 2:4 speedup is expected on CPU: ONNX Runtime has no sparse kernels.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sparsekit.input_spec import InputSpec
from sparsekit.backends.onnxruntime_backend import OrtRunner


class OrtTimedRunner:
    """One ONNX Runtime session; each :meth:`step` runs the next of ``buffers`` random inputs.

    Args:
        artifact: ONNX (or ORT-optimized ONNX) file.
        inputs: input spec (batch already set).
        buffers: number of distinct random input sets to rotate through.
        threads: intra-op threads (None = ONNX Runtime's default).
        label: name in reports.
    """

    def __init__(self, artifact: Path, inputs: InputSpec, buffers: int = 8, threads: int | None = None, label: str = "onnxruntime", seed: int = 0) -> None:
        self.label = label
        self._runner = OrtRunner(Path(artifact), threads)
        self._feeds = [{n: t.numpy() for n, t in zip(inputs.names, inputs.random(seed=seed + i))} for i in range(buffers)]
        self._i = 0

    def step(self) -> float:
        feeds = self._feeds[self._i % len(self._feeds)]
        self._i += 1
        start = time.perf_counter_ns()
        self._runner.run(feeds)
        return (time.perf_counter_ns() - start) / 1e6

    def outputs(self, index: int = 0) -> list[np.ndarray]:
        return self._runner.run(self._feeds[index])
