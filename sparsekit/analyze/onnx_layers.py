"""Per-layer 2:4 analysis of an ONNX file (Conv/Gemm/MatMul with constant weights)."""

from __future__ import annotations

import os

from sparsekit.analyze.onnx_weights import find_weights, load_onnx
from sparsekit.analyze.rules import likely_wins, trt_eligible
from sparsekit.analyze.torch_layers import AnalysisReport, LayerAnalysis


def _static_shapes(model) -> dict[str, list[int]]:
    """Tensor name -> shape with symbolic dims (the dynamic batch) taken as 1."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best-effort; FLOPs are then unknown
        inferred = model
    shapes = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for t in inferred.graph.initializer:
        shapes[t.name] = list(t.dims)
    return shapes


def _node_flops(node, shapes: dict[str, list[int]]) -> int | None:
    out = shapes.get(node.output[0])
    if not out:
        return None
    numel = 1
    for d in out:
        numel *= d
    if node.op_type == "Conv":
        w = shapes.get(node.input[1])
        if not w:
            return None
        k = 1
        for d in w[1:]:
            k *= d
        return 2 * numel * k
    a = shapes.get(node.input[0])
    if not a:
        return None
    trans_a = any(at.name == "transA" and at.i for at in node.attribute)
    k = a[0] if (node.op_type == "Gemm" and trans_a) else a[-1]
    return 2 * numel * k


def analyze_onnx(path: str | os.PathLike) -> AnalysisReport:
    """Analyse every constant Conv/Gemm/MatMul weight of an ONNX file at batch 1.

    ModelOpt's rules do not apply to ONNX (the weights are already fixed); the ``magnitude`` and
    ``sparsegpt`` columns report "n/a" and count as accepted for the bound.
    """
    model = load_onnx(path)
    shapes = _static_shapes(model)
    node_flops = {n.name: _node_flops(n, shapes) for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    known = [f for f in node_flops.values() if f]
    total = sum(known) if known else None
    na = {"ok": True, "reason": "n/a for ONNX"}
    layers = []
    for ref in find_weights(model):
        f = node_flops.get(ref.node)
        out = shapes.get(next((n.output[0] for n in model.graph.node if n.name == ref.node), ""), [])
        rows = None
        if out:
            rows = 1
            for d in (out[:1] + out[2:] if ref.op_type == "Conv" else out[:-1]):
                rows *= d
        layers.append(
            LayerAnalysis(
                ref.module or ref.node, ref.op_type, list(ref.dims), ref.axis, ref.dims[ref.axis],
                trt_eligible(ref.op_type, ref.dims, ref.axis, dtype=ref.dtype).to_dict(), na, na,
                likely_wins(ref.dims, ref.axis).to_dict(), rows, f, round(f / total, 6) if f and total else None,
            )
        )
    inputs = [{"name": i.name, "shape": shapes.get(i.name, [])} for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    return AnalysisReport(str(path), inputs, total, layers)
