"""The one FLOP count behind every FLOP share and Amdahl bound the kit prints (``analyze`` on a
PyTorch model or an ONNX, ``build``'s sparse-kernel report, ``bench``).

Definition:

- Counted: every matrix product and convolution, 2 FLOPs per multiply-add, at the analysed input
  shape: Linear / Gemm / MatMul / bmm / Einsum, Conv / ConvTranspose, and both products of
  attention (``Q x K^T`` and ``P x V``), whether fused (``scaled_dot_product_attention``, ONNX
  ``Attention``) or written out as matmuls. Attention is counted dense: a mask or a causal kernel
  that skips scores does not lower it (it is work a 2:4 weight cannot speed up either way).
- Every call counts: a layer called n times (ALBERT's shared layers, a weight reused by two
  branches) counts n times, under each call's own inputs. A layer inside an ONNX Loop/Scan body
  counts one run of the body (the trip count is not known statically).
- Not counted: elementwise ops, activations, normalisation, softmax, gathers (embeddings),
  reductions and data movement: they do not run on the GEMM kernels that 2:4 speeds up.

A layer's share is its FLOPs over that total (0..1); the Amdahl bound reads the summed share of the
layers that run sparse (:func:`~sparsekit.analyze.rules.amdahl_bound`). The PyTorch walk
(:func:`~sparsekit.analyze.flops.layer_flops`) and the ONNX walk
(:func:`~sparsekit.analyze.onnx_layers.analyze_onnx`) both feed the functions below, so the two
routes give the same shares for the same model.
"""

from __future__ import annotations

from typing import Iterable

ONNX_COUNTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "Attention")
"""ONNX op types (default domain) whose FLOPs count; the PyTorch side counts the same work through
torch's FlopCounterMode (mm, addmm, bmm, baddbmm, convolution, fused attention) plus
``scaled_dot_product_attention`` on CPU."""


def product(dims: Iterable[int]) -> int:
    """The number of elements of a tensor of shape ``dims`` (1 for a scalar)."""
    n = 1
    for d in dims:
        n *= int(d)
    return n


def matmul_flops(output_numel: int, reduction: int) -> int:
    """A matrix product (or a conv as implicit GEMM): ``2 x`` outputs ``x`` reduction length."""
    return 2 * int(output_numel) * int(reduction)


def attention_flops(query_numel: int, output_numel: int, key_len: int) -> int:
    """Both products of one attention call, dense.

    ``Q [.., Sq, D] x K^T [.., D, Sk]`` is ``2 x numel(Q) x Sk`` and ``P [.., Sq, Sk] x V [.., Sk, Dv]``
    is ``2 x numel(out) x Sk``, whatever the layout (heads as an axis or folded into the hidden
    size) and with grouped key/value heads.

    Args:
        query_numel: elements of the query (batch x heads x Sq x D).
        output_numel: elements of the attention output (batch x heads x Sq x Dv).
        key_len: Sk, the number of keys.
    """
    return 2 * int(key_len) * (int(query_numel) + int(output_numel))


def einsum_flops(equation: str, operand_shapes: list[list[int]]) -> int | None:
    """A two-operand einsum contraction: ``2 x`` the product of every index's size; None when the
    equation or shapes do not fit (one operand, ellipsis, a rank mismatch).

    Args:
        equation: ``"bhqd,bhkd->bhqk"`` style.
        operand_shapes: the two operands' shapes.
    """
    lhs = equation.replace(" ", "").split("->")[0].split(",")
    if len(lhs) != 2 or len(operand_shapes) != 2 or "." in equation:
        return None
    sizes: dict[str, int] = {}
    for letters, shape in zip(lhs, operand_shapes):
        if len(letters) != len(shape):
            return None
        for letter, d in zip(letters, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(d))
    return 2 * product(sizes.values())


def total_flops(op_flops: Iterable[int | None]) -> int | None:
    """The model total: the sum of the counted ops' FLOPs that are known (None when none is)."""
    known = [int(f) for f in op_flops if f]
    return sum(known) if known else None


def flop_share(flops: int | None, total: int | None) -> float | None:
    """A layer's share (0..1, 6 decimals) of the model total; None when either is unknown."""
    if flops is None or not total:
        return None
    return round(flops / total, 6)
