"""Q/DQ ONNX with fp32 weights -> the same graph with int8 weights: a quarter of the bytes.

The TorchScript exporter writes a quantized weight as ``fp32 initializer -> QuantizeLinear ->
DequantizeLinear``, so an int8 file is as large as the fp32 one. Quantizing a constant is
constant folding: each such ``QuantizeLinear`` is computed here, exactly as ONNX defines it
(``saturate(round_half_even(x / scale) + zero_point)``, per tensor or per axis), and replaced by
an int8 initializer feeding the same ``DequantizeLinear``. TensorRT reads both forms alike; the
2:4 check follows the weight through the ``DequantizeLinear`` to the int8 tensor, which is what
TensorRT groups. The fp32 weight is dropped unless something else reads it; a weight quantized by
several calls of one shared layer is stored once.

Weights that stay in float (embeddings, a head ModelOpt keeps unquantized) are stored in fp16
behind a ``Cast`` to fp32, as the fp16 variant stores them: without it an int8 file holding a large
embedding is larger than the fp16 one. ONNX Runtime parity then measures that rounding too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from sparsekit.onnx_io.graphs import replace_nodes
from sparsekit.onnx_io.tensors import tensor_array
from sparsekit.export.external_data import compact, is_external, rewritten_data
from sparsekit.export.fp16_weights import FP16_MAX

log = logging.getLogger(__name__)


def _broadcastable(scale: np.ndarray, zero_point: np.ndarray, axis: int, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Q/DQ parameters shaped to broadcast against an ``ndim``-dimensional tensor: per axis along
    ``axis`` (negative counts from the end) when ``scale`` is 1-D with several values, else scalars."""
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * ndim
        shape[axis % ndim] = -1
        return scale.reshape(shape), zero_point.reshape(shape)
    return scale.reshape(()), zero_point.reshape(())


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = 1) -> np.ndarray:
    """ONNX ``QuantizeLinear`` of a constant (opset 13+; no block quantization).

    Args:
        x: fp32 values.
        scale: scalar (per tensor) or 1-D of ``x.shape[axis]`` (per axis), fp32.
        zero_point: same shape as ``scale``; its dtype (int8 or uint8) is the output's.
        axis: the quantization axis for a 1-D ``scale`` (negative counts from the end).

    Returns:
        The quantized array (``zero_point.dtype``), same shape as ``x``.
    """
    scale, zero_point = _broadcastable(np.asarray(scale, dtype=np.float32), np.asarray(zero_point), axis, x.ndim)
    q = np.rint(x.astype(np.float32, copy=False) / scale)
    q += zero_point.astype(np.float32)
    info = np.iinfo(zero_point.dtype)
    return np.clip(q, info.min, info.max, out=q).astype(zero_point.dtype)


def _constants(model) -> tuple[dict, dict]:
    """Initializers by name, and Constant-node tensors (``value`` attribute) by output name."""
    inits = {t.name: t for t in model.graph.initializer}
    consts = {}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if value is not None:
                consts[node.output[0]] = value
    return inits, consts


def _weight_quantizers(model, inits: dict, consts: dict) -> list:
    """``QuantizeLinear`` nodes of a constant fp32 initializer with constant int8/uint8 parameters."""
    import onnx

    found = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 2 or node.input[0] not in inits:
            continue
        attrs = {a.name: a for a in node.attribute}
        if "block_size" in attrs and attrs["block_size"].i:
            continue
        x = inits[node.input[0]]
        zp_name = node.input[2] if len(node.input) > 2 else ""
        zp = (inits.get(zp_name) or consts.get(zp_name)) if zp_name else None
        scale = inits.get(node.input[1]) or consts.get(node.input[1])
        if x.data_type != onnx.TensorProto.FLOAT or scale is None or zp is None or zp.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            continue
        found.append(node)
    return found


def int8_weights_from_qdq(model, folder: str | os.PathLike, location: str):
    """Fold every ``QuantizeLinear`` of a constant weight into an int8 (or uint8) initializer.

    Args:
        model: the Q/DQ ``ModelProto`` whose initializers of at least 1 KiB are external in
            ``folder/location``.
        folder: the stage folder.
        location: the data file; it is rewritten (int8 weights, and every tensor still used).

    Returns:
        The compacted ``ModelProto`` (its weights external in ``folder/location``).

    Memory: the graph, plus one weight (fp32 and int8) at a time.
    """
    import onnx

    folder = Path(folder)
    graph = model.graph
    inits, consts = _constants(model)
    _bypass_identities(graph, inits)
    quantizers = _weight_quantizers(model, inits, consts)
    folded_outputs = {q.output[0] for q in quantizers}
    readers: dict[str, int] = {}
    for node in graph.node:
        if node.output and node.output[0] in folded_outputs:
            continue
        for name in set(node.input):
            readers[name] = readers.get(name, 0) + 1
    for out in graph.output:
        readers[out.name] = readers.get(out.name, 0) + 1
    dropped = {q.input[0] for q in quantizers if not readers.get(q.input[0])}

    def value(name: str) -> np.ndarray:
        t = inits.get(name) or consts[name]
        return tensor_array(t, folder)

    new_inits, casts, renamed = [], [], {}
    packed_by_key: dict[tuple, str] = {}
    with rewritten_data(folder, location) as writer:
        for q in quantizers:
            x = inits[q.input[0]]
            scale, zero_point = value(q.input[1]), value(q.input[2])
            axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
            key = (q.input[0], scale.tobytes(), zero_point.tobytes(), zero_point.dtype.str, axis)
            if key in packed_by_key:  # a shared layer quantized again (ALBERT): one int8 copy
                renamed[q.output[0]] = packed_by_key[key]
                continue
            packed_by_key[key] = q.output[0]
            packed = onnx.TensorProto(name=q.output[0], dims=list(x.dims), data_type=onnx.helper.np_dtype_to_tensor_dtype(zero_point.dtype))
            writer.append(packed, quantize_linear(tensor_array(x, folder), scale, zero_point, axis))
            new_inits.append(packed)
        kept = []
        for t in graph.initializer:
            if t.name in dropped:
                continue
            array = tensor_array(t, folder) if is_external(t) else None
            if array is not None and _store_in_fp16(t, array):
                half = onnx.TensorProto(name=f"{t.name}_fp16", dims=list(t.dims), data_type=onnx.TensorProto.FLOAT16)
                writer.append(half, array.astype(np.float16))
                kept.append(half)
                casts.append(onnx.helper.make_node("Cast", [half.name], [t.name], name=f"/int8_weights/{t.name}/Cast", to=onnx.TensorProto.FLOAT))
                continue
            if array is not None:
                writer.append(t, array)
            kept.append(t)
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    nodes = [n for n in graph.node if not (n.op_type == "QuantizeLinear" and n.output and n.output[0] in folded_outputs)]
    replace_nodes(graph, casts + nodes, renamed)
    cast_outputs = {c.output[0] for c in casts}
    inputs = [i for i in graph.input if i.name not in cast_outputs]
    del graph.input[:]
    graph.input.extend(inputs)
    log.debug("int8: %d weight quantizer(s) folded into %d int8 initializers; %d float weight(s) stored in fp16", len(quantizers), len(new_inits), len(casts))
    return compact(model)


def _store_in_fp16(tensor, array: np.ndarray) -> bool:
    """Whether an unquantized weight of the int8 file is stored in fp16 (behind a ``Cast`` to fp32):
    a float tensor of 2+ dimensions in the data file (an embedding, a head kept in float) whose
    values fit the fp16 range. Biases, norms and Q/DQ scales stay fp32."""
    import onnx

    if tensor.data_type != onnx.TensorProto.FLOAT or len(tensor.dims) < 2 or not array.size:
        return False
    return max(float(array.max()), -float(array.min())) <= FP16_MAX


def _bypass_identities(graph, inits: dict) -> None:
    """Rewire the readers of ``Identity(initializer)`` to the initializer and drop the Identity.

    The TorchScript exporter reads a parameter used by several calls (a shared layer, ALBERT's) once
    directly and once through an ``Identity``; a ``QuantizeLinear`` behind the Identity would
    otherwise stay a run-time node and keep the fp32 weight in the file.
    """
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return
    replace_nodes(graph, [n for n in graph.node if not (n.op_type == "Identity" and n.output and n.output[0] in alias)], alias)


def float_weights_view(model):
    """``model`` (an in-memory ``ModelProto``, changed in place and returned) with every int8/uint8
    weight that a ``DequantizeLinear`` reads replaced, under the same name, by its dequantized fp32
    values.

    For tools that inspect float weights only, such as ``polygraphy inspect sparsity``: a weight is
    zero in int8 exactly where it is zero dequantized, so their 2:4 verdicts carry over.
    """
    import onnx
    from onnx import numpy_helper

    inits, consts = _constants(model)
    for node in model.graph.node:
        w = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" and node.input else None
        if w is None or w.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            continue
        q = numpy_helper.to_array(w).astype(np.float32)
        scale = numpy_helper.to_array(inits.get(node.input[1]) or consts[node.input[1]]).astype(np.float32)
        zp_name = node.input[2] if len(node.input) > 2 else ""
        zero = numpy_helper.to_array(inits.get(zp_name) or consts[zp_name]).astype(np.float32) if zp_name else np.zeros((), np.float32)
        scale, zero = _broadcastable(scale, zero, next((a.i for a in node.attribute if a.name == "axis"), 1), q.ndim)
        w.CopyFrom(numpy_helper.from_array(((q - zero) * scale).astype(np.float32), w.name))
    return model
