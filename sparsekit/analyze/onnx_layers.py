"""Per-layer 2:4 analysis of an ONNX file (Conv/Gemm/MatMul with constant weights)."""

from __future__ import annotations

import os

from sparsekit.onnx_io.graphs import iter_graphs
from sparsekit.onnx_io.validate import load_validated_onnx
from sparsekit.analyze.onnx_weights import find_weights
from sparsekit.analyze.rules import likely_wins, trt_eligible
from sparsekit.analyze.torch_layers import AnalysisReport, LayerAnalysis
from sparsekit.onnx_io.metadata import recorded_inputs


def _fix_input_dims(model) -> bool:
    """Give the graph inputs the sizes the kit exported them at (``sparsekit.inputs`` metadata), so
    that a dynamic sequence axis counts at its real length (attention grows with its square).
    The exporter's symbolic intermediate shapes are dropped so that inference recomputes them.

    Returns:
        Whether any input dimension was fixed.

    Raises:
        OnnxModelError: the metadata entry is not JSON or not a valid input spec.
    """
    recorded = recorded_inputs(model)
    if recorded is None:
        return False
    shapes = {t.name: list(t.shape) for t in recorded.tensors}
    fixed = False
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        want = shapes.get(vi.name)
        if want is not None and len(want) == len(dims):
            for d, size in zip(dims, want):
                if not d.HasField("dim_value"):
                    d.dim_value = int(size)
                    fixed = True
    if fixed:
        del model.graph.value_info[:]
        for vo in model.graph.output:
            for d in vo.type.tensor_type.shape.dim:
                if not d.HasField("dim_value"):
                    d.ClearField("dim_param")
    return fixed


def _copy(model):
    """A copy of a loaded model (weights without external data: the protobuf only)."""
    copy = type(model)()
    copy.CopyFrom(model)
    return copy


def _static_shapes(model) -> dict[str, list[int]]:
    """Tensor name -> shape with symbolic dims at the exported sizes (else 1)."""
    import onnx

    fixed = _fix_input_dims(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=fixed)
    except Exception:  # shape inference is best-effort; FLOPs are then unknown
        inferred = model
    shapes = {}
    for _, graph in iter_graphs(inferred.graph):  # subgraphs too: their layers get FLOPs per run of the body
        for vi in [*graph.value_info, *graph.input, *graph.output]:
            dims = vi.type.tensor_type.shape.dim
            shapes.setdefault(vi.name, [d.dim_value if d.HasField("dim_value") else 1 for d in dims])
        for t in graph.initializer:
            shapes.setdefault(t.name, list(t.dims))
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
    a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
    attrs = {at.name: at.i for at in node.attribute}
    if b and len(b) >= 2:  # the reduction length from the weight side where it is known
        k = (b[1] if attrs.get("transB") else b[0]) if node.op_type == "Gemm" else b[-2]
    elif a:
        k = a[0] if (node.op_type == "Gemm" and attrs.get("transA")) else a[-1]
    else:
        return None
    return 2 * numel * k


def analyze_onnx(path: str | os.PathLike, model=None) -> AnalysisReport:
    """Analyse every constant Conv/Gemm/MatMul weight of an ONNX file at batch 1.

    Linear in the graph size: shapes are inferred once and every lookup goes through an index
    (a 100k-node graph takes seconds, see ``benchmarks/graph_scaling_cpu.py``).

    ModelOpt's rules do not apply to ONNX (the weights are already fixed); the ``magnitude`` and
    ``sparsegpt`` columns report "n/a" and count as accepted for the bound.

    The file is validated first (every tensor stores the bytes it declares, ONNX's checker passes).
    Layers inside If/Loop/Scan subgraphs are analysed too, named with their subgraph path; their
    FLOPs count one run of the body (a Loop's trip count is not known statically).

    Args:
        path: the ONNX file.
        model: the file already loaded without its external data (left unchanged); None loads it.

    Raises:
        OnnxModelError: the file is not a valid ONNX model (see
            :func:`~sparsekit.onnx_io.validate.load_validated_onnx`).
    """
    given = model is not None
    model = load_validated_onnx(path, model)  # shapes only: weights (maybe external, > 2 GiB) stay on disk
    shapes = _static_shapes(_copy(model) if given else model)  # fixing the input dims edits the graph
    # keyed by each node's first output: unique in a model, unlike node names (often empty)
    node_flops = {
        n.output[0]: _node_flops(n, shapes)
        for _, graph in iter_graphs(model.graph) for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and n.output
    }
    known = [f for f in node_flops.values() if f]
    total = sum(known) if known else None
    na = {"ok": True, "reason": "n/a for ONNX"}
    layers = []
    for ref in find_weights(model):
        f = node_flops.get(ref.output)
        out = shapes.get(ref.output, [])
        rows = None
        if out:
            rows = 1
            for d in (out[:1] + out[2:] if ref.op_type == "Conv" else out[:-1]):
                rows *= d
        layers.append(
            LayerAnalysis(
                ref.layer_name, ref.op_type, list(ref.dims), ref.axis, ref.dims[ref.axis],
                trt_eligible(ref.op_type, ref.dims, ref.axis, dtype=ref.dtype).to_dict(), na, na,
                likely_wins(ref.dims, ref.axis, rows).to_dict(), rows, f, round(f / total, 6) if f and total else None, subgraph=ref.subgraph, dtype=ref.dtype,
            )
        )
    initializers = {t.name for t in model.graph.initializer}
    inputs = [{"name": i.name, "shape": shapes.get(i.name, [])} for i in model.graph.input if i.name not in initializers]
    return AnalysisReport(str(path), inputs, total, layers)
