"""CUDA-event timing shared by the GPU runners (torch is the CUDA layer: no pycuda context fights)."""

from __future__ import annotations

from typing import Callable


class CudaEventTimer:
    """Times ``fn()`` on the current CUDA stream with a pair of CUDA events.

    Args:
        fn: enqueues the work (an inference or a CUDA-graph replay) on the current stream.
        before: host-side work excluded from the timing (e.g. copying the next input into the
            static buffer of a CUDA graph); runs before the start event.
    """

    def __init__(self, fn: Callable[[], None], before: Callable[[], None] = lambda: None) -> None:
        import torch

        self._fn, self._before = fn, before
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self) -> float:
        """Run once; return GPU milliseconds between the events."""
        self._before()
        self._start.record()
        self._fn()
        self._end.record()
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end))


def capture_graph(fn: Callable[[], None], warmup: int = 3):
    """Capture ``fn`` (static buffers only) into a CUDA graph after ``warmup`` eager runs on a side stream."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph
