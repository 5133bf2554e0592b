"""FP8 (e4m3) 2:4 GEMMs against FP8 dense GEMMs: exploratory, through torch's private cuSPARSELt ops.

Dense: ``torch._scaled_mm`` (cuBLASLt FP8, per-tensor scales). 2:4: ``torch._cslt_compress`` then
``torch._cslt_sparse_mm`` with the two scales folded into ``alpha`` (cuSPARSELt has no operand
scales), bf16 output on both sides. Whether the installed torch and cuSPARSELt accept
``float8_e4m3fn`` at all is part of the answer: a refusal is returned as data (which step, the
exception's first line), never raised, so the result can say what was refused.
"""

from __future__ import annotations

from sparsekit.bench.gemm import GemmShape, _masked_weight, rotation_buffers, time_gemm_pair
from sparsekit.bench.harness import BenchConfig

FP8_MAX = 448.0  # largest finite float8_e4m3fn
TOLERANCE = 2e-2  # both sides against an fp32 product of the same fp8 values: bf16 rounding only


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def fp8_gemm(shape: GemmShape, config: BenchConfig, graphs: bool = True, alg_search: bool = True) -> dict:
    """Paired FP8 dense vs FP8 2:4 timing of ``shape``, or ``{"refused": ...}`` when torch refuses FP8 2:4.

    Returns:
        A GEMM row (``speedup``, ``dense``/``sparse`` latencies in ms per call, errors, ``alg_id``,
        ``method``), or ``{"refused": "<step>: <exception>", "torch": version}``.
    """
    import torch

    f8, out = torch.float8_e4m3fn, torch.bfloat16
    w = _masked_weight(shape, torch.float32, config.seed)  # [N, K], 2:4 along K
    w_scale = (w.abs().max() / FP8_MAX).clamp(min=1e-12).reshape(())
    w8 = (w / w_scale).to(f8)
    gen = torch.Generator(device="cuda").manual_seed(config.seed + 1)
    xs = [torch.randn(shape.m, shape.k, device="cuda", generator=gen) for _ in range(rotation_buffers(shape, 1, config))]
    x_scale = (max(x.abs().max() for x in xs) / FP8_MAX).float().reshape(())
    x8 = [(x / x_scale).to(f8) for x in xs]
    del xs
    alpha = (x_scale * w_scale).float()
    step, alg_id, notes = "dense torch._scaled_mm", 0, []
    try:
        dense = lambda x: torch._scaled_mm(x, w8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=out)
        y_dense = dense(x8[0])
        step = "torch._cslt_compress(float8_e4m3fn weight)"
        packed = torch._cslt_compress(w8)
        if alg_search:
            step = "torch._cslt_sparse_mm_search"
            try:
                alg_id = int(torch._cslt_sparse_mm_search(packed, x8[0].t(), alpha=alpha, out_dtype=out))
            except (RuntimeError, TypeError) as exc:
                notes.append(f"algorithm search refused ({_first_line(exc)}); algorithm 0 timed")
        step = "torch._cslt_sparse_mm(float8_e4m3fn)"
        sparse = lambda x: torch._cslt_sparse_mm(packed, x.t(), alpha=alpha, out_dtype=out, alg_id=alg_id)  # [N, M]
        y_sparse = sparse(x8[0])
        torch.cuda.synchronize()
    except (RuntimeError, TypeError, AttributeError, NotImplementedError, ValueError) as exc:
        return {"shape": shape.name, "m": shape.m, "k": shape.k, "n": shape.n, "dtype": "float8_e4m3fn", "refused": f"{step}: {_first_line(exc)}", "torch": torch.__version__}
    ref = (x8[0].float() * x_scale) @ (w8.float() * w_scale).t()
    scale = ref.abs().max().item() or 1.0
    err_dense = (y_dense.float() - ref).abs().max().item() / scale
    err_sparse = (y_sparse.float().t() - ref).abs().max().item() / scale
    if not err_sparse <= TOLERANCE:
        return {"shape": shape.name, "m": shape.m, "k": shape.k, "n": shape.n, "dtype": "float8_e4m3fn", "refused": f"FP8 2:4 product wrong: relative error {err_sparse:.2e} (dense {err_dense:.2e}); nothing timed", "torch": torch.__version__}
    with torch.no_grad():
        pair, method, calls, loop_notes = time_gemm_pair(dense, sparse, x8, shape.m, config, graphs)
    p = pair
    return {
        "shape": shape.name, "m": shape.m, "k": shape.k, "n": shape.n, "dtype": "float8_e4m3fn", **p.to_dict(), "method": method, "calls_per_sample": calls,
        "dense_tflops": shape.flops / p.dense.median / 1e9, "sparse_tflops": shape.flops / p.sparse.median / 1e9,
        "max_rel_err": err_sparse, "max_rel_err_dense": err_dense, "alg_id": alg_id, "notes": notes + loop_notes,
        "layout": "per-tensor scales, bf16 output; the 2:4 side returns [N, M] (cuSPARSELt's own layout), the dense side [M, N]",
    }
