"""Small ONNX files built in code for the backend tests: an op no TensorRT parser knows, an fp8
Q/DQ MatMul with 2:4 weights, and external-data layouts (the one ``onnx.save_model(...,
save_as_external_data=True)`` writes, and hostile variants of it)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

RTX_REASON = None if importlib.util.find_spec("tensorrt_rtx") is not None else "tensorrt-rtx is not installed (pip install 'sparsekit[tensorrt-rtx]'; the dev extra installs it)"
# CI installs the dev extra, so there a missing TensorRT-RTX fails these tests instead of skipping them.
needs_rtx = pytest.mark.skipif(RTX_REASON is not None and not os.environ.get("CI"), reason=RTX_REASON or "")


def unsupported_op_onnx(path: Path) -> Path:
    """Relu followed by ``com.example::FancyUnknownOp`` (node ``mystery0``), which no parser imports."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])
    nodes = [helper.make_node("Relu", ["input"], ["r"], name="relu0"), helper.make_node("FancyUnknownOp", ["r"], ["output"], name="mystery0", domain="com.example")]
    model = helper.make_model(helper.make_graph(nodes, "unsupported", [x], [y]), opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(path))
    return path


def fp8_matmul_onnx(path: Path, k: int = 64, n: int = 64) -> Path:
    """``input [batch, k] @ W [k, n]`` with fp8 (E4M3) Q/DQ on both sides; W is 2:4 along k."""
    w = np.random.default_rng(0).normal(size=(k, n)).astype(np.float32)
    w.reshape(k // 4, 4, n)[:, :2, :] = 0  # two zeros in every group of 4 along the reduction axis
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", k])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n])
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(0.05, np.float32), "xs"), numpy_helper.from_array(np.array(0.05, np.float32), "ws"), helper.make_tensor("zp", TensorProto.FLOAT8E4M3FN, [], [0.0])]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "xs", "zp"], ["xq"], name="qx"), helper.make_node("DequantizeLinear", ["xq", "xs", "zp"], ["xd"], name="dqx"),
        helper.make_node("QuantizeLinear", ["W", "ws", "zp"], ["wq"], name="qw"), helper.make_node("DequantizeLinear", ["wq", "ws", "zp"], ["wd"], name="dqw"),
        helper.make_node("MatMul", ["xd", "wd"], ["output"], name="/fc/MatMul"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "fp8", [x], [y], inits), opset_imports=[helper.make_opsetid("", 19)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def save_with_external_data(src: Path, folder: Path, name: str = "model.onnx", location: str = "model.onnx.data") -> Path:
    """``src`` saved into ``folder`` the way large exports are: weights in ``location`` next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src))
    onnx.save_model(model, str(folder / name), save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=0)
    return folder / name


def set_location(onnx_path: Path, location: str) -> Path:
    """Point every external tensor of ``onnx_path`` at ``location`` (the data files are untouched)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx_path.write_bytes(model.SerializeToString())  # the protobuf only: nothing resolves the location
    return onnx_path
