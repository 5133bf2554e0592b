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


# -- unusual and hostile files ----------------------------------------------------------------------

def save_matmul(path: Path, weights: dict[str, object], nodes=(), k: int = 16, n: int = 8, opset: int = 21, check: bool = True) -> Path:
    """Save ``y = x @ <last node's output or the single weight>`` with TensorProto weights.

    Args:
        path: where to write the file.
        weights: initializer name -> ``TensorProto`` or numpy array.
        nodes: nodes between the weights and the MatMul; the MatMul reads ``w`` when empty, else
            the first output of the last node.
        k / n: the MatMul's reduction and output sizes (x is ``[2, k]``).
        opset: default-domain opset (21 accepts int4 and fp8 Q/DQ).
        check: run ``onnx.checker.check_model`` on the model before saving.
    """
    inits = [w if isinstance(w, onnx.TensorProto) else numpy_helper.from_array(np.asarray(w), name) for name, w in weights.items()]
    for name, t in zip(weights, inits):
        t.name = name
    nodes = list(nodes)
    b = nodes[-1].output[0] if nodes else "w"
    nodes.append(helper.make_node("MatMul", ["x", b], ["y"], name="/fc/MatMul"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def sparse_values(shape, axis: int = 0, seed: int = 0, dense: bool = False) -> np.ndarray:
    """Non-zero normal values with 2 of every 4 along ``axis`` zeroed (unless ``dense``)."""
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    w = np.where(np.abs(w) < 0.1, 0.5, w)
    return w if dense else w * magnitude_mask(w, axis)


def lying_initializer(name: str = "w", dims=(32768, 16384), nbytes: int = 16) -> onnx.TensorProto:
    """A float32 initializer that declares ``dims`` but stores only ``nbytes`` of raw data."""
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    t.raw_data = b"\x00" * nbytes
    return t


def subgraph_model(path: Path, kind: str, sparse: bool = True) -> Path:
    """A model whose only MatMul lives inside an ``If`` (both branches), ``Loop`` or ``Scan`` body,
    reading the weight ``w [16, 16]`` from the OUTER graph's initializers."""
    w = sparse_values((16, 16), 0, seed=3, dense=not sparse)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])
    inits = [numpy_helper.from_array(w, "w")]

    def body(name: str, out: str, inputs=(), outputs=(), extra=()):
        mm = helper.make_node("MatMul", ["x", "w"], [out], name=f"/{name}/MatMul")
        return helper.make_graph([mm, *extra], name, list(inputs), [helper.make_tensor_value_info(out, TensorProto.FLOAT, [2, 16]), *outputs])

    if kind == "if":
        inits.append(numpy_helper.from_array(np.array(True), "cond"))
        node = helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=body("then", "t_out"), else_branch=body("else", "e_out"))
    elif kind == "loop":
        inits += [numpy_helper.from_array(np.array(2, np.int64), "trips"), numpy_helper.from_array(np.array(True), "go")]
        it = helper.make_tensor_value_info("i", TensorProto.INT64, [])
        cin = helper.make_tensor_value_info("c_in", TensorProto.BOOL, [])
        cout = helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])
        g = helper.make_graph([helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("MatMul", ["x", "w"], ["b_out"], name="/loop/MatMul")], "body", [it, cin],
                              [cout, helper.make_tensor_value_info("b_out", TensorProto.FLOAT, [2, 16])])
        node = helper.make_node("Loop", ["trips", "go"], ["y_scan"], name="repeat", body=g)
        y = helper.make_tensor_value_info("y_scan", TensorProto.FLOAT, [2, 2, 16])
    elif kind == "scan":
        s_in = helper.make_tensor_value_info("row", TensorProto.FLOAT, [16])
        g = helper.make_graph([helper.make_node("Unsqueeze", ["row", "ax"], ["row2"]), helper.make_node("MatMul", ["row2", "w"], ["s_out"], name="/scan/MatMul")], "scan_body", [s_in],
                              [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, 16])], [numpy_helper.from_array(np.array([0], np.int64), "ax")])
        node = helper.make_node("Scan", ["x"], ["y"], name="rows", body=g, num_scan_inputs=1)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 16])
    else:
        raise ValueError(kind)
    model = helper.make_model(helper.make_graph([node], "outer", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
