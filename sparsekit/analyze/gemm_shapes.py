"""The GEMM a Linear or Conv layer runs: ``[M, K] x [K, N]``, the shape 2:4 kernel speed depends on."""

from __future__ import annotations

from dataclasses import dataclass


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


def layer_gemm_shape(name: str, kind: str, weight_shape, gemm_rows: int) -> GemmShape:
    """The GEMM a Linear/Conv layer runs: ``M = gemm_rows``, ``K`` = reduction (``C_in x R x S``
    for a conv, its implicit GEMM), ``N`` = outputs."""
    n = weight_shape[0]
    k = 1
    for d in weight_shape[1:]:
        k *= d
    return GemmShape(name, gemm_rows, k, n)
