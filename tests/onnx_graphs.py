"""Hand-built ONNX graphs covering every way TensorRT sees a weight: Conv, Gemm with and without
transB, MatMul with constant B, behind Q/DQ, Cast and Transpose. Used by the check tests and the
Polygraphy comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sparsekit.sparsify.pattern import magnitude_mask


def _w(shape, axis, sparse: bool, seed: int, dtype=np.float32) -> np.ndarray:
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32) + 0.01
    if sparse:
        w = w * magnitude_mask(w, axis)
    return w.astype(dtype)


def build_graphs(root: Path) -> dict[str, dict]:
    """Write the graphs under ``root``; returns {file: {initializer: expected 2:4 verdict}}."""
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, dict] = {}

    def save(name, nodes, inits, inputs, outputs, expect):
        graph = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        onnx.save(model, str(root / f"{name}.onnx"))
        cases[f"{name}.onnx"] = expect

    x4 = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 16, 8, 8])

    def y(*shape):
        return helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", *shape])

    # Conv: sparse on axis 1; a second conv sparse only along flattened C*R*S (wrong layout).
    good = _w((32, 16, 3, 3), 1, True, 0)
    flat = _w((32, 144), 1, True, 1).reshape(32, 16, 3, 3)
    save("conv", [helper.make_node("Conv", ["x", "good"], ["h"], name="/a/Conv", pads=[1, 1, 1, 1]), helper.make_node("Conv", ["h", "flat"], ["y"], name="/b/Conv", pads=[1, 1, 1, 1])],
         {"good": good, "flat": np.concatenate([flat, flat], axis=1)[:, :32]}, [x4], [y(32, 8, 8)], {"good": True, "flat": False})

    x2 = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])
    # Gemm transB=1 ([N, K], axis 1) and transB=0 ([K, N], axis 0); wrong-axis sparse tensor.
    gt = _w((32, 64), 1, True, 2)
    g0 = _w((32, 16), 0, True, 3)
    wrong = _w((16, 16), 0, True, 4)  # sparse along axis 0 but consumed with transB=1 (axis 1)
    save("gemm", [
        helper.make_node("Gemm", ["x", "gt"], ["h1"], name="/fc1/Gemm", transB=1),
        helper.make_node("Gemm", ["h1", "g0"], ["h2"], name="/fc2/Gemm"),
        helper.make_node("Gemm", ["h2", "wrong"], ["y"], name="/fc3/Gemm", transB=1),
    ], {"gt": gt, "g0": g0, "wrong": wrong}, [x2], [y(16)], {"gt": True, "g0": True, "wrong": False})

    # MatMul with constant B [K, N] behind Cast (fp16 stored), Transpose, and Q/DQ (int8 fake-quant as stored fp32).
    mb = _w((64, 32), 0, True, 5, np.float16)
    tb = _w((32, 64), 1, True, 6)  # stored [N, K] then Transpose(perm 1,0) -> [K, N]: TensorRT axis 0 -> stored axis 1
    qb = _w((32, 32), 0, True, 7)
    dense = _w((32, 32), 0, False, 8)
    save("matmul", [
        helper.make_node("Cast", ["mb"], ["mb32"], name="/m1/Cast", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "mb32"], ["h1"], name="/m1/MatMul"),
        helper.make_node("Transpose", ["tb"], ["tbt"], name="/m2/Transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["h1", "tbt"], ["h2"], name="/m2/MatMul"),
        helper.make_node("QuantizeLinear", ["qb", "scale", "zp"], ["qbq"], name="/m3/weight_quantizer/QuantizeLinear", axis=1),
        helper.make_node("DequantizeLinear", ["qbq", "scale", "zp"], ["qbd"], name="/m3/weight_quantizer/DequantizeLinear", axis=1),
        helper.make_node("MatMul", ["h2", "qbd"], ["h3"], name="/m3/MatMul"),
        helper.make_node("MatMul", ["h3", "dense"], ["y"], name="/m4/MatMul"),
    ], {"mb": mb, "tb": tb, "qb": qb, "scale": np.full((32,), 0.05, np.float32), "zp": np.zeros((32,), np.int8), "dense": dense},
        [x2], [y(32)], {"mb": True, "tb": True, "qb": True, "dense": False})
    return cases
