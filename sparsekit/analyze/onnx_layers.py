"""Per-layer 2:4 analysis of an ONNX file (Conv/Gemm/MatMul with constant weights)."""

from __future__ import annotations

import logging
import os

from sparsekit.onnx_io.graphs import iter_graphs
from sparsekit.onnx_io.validate import load_validated_onnx
from sparsekit.analyze.flop_count import ONNX_COUNTED_OPS, attention_flops, einsum_flops, flop_share, matmul_flops, product, total_flops
from sparsekit.analyze.onnx_weights import find_weights
from sparsekit.analyze.rules import likely_wins, trt_eligible
from sparsekit.analyze.torch_layers import AnalysisReport, LayerAnalysis
from sparsekit.onnx_io.metadata import recorded_inputs
from sparsekit.onnx_io.tensors import graph_tensors

log = logging.getLogger(__name__)


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


def _shapes_of(inferred) -> dict[str, list[int | None]]:
    """Tensor name -> shape (None for a dim inference left unknown), subgraphs included."""
    shapes: dict[str, list[int | None]] = {}
    for _, graph in iter_graphs(inferred.graph):  # subgraphs too: their layers get FLOPs per run of the body
        for vi in [*graph.value_info, *graph.input, *graph.output]:
            dims = vi.type.tensor_type.shape.dim
            shapes.setdefault(vi.name, [d.dim_value if d.HasField("dim_value") else None for d in dims])
        for t in graph.initializer:
            shapes.setdefault(t.name, list(t.dims))
    return shapes


def _counted_shapes_unknown(model, shapes: dict[str, list[int | None]]) -> bool:
    """Whether some counted op (:data:`~sparsekit.analyze.flop_count.ONNX_COUNTED_OPS`) has an
    operand or output whose shape, or one of its dims, is unknown."""
    for _, graph in iter_graphs(model.graph):
        for node in graph.node:
            if node.op_type in ONNX_COUNTED_OPS and node.domain in ("", "ai.onnx"):
                for name in (*node.input[:3], *node.output[:1]):
                    if name and (name not in shapes or None in shapes[name]):
                        return True
    return False


def _symbolic_shapes(model):
    """ONNX Runtime's symbolic shape inference of ``model``, or None where it fails.

    ONNX's own inference loses the heads and head size of attention at the Reshapes the exporters
    compute from ``Shape`` (an attention product would then count one head of size 1); ONNX
    Runtime's propagates those values. Its weights' external data is detached from the copy it
    reads, so no file a model names is opened (a value it would need from there makes it fail,
    and the ONNX shapes stand). Driven step by step instead of through ``infer_shapes``, which
    writes a ``sym_shape_infer_temp.onnx`` into the working directory when it stops short.
    """
    import onnx
    from onnx import TensorProto

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError:  # an ONNX Runtime build without its tools
        return None
    detached = onnx.ModelProto()
    detached.CopyFrom(model)
    for tensor in graph_tensors(detached.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
    try:
        inference = SymbolicShapeInference(2**31 - 1, True, False, 0)
        inference._preprocess(detached)
        while inference.run_:
            inference._infer_impl()
        inference._update_output_from_vi()
        return inference.out_mp_
    except Exception as exc:  # best-effort, like ONNX's inference: unknown dims then count as 1
        log.debug("symbolic shape inference stopped: %s", exc)
        return None


def _static_shapes(model) -> dict[str, list[int]]:
    """Tensor name -> shape with symbolic dims at the exported sizes (else 1).

    ONNX's shape inference first; where it leaves a dim of a counted op's operand unknown (the
    attention products of every transformer export), ONNX Runtime's symbolic inference
    (:func:`_symbolic_shapes`) replaces it.
    """
    import onnx

    fixed = _fix_input_dims(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=fixed)
    except Exception:  # shape inference is best-effort; FLOPs are then unknown
        inferred = model
    shapes = _shapes_of(inferred)
    if _counted_shapes_unknown(inferred, shapes):
        symbolic = _symbolic_shapes(model)
        if symbolic is not None:
            shapes = _shapes_of(symbolic)
    return {name: [1 if d is None else d for d in dims] for name, dims in shapes.items()}


def _attribute_ints(node) -> dict[str, int]:
    return {at.name: at.i for at in node.attribute if at.type == at.INT}


def _node_flops(node, shapes: dict[str, list[int]]) -> int | None:
    """FLOPs of one counted node (see :mod:`sparsekit.analyze.flop_count`), None when a shape it
    needs is unknown."""
    out = shapes.get(node.output[0]) if node.output else None
    if not out:
        return None
    numel = product(out)
    if node.op_type == "Conv":
        w = shapes.get(node.input[1])
        return matmul_flops(numel, product(w[1:])) if w else None
    if node.op_type == "ConvTranspose":  # each input pixel scatters into a k-window: W is [C_in, C_out/group, k...]
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        return matmul_flops(product(x), product(w[1:])) if x and w else None
    if node.op_type == "Einsum":
        equation = next((at.s.decode() for at in node.attribute if at.name == "equation"), "")
        operands = [shapes.get(name) for name in node.input]
        return einsum_flops(equation, operands) if all(operands) else None
    if node.op_type == "Attention":  # Q/K/V as [B, H, S, D] or [B, S, H x D]: the key length is dim -2 of K either way
        q, k = shapes.get(node.input[0]), shapes.get(node.input[1])
        return attention_flops(product(q), numel, k[-2]) if q and k and len(k) >= 3 else None
    a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
    attrs = _attribute_ints(node)
    if b and len(b) >= 2:  # the reduction length from the weight side where it is known
        k = (b[1] if attrs.get("transB") else b[0]) if node.op_type == "Gemm" else b[-2]
    elif a:
        k = a[0] if (node.op_type == "Gemm" and attrs.get("transA")) else a[-1]
    else:
        return None
    return matmul_flops(numel, k)


def analyze_onnx(path: str | os.PathLike, model=None) -> AnalysisReport:
    """Analyse every constant Conv/Gemm/MatMul weight of an ONNX file at batch 1.

    FLOPs and shares follow :mod:`sparsekit.analyze.flop_count`, as the PyTorch analysis does, so
    a model and its export report the same shares.

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
        for _, graph in iter_graphs(model.graph) for n in graph.node if n.op_type in ONNX_COUNTED_OPS and n.domain in ("", "ai.onnx") and n.output
    }
    total = total_flops(node_flops.values())
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
                likely_wins(ref.dims, ref.axis, rows).to_dict(), rows, f, flop_share(f, total), subgraph=ref.subgraph, dtype=ref.dtype,
            )
        )
    initializers = {t.name for t in model.graph.initializer}
    inputs = [{"name": i.name, "shape": shapes.get(i.name, [])} for i in model.graph.input if i.name not in initializers]
    return AnalysisReport(str(path), inputs, total, layers)
