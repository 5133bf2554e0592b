"""Which precision a typed ONNX file carries: fp32, fp16, int8 (Q/DQ) or fp8 (Q/DQ)."""

from __future__ import annotations

from sparsekit.analyze.onnx_weights import find_weights
from sparsekit.onnx_io.load import onnx_model


def onnx_precision(source) -> str:
    """``int8``/``fp8`` when Q/DQ pairs quantize to that type, else ``fp16`` when the Conv/Gemm/MatMul
    weights are stored in fp16/bf16, else ``fp32``.

    ``source`` is the ONNX path or the model already loaded (external data is never read)."""
    import onnx

    model = onnx_model(source)
    dtypes = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:  # ModelOpt's exporter stores scales/zero points as Constant nodes
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    dtypes[node.output[0]] = attr.t.data_type
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "TRT_FP8QuantizeLinear") and len(node.input) > 2 and node.input[2] in dtypes:
            dtype = dtypes[node.input[2]]
            if dtype in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
                return "int8"
            if dtype in (onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2):
                return "fp8"
        if node.op_type == "QuantizeLinear" and len(node.input) == 2:
            return "int8"
        if node.op_type == "TRT_FP8QuantizeLinear":
            return "fp8"
    weights = [ref.dtype for ref in find_weights(model)]
    if weights and all(d in ("float16", "bfloat16") for d in weights):
        return "fp16"
    return "fp32"
