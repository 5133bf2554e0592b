"""Find the constant weights of Conv / Gemm / MatMul nodes in an ONNX graph, and the axis
TensorRT groups by 4, looking back through Q/DQ, Cast and Transpose nodes."""

from __future__ import annotations

import os
from collections import ChainMap
from dataclasses import dataclass

from sparsekit.errors import OnnxModelError
from sparsekit.onnx_io.graphs import MAX_SUBGRAPH_DEPTH, subgraphs_of
from sparsekit.onnx_io.tensors import tensor_array

_PASS_THROUGH = {"QuantizeLinear", "DequantizeLinear", "TRT_FP8QuantizeLinear", "TRT_FP8DequantizeLinear", "Cast", "Identity"}


@dataclass(frozen=True)
class WeightRef:
    """A constant weight feeding a Conv/Gemm/MatMul.

    Attributes:
        node: name of the consuming Conv/Gemm/MatMul node.
        op_type: ``Conv``, ``Gemm`` or ``MatMul``.
        operand: which input of the node it feeds (``A``, ``B`` or ``W``).
        initializer: name of the stored tensor.
        axis: axis of the STORED tensor that TensorRT groups by 4.
        dims: stored shape.
        dtype: stored dtype name (``float32``, ``float16``, ``int8``...).
        via: op types between the stored tensor and the node, nearest first.
        module: PyTorch module path recovered from the node's scope name (``layers.0.ffn_in``), or "".
        output: the consuming node's first output tensor (unique in the graph, unlike node names).
        group: the consuming Conv's ``group`` attribute (1 for Gemm/MatMul).
        subgraph: path of the If/Loop/Scan subgraph holding the consuming node
            (``repeat.body``; see :func:`~sparsekit.onnx_io.graphs.iter_graphs`), "" at top level.
        zero_point: the zero-point tensor of the ``DequantizeLinear`` that reads the stored tensor
            directly (through Identity only), or "" (then a stored integer 0 is the zero).
        zero_point_axis: that node's ``axis`` (per-channel zero points lie along it).
        block_size: that node's ``block_size`` (blocked zero points), 0 when not blocked.
    """

    node: str
    op_type: str
    operand: str
    initializer: str
    axis: int
    dims: tuple[int, ...]
    dtype: str
    via: tuple[str, ...]
    module: str
    output: str = ""
    group: int = 1
    subgraph: str = ""
    zero_point: str = ""
    zero_point_axis: int = 1
    block_size: int = 0

    @property
    def layer_name(self) -> str:
        """The layer's name in reports: module scope, else node name; prefixed with the subgraph
        path (``repeat.body/loop``) inside an If/Loop/Scan."""
        local = self.module or self.node
        return f"{self.subgraph}/{local}" if self.subgraph else local




def module_from_node_name(node_name: str) -> str:
    """Recover the PyTorch module path from a TorchScript-exporter node name.

    The exporter writes one scope per called module; children of a Sequential are written with
    their parent's local name as prefix. ``/layers.0/ffn_in/MatMul`` -> ``layers.0.ffn_in`` and
    ``/stages/stages.0/conv1/conv1.0/Conv`` -> ``stages.0.conv1.0``. Names without scopes give "".
    """
    parts = [p for p in node_name.split("/") if p][:-1]
    path: list[str] = []
    prev = None
    for part in parts:
        if prev is not None and part.startswith(prev + "."):
            path.append(part[len(prev) + 1 :])
        else:
            path.append(part)
        prev = part
    return ".".join(path)


def _dtype_name(data_type: int) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(data_type).name if data_type != onnx.TensorProto.BFLOAT16 else "bfloat16"


MAX_TRACE_DEPTH = 16
"""Pass-through nodes followed back from a consumer to its stored weight (real graphs need 1-3)."""


def find_weights(model) -> list[WeightRef]:
    """All constant weights of Conv/Gemm/MatMul nodes, in graph order, each once per consumer,
    including nodes inside If/Loop/Scan subgraphs (which see their outer graphs' initializers and
    tensors), up to :data:`~sparsekit.onnx_io.graphs.MAX_SUBGRAPH_DEPTH` levels.

    Time and memory are linear in the graph size: each graph's producer index is built once, and
    each operand is followed back through at most :data:`MAX_TRACE_DEPTH` pass-through nodes.

    Args:
        model: an ``onnx.ModelProto``.

    Raises:
        OnnxModelError: subgraphs nested deeper than the bound.
    """
    found: list[WeightRef] = []
    _find_in_graph(model.graph, ChainMap(), ChainMap(), "", 0, found)
    return found


def _find_in_graph(graph, outer_inits: ChainMap, outer_producer: ChainMap, path: str, depth: int, found: list[WeightRef]) -> None:
    """Append the weights of ``graph``'s nodes to ``found``, then those of its subgraphs."""
    inits = outer_inits.new_child({t.name: t for t in graph.initializer})
    producer = outer_producer.new_child({out: n for n in graph.node for out in n.output})

    def trace(tensor: str, axis: int, node, operand: str, group: int = 1) -> None:
        via: tuple[str, ...] = ()
        dq = None  # the DequantizeLinear reading the stored tensor (through Identity only)
        for _ in range(MAX_TRACE_DEPTH + 1):
            if tensor in inits:
                t = inits[tensor]
                if len(t.dims) > axis:
                    output = node.output[0] if node.output else ""
                    zp = dq.input[2] if dq is not None and len(dq.input) > 2 else ""
                    attrs = {a.name: a.i for a in dq.attribute} if dq is not None else {}
                    found.append(WeightRef(
                        node.name, node.op_type, operand, tensor, axis, tuple(t.dims), _dtype_name(t.data_type), via, module_from_node_name(node.name), output, group,
                        path, zp, attrs.get("axis", 1), attrs.get("block_size", 0),
                    ))
                return
            prod = producer.get(tensor)
            if prod is None or not prod.input:
                return
            if prod.op_type == "Transpose":
                perm = next((list(a.ints) for a in prod.attribute if a.name == "perm"), None)
                if perm is None or axis >= len(perm):
                    return
                axis = perm[axis]
            elif prod.op_type not in _PASS_THROUGH:
                return
            if prod.op_type == "DequantizeLinear":
                dq = prod
            elif prod.op_type != "Identity":
                dq = None
            tensor, via = prod.input[0], via + (prod.op_type,)

    for node in graph.node:
        if len(node.input) < 2:
            continue
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
            trace(node.input[1], 1, node, "W", group)
        elif node.op_type == "MatMul":
            trace(node.input[0], 1, node, "A")
            trace(node.input[1], 0, node, "B")
        elif node.op_type == "Gemm":
            attrs = {a.name: a.i for a in node.attribute}
            trace(node.input[0], 0 if attrs.get("transA") else 1, node, "A")
            trace(node.input[1], 1 if attrs.get("transB") else 0, node, "B")
    for _, sub_path, sub in subgraphs_of(graph, path):
        if depth + 1 > MAX_SUBGRAPH_DEPTH:
            raise OnnxModelError(f"subgraph '{sub_path}' is nested more than {MAX_SUBGRAPH_DEPTH} levels deep", "flatten the control flow (e.g. with onnxsim or onnx-graphsurgeon) before checking")
        _find_in_graph(sub, inits, producer, sub_path, depth + 1, found)












_FP8_SIGNED_ZERO = ("float8_e4m3fn", "float8_e5m2")
"""fp8 formats with +0 (0x00) and -0 (0x80); the ``fnuz`` formats have only 0x00 (0x80 is NaN)."""


def _zero_point_array(zero_point, shape: tuple[int, ...], axis: int, block_size: int):
    """``zero_point`` (a numpy integer array) broadcast against a weight of ``shape`` as
    ``DequantizeLinear`` applies it (per tensor, per ``axis``, or in blocks of ``block_size``
    along ``axis``), or None when its shape fits none of these."""
    import numpy as np

    zp = np.asarray(zero_point).astype(np.int64)
    if zp.size == 1:
        return zp.reshape(())
    if not shape:
        return None
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape):
        return None
    if block_size > 0 and zp.ndim == len(shape):
        full = np.repeat(zp, block_size, axis=axis)
        full = np.take(full, np.arange(shape[axis]), axis=axis) if full.shape[axis] >= shape[axis] else None
        return full if full is not None and full.shape == tuple(shape) else None
    if zp.ndim == 1 and zp.shape[0] == shape[axis]:
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return zp.reshape(view)
    return None


def stored_zero_mask(tensor, base_dir: str | os.PathLike = "", zero_point=None, axis: int = 1, block_size: int = 0):
    """Which STORED values of ``tensor`` are exactly zero, judged on the stored type.

    float32/float16/float64: ``== 0`` (-0 included); bfloat16 and fp8 e4m3fn/e5m2: the bit
    pattern of +0 or -0; fp8 fnuz: 0x00 only; integers (int8/uint8/int4/uint4 unpacked low nibble
    first, ...): equal to the zero point of the ``DequantizeLinear`` that reads them (0 without one).
    Validate the tensor first (:func:`~sparsekit.onnx_io.validate.validate_tensor`): only
    then is the allocation the size of the stored bytes. Memory: the tensor once, plus a bool mask.

    Args:
        tensor: an ``onnx.TensorProto``.
        base_dir: the ONNX file's folder (external data).
        zero_point: the zero point as a numpy array, or None.
        axis / block_size: the ``DequantizeLinear``'s attributes (see :func:`_zero_point_array`).

    Returns:
        ``(mask, note)``: a bool array of the tensor's shape, or None with the reason the values
        cannot be judged (a data type without a zero, a zero point of an unknown layout); ``note``
        says what counted as zero.

    Raises:
        ExternalDataError: its external data cannot be read.
    """
    import numpy as np

    array = tensor_array(tensor, base_dir)
    name = array.dtype.name
    if name in _FP8_SIGNED_ZERO:
        return (array.view(np.uint8) & 0x7F) == 0, "+0 or -0 bit pattern"
    if name.startswith("float8") and name.endswith("fnuz"):
        return array.view(np.uint8) == 0, "0x00 bit pattern"
    if name == "bfloat16":
        return (array.view(np.uint16) & 0x7FFF) == 0, "+0 or -0 bit pattern"
    if name == "float4_e2m1fn":
        return (array.view(np.uint8) & 0x07) == 0, "+0 or -0 bit pattern"
    if array.dtype.kind == "f":
        return array == 0, "0.0"
    if name in ("int4", "uint4", "int2", "uint2") or array.dtype.kind in "iu":
        values = array.astype(np.int8) if name in ("int4", "uint4", "int2", "uint2") else array
        if zero_point is None:
            return values == 0, "0"
        zp = _zero_point_array(zero_point, array.shape, axis, block_size)
        if zp is None:
            return None, f"zero point of shape {list(np.shape(zero_point))} does not fit weight {list(array.shape)} on axis {axis}"
        note = f"zero point {int(zp)}" if zp.ndim == 0 else "per-channel zero points"
        return values == zp, note
    return None, f"no zero to count in {name} values"
