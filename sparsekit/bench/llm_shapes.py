"""GEMM shapes of a Llama-3-8B decoder layer, where published 2:4 gains are reported.

Llama-3-8B: hidden 4096, FFN 14336, 32 query heads and 8 key/value heads of 128 (grouped-query
attention). A Linear layer with weight ``[out, in]`` runs ``[M, in] x [in, out]``: ``K = in``,
``N = out``, ``M`` = tokens in flight (prefill: batch x prompt length; decode: batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsekit.bench.gemm import GemmShape

HIDDEN = 4096
FFN = 14336
HEAD_DIM = 128
KV_HEADS = 8

# layer -> weight (out, in), as the checkpoint stores it
LLAMA3_8B_WEIGHTS = {
    "q_proj": (HIDDEN, HIDDEN),
    "k_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "v_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "o_proj": (HIDDEN, HIDDEN),
    "gate_proj": (FFN, HIDDEN),
    "up_proj": (FFN, HIDDEN),
    "down_proj": (HIDDEN, FFN),
}
FFN_LAYERS = ("gate_proj", "up_proj", "down_proj")
PREFILL_ROWS = (16384, 8192, 4096, 2048)
DECODE_ROWS = (64, 16, 1)


@dataclass(frozen=True)
class LlmGemm:
    """One GEMM to time: the layers sharing its shape, the phase and the dtype."""

    layers: tuple[str, ...]
    phase: str  # "prefill" or "decode"
    shape: GemmShape
    dtype: str

    @property
    def ffn(self) -> bool:
        return any(name in FFN_LAYERS for name in self.layers)

    @property
    def label(self) -> str:
        return f"llama-3-8b {'/'.join(self.layers)} {self.phase} M={self.shape.m} {self.dtype}"


def distinct_layer_shapes() -> list[tuple[tuple[str, ...], int, int]]:
    """``(layers, K, N)`` once per distinct weight shape (q/o, k/v and gate/up share theirs), FFN first."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, (out, inp) in LLAMA3_8B_WEIGHTS.items():
        groups.setdefault((inp, out), []).append(name)
    ordered = sorted(groups.items(), key=lambda kv: (not any(n in FFN_LAYERS for n in kv[1]), list(LLAMA3_8B_WEIGHTS).index(kv[1][0])))
    return [(tuple(names), k, n) for (k, n), names in ordered]


def llm_gemm_plan(dtypes=("float16", "bfloat16"), prefill_rows=PREFILL_ROWS, decode_rows=DECODE_ROWS) -> list[LlmGemm]:
    """Every GEMM to time, most telling first.

    Order: prefill FFN (where 2:4 has the most room), prefill attention projections, then
    decode (weight-bound, few rows); within each, the dtypes alternate so a budget stop leaves
    both represented.
    """
    shapes = distinct_layer_shapes()
    groups = [
        [(layers, k, n, m) for m in prefill_rows for layers, k, n in shapes if any(x in FFN_LAYERS for x in layers)],
        [(layers, k, n, m) for m in prefill_rows for layers, k, n in shapes if not any(x in FFN_LAYERS for x in layers)],
        [(layers, k, n, m) for m in decode_rows for layers, k, n in shapes],
    ]
    plan = []
    for phase_rows, phase in zip(groups, ("prefill", "prefill", "decode")):
        for layers, k, n, m in phase_rows:
            for dtype in dtypes:
                plan.append(LlmGemm(layers, phase, GemmShape(f"llama-3-8b {'/'.join(layers)} {k}->{n}, M={m}", m, k, n), dtype))
    return plan
