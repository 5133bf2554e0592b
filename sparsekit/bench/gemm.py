"""GEMM-level dense vs 2:4 timing on a CUDA GPU through PyTorch semi-structured tensors.

A k x k convolution is timed as its implicit GEMM: ``M = batch x output pixels``,
``K = C_in x R x S`` ordered (r, s, c) so TensorRT's groups of 4 input channels per kernel position
are consecutive along K, ``N = C_out``. That is the structure TensorRT's sparse conv kernels run.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsekit.bench.harness import BenchConfig, PairResult, measure_pair


@dataclass(frozen=True)
class GemmShape:
    """``[M, K] x [K, N]``; ``name`` says where it comes from."""

    name: str
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


class _GemmRunner:
    def __init__(self, weight, k: int, m: int, dtype, buffers: int, label: str, seed: int) -> None:
        import torch

        from sparsekit.bench.cuda_timing import CudaEventTimer

        self.label = label
        gen = torch.Generator(device="cuda").manual_seed(seed)
        self._x = [torch.randn(m, k, device="cuda", dtype=dtype, generator=gen) for _ in range(buffers)]
        self._w = weight
        self._i = 0
        self._timer = CudaEventTimer(lambda: torch.nn.functional.linear(self._cur, self._w), self._next)

    def _next(self) -> None:
        self._cur = self._x[self._i % len(self._x)]
        self._i += 1

    def step(self) -> float:
        return self._timer()


def time_gemm(shape: GemmShape, config: BenchConfig, dtype: str = "float16") -> PairResult:
    """Dense ``F.linear`` vs the same 2:4 weight as a semi-structured tensor, paired rounds.

    The weight ``[N, K]`` is random with a 2:4 magnitude mask along K (TensorRT's layout).
    """
    import torch
    from torch.sparse import to_sparse_semi_structured

    tdtype = getattr(torch, dtype)
    w = torch.randn(shape.n, shape.k, device="cuda", dtype=torch.float32)
    groups = w.abs().view(shape.n, shape.k // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(2, dim=-1).indices, True)
    dense_w = (w * keep.view_as(w)).to(tdtype)
    sparse_w = to_sparse_semi_structured(dense_w)
    dense = _GemmRunner(dense_w, shape.k, shape.m, tdtype, config.buffers, "dense", config.seed)
    sparse = _GemmRunner(sparse_w, shape.k, shape.m, tdtype, config.buffers, "sparse", config.seed)
    return measure_pair(dense, sparse, shape.m, config)


def layer_gemm_shape(name: str, kind: str, weight_shape, gemm_rows: int) -> GemmShape:
    """The GEMM a Linear/Conv layer runs: ``M = gemm_rows``, ``K`` = reduction, ``N`` = outputs."""
    n = weight_shape[0]
    k = 1
    for d in weight_shape[1:]:
        k *= d
    return GemmShape(name, gemm_rows, k, n)
