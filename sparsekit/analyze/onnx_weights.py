"""Find the constant weights of Conv / Gemm / MatMul nodes in an ONNX graph, and the axis
TensorRT groups by 4, looking back through Q/DQ, Cast and Transpose nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sparsekit.errors import OnnxModelError

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


def load_onnx(path: str | os.PathLike, load_external_data: bool = True):
    """Load an ONNX model, turning every failure into one clear :class:`OnnxModelError`."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise OnnxModelError(f"ONNX file '{p}' does not exist", "check the path, or run 'sparsekit export' first")
    try:
        return onnx.load(str(p), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise OnnxModelError(f"'{p}' is not a readable ONNX model ({type(exc).__name__})", "re-export it; the file is corrupt or not ONNX") from exc


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


def find_weights(model) -> list[WeightRef]:
    """All constant weights of Conv/Gemm/MatMul nodes, in graph order, each once per consumer.

    Args:
        model: an ``onnx.ModelProto``.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    found: list[WeightRef] = []

    def trace(tensor: str, axis: int, node, operand: str, via: tuple[str, ...]) -> None:
        if tensor in inits:
            t = inits[tensor]
            if len(t.dims) > axis:
                found.append(WeightRef(node.name, node.op_type, operand, tensor, axis, tuple(t.dims), _dtype_name(t.data_type), via, module_from_node_name(node.name)))
            return
        prod = producer.get(tensor)
        if prod is None:
            return
        if prod.op_type in _PASS_THROUGH:
            trace(prod.input[0], axis, node, operand, via + (prod.op_type,))
        elif prod.op_type == "Transpose":
            perm = next((list(a.ints) for a in prod.attribute if a.name == "perm"), None)
            if perm is not None and axis < len(perm):
                trace(prod.input[0], perm[axis], node, operand, via + ("Transpose",))

    for node in graph.node:
        if node.op_type == "Conv":
            trace(node.input[1], 1, node, "W", ())
        elif node.op_type == "MatMul":
            trace(node.input[0], 1, node, "A", ())
            trace(node.input[1], 0, node, "B", ())
        elif node.op_type == "Gemm":
            attrs = {a.name: a.i for a in node.attribute}
            trace(node.input[0], 0 if attrs.get("transA") else 1, node, "A", ())
            trace(node.input[1], 1 if attrs.get("transB") else 0, node, "B", ())
    return found


def initializer_array(model, name: str):
    """The numpy array of initializer ``name`` (fp16/int8 kept as stored)."""
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)
