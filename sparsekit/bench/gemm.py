"""GEMM-level dense vs 2:4 timing on a CUDA GPU through PyTorch semi-structured tensors.

A k x k convolution is timed as its implicit GEMM: ``M = batch x output pixels``,
``K = C_in x R x S`` ordered (r, s, c) so TensorRT's groups of 4 input channels per kernel position
are consecutive along K, ``N = C_out``. That is the structure TensorRT's sparse conv kernels run.

Kernels, not Python: one timed sample is a CUDA-graph replay of ``calls`` back-to-back
``F.linear`` calls on rotated inputs, divided by ``calls``. An eager sparse ``F.linear`` costs
60-90 us of Python dispatch (the tensor subclass), more than the kernel itself at most shapes, so
timing single eager calls would compare dispatch overheads. When graph capture fails the same
calls run eagerly between one event pair (dispatch amortised, not removed) and the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sparsekit.analyze.gemm_shapes import GemmShape, layer_gemm_shape  # noqa: F401 - re-exported for the bench modules
from sparsekit.bench.harness import BenchConfig, PairResult, measure_pair
from sparsekit.bench.cuda_timing import CudaEventTimer, capture_graph
from sparsekit.bench.kernels import profile_kernels
from sparsekit.bench.torch_sparse import semi_structured
from sparsekit.sparsify.pattern import magnitude_mask

# Inputs rotated per shape: enough to exceed a Hopper L2 (50-60 MB) twice, so timings do not
# measure an L2-resident input.
ROTATION_BYTES = 128 * 2**20
TARGET_SAMPLE_MS = 2.0  # one timed sample (a graph of `calls` GEMMs) lasts about this long


@dataclass
class GemmTiming:
    """A paired dense/2:4 GEMM measurement and how it was taken.

    Attributes:
        pair: per-call latencies (ms) and the speedup interval.
        method: ``cuda-graph`` or ``eager-loop`` (graph capture failed; see ``notes``).
        calls: GEMM calls per timed sample.
        buffers: rotated input buffers.
        max_rel_err: ``max|sparse - dense| / max|dense|`` on one random input (fp16/bf16 rounding only).
        notes: why a fallback was taken.
        kernels: with ``profile``, the GPU kernels of one dense and one sparse call
            (:class:`~sparsekit.bench.kernels.KernelProfile` dicts).
        alg_id: the cuSPARSELt algorithm chosen by a search, None when not searched.
    """

    pair: PairResult
    method: str
    calls: int
    buffers: int
    max_rel_err: float
    notes: list[str] = field(default_factory=list)
    kernels: dict | None = None
    alg_id: int | None = None

    def to_dict(self) -> dict:
        return {**self.pair.to_dict(), "method": self.method, "calls_per_sample": self.calls, "buffers": self.buffers, "max_rel_err": self.max_rel_err, "notes": self.notes, "kernels": self.kernels, "alg_id": self.alg_id}


class _GemmLoop:
    """``calls`` GEMM calls over rotated inputs; one :meth:`step` returns ms per call.

    Args:
        gemm: ``gemm(x)`` runs one product on input ``x`` (e.g. ``F.linear(x, weight)``).
        inputs: the rotated inputs.
    """

    def __init__(self, gemm, inputs, calls: int, graphs: bool, label: str) -> None:
        import torch

        self.label = label
        self.calls = calls
        self.method = "eager-loop"
        self.note = ""
        x = inputs

        def work() -> None:
            for i in range(calls):
                gemm(x[i % len(x)])

        fn = work
        if graphs:
            try:
                fn = capture_graph(work).replay
                self.method = "cuda-graph"
            except Exception as exc:  # noqa: BLE001 - any capture failure falls back, and is reported
                torch.cuda.synchronize()
                self.note = f"{label}: CUDA graph capture failed ({type(exc).__name__}: {str(exc)[:200]}); timed eagerly, dispatch amortised over {calls} calls"
        self._timer = CudaEventTimer(fn)

    def step(self) -> float:
        return self._timer() / self.calls


def _masked_weight(shape: GemmShape, dtype, seed: int):
    import torch

    gen = torch.Generator(device="cuda").manual_seed(seed)
    w = torch.randn(shape.n, shape.k, device="cuda", generator=gen)
    return (w * magnitude_mask(w, axis=1)).to(dtype)


def _calls_for(gemm, x, target_ms: float) -> int:
    """GEMM calls per sample so that one sample lasts about ``target_ms`` (from a quick eager estimate)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    gemm(x)
    start.record()
    for _ in range(10):
        gemm(x)
    end.record()
    end.synchronize()
    per_call = max(start.elapsed_time(end) / 10, 1e-4)
    return int(min(max(math.ceil(target_ms / per_call), 8), 512))


def rotation_buffers(shape: GemmShape, element_bytes: int, config: BenchConfig) -> int:
    """Input buffers to rotate so that together they exceed :data:`ROTATION_BYTES` (8..64, or ``config.buffers``)."""
    input_bytes = max(shape.m * shape.k * element_bytes, 1)
    return int(min(max(config.buffers, math.ceil(ROTATION_BYTES / input_bytes)), 64))


def time_gemm_pair(dense_gemm, sparse_gemm, inputs, rows: int, config: BenchConfig, graphs: bool = True) -> tuple[PairResult, str, int, list[str]]:
    """Paired timing of two GEMM callables over the same rotated ``inputs``, CUDA-graph replays of many calls.

    Returns:
        ``(pair, method, calls, notes)``: per-call latencies (ms) and how they were taken; both
        sides are always timed the same way (a failed capture on one side times both eagerly).
    """
    calls = _calls_for(dense_gemm, inputs[0], TARGET_SAMPLE_MS)
    dense = _GemmLoop(dense_gemm, inputs, calls, graphs, "dense")
    sparse = _GemmLoop(sparse_gemm, inputs, calls, dense.method == "cuda-graph", "sparse")
    if sparse.method != dense.method:
        dense = _GemmLoop(dense_gemm, inputs, calls, False, "dense")
    pair = measure_pair(dense, sparse, rows, config)
    return pair, dense.method, calls, [n for n in (dense.note, sparse.note) if n]


def time_gemm(shape: GemmShape, config: BenchConfig, dtype: str = "float16", graphs: bool = True, profile: bool = False, alg_search: bool = False) -> GemmTiming:
    """Dense ``F.linear`` vs the same 2:4 weight as a semi-structured tensor, paired rounds.

    The weight ``[N, K]`` is random with a 2:4 magnitude mask along K (TensorRT's layout); both
    sides use the same masked values and the same rotated random inputs.

    Args:
        shape: the GEMM.
        config: harness settings (rounds, warm-up...; ``buffers`` is raised to cover ``ROTATION_BYTES``).
        dtype: ``float16`` or ``bfloat16``.
        graphs: time CUDA-graph replays of many calls (dispatch-free); else eager loops.
        profile: also record the kernels one dense and one sparse call ran.
        alg_search: let cuSPARSELt pick its fastest algorithm for this shape first
            (``torch._cslt_sparse_mm_search``; the default is algorithm 0). The chosen id, or why
            the search could not run, is in the result.
    """
    import torch

    tdtype = getattr(torch, dtype)
    dense_w = _masked_weight(shape, tdtype, config.seed)
    sparse_w = semi_structured(dense_w)
    buffers = rotation_buffers(shape, dense_w.element_size(), config)
    gen = torch.Generator(device="cuda").manual_seed(config.seed + 1)
    inputs = [torch.randn(shape.m, shape.k, device="cuda", generator=gen).to(tdtype) for _ in range(buffers)]
    notes, alg_id = [], None
    if alg_search:
        alg_id, note = search_algorithm(sparse_w, inputs[0])
        notes += [note] if note else []
    linear = torch.nn.functional.linear
    with torch.no_grad():
        ref = linear(inputs[0], dense_w).float()
        err = (linear(inputs[0], sparse_w).float() - ref).abs().max().item() / (ref.abs().max().item() or 1.0)
        pair, method, calls, loop_notes = time_gemm_pair(lambda x: linear(x, dense_w), lambda x: linear(x, sparse_w), inputs, shape.m, config, graphs)
    notes += loop_notes
    kernels = None
    if profile:
        x = inputs[0]
        kernels = {"dense": profile_kernels(lambda: linear(x, dense_w), 5).to_dict(), "sparse": profile_kernels(lambda: linear(x, sparse_w), 5).to_dict()}
    return GemmTiming(pair, method, calls, buffers, err, notes, kernels, alg_id)


def search_algorithm(sparse_w, x) -> tuple[int | None, str]:
    """Let cuSPARSELt pick its fastest algorithm for ``sparse_w`` times ``x`` and use it from now on.

    ``torch._cslt_sparse_mm_search`` times every algorithm of the product on the device (the
    default is algorithm 0). Returns ``(alg_id, "")``, or ``(None, why)`` where the search could
    not run (not a cuSPARSELt tensor, or this torch has no search).
    """
    import torch

    try:
        constraints = getattr(sparse_w, "_DTYPE_SHAPE_CONSTRAINTS", {}).get(x.dtype)
        pad = (-x.shape[0]) % (constraints.dense_min_rows if constraints else 8)  # as the subclass pads small M
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        fused = bool(getattr(sparse_w, "fuse_transpose_cusparselt", False))  # search the call the subclass makes
        alg_id = int(torch._cslt_sparse_mm_search(sparse_w.packed, x.t(), transpose_result=fused))
        sparse_w.alg_id_cusparselt = alg_id
    except (AttributeError, RuntimeError, TypeError) as exc:
        return None, f"cuSPARSELt algorithm search unavailable ({type(exc).__name__}: {str(exc)[:160]}); default algorithm timed"
    return alg_id, ""
