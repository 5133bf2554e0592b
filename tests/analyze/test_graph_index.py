"""ONNX graph analysis goes through one index per graph: correct with unnamed or duplicate node
names, finite on hostile graphs (cycles, endless pass-through chains), and the scaling benchmark runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sparsekit.analyze.onnx_layers import analyze_onnx
from sparsekit.analyze.onnx_weights import MAX_TRACE_DEPTH, find_weights
from sparsekit.sparsify.check import check_onnx

ROOT = Path(__file__).resolve().parents[2]


def _save(path: Path, nodes, inits: dict[str, np.ndarray], x_dims, y_dims) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_dims)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_unnamed_nodes_keep_their_own_flops_and_rows(tmp_path):
    w1, w2 = np.ones((16, 64), np.float32), np.ones((64, 8), np.float32)
    path = _save(tmp_path / "unnamed.onnx", [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name=""),  # the exporter may leave names empty
        helper.make_node("MatMul", ["h", "w2"], ["y"], name=""),
    ], {"w1": w1, "w2": w2}, [4, 16], [4, 8])
    layers = analyze_onnx(path).layers
    assert [layer.flops for layer in layers] == [2 * 4 * 64 * 16, 2 * 4 * 8 * 64]
    assert [layer.gemm_rows for layer in layers] == [4, 4]
    assert abs(sum(layer.flop_share for layer in layers) - 1.0) < 1e-6


def test_a_cycle_of_pass_through_nodes_terminates(tmp_path):
    path = _save(tmp_path / "cycle.onnx", [
        helper.make_node("Identity", ["b"], ["a"], name="/i1/Identity"),
        helper.make_node("Identity", ["a"], ["b"], name="/i2/Identity"),
        helper.make_node("MatMul", ["x", "a"], ["y"], name="/fc/MatMul"),
    ], {}, [4, 16], [4, 16])
    assert find_weights(onnx.load(str(path))) == []


def test_pass_through_chains_are_followed_to_a_bounded_depth(tmp_path):
    def chain(length: int) -> Path:
        nodes = [helper.make_node("Identity", ["w" if i == 0 else f"t{i - 1}"], [f"t{i}"], name=f"/c/Identity_{i}") for i in range(length)]
        nodes.append(helper.make_node("MatMul", ["x", f"t{length - 1}"], ["y"], name="/fc/MatMul"))
        return _save(tmp_path / f"chain{length}.onnx", nodes, {"w": np.ones((16, 16), np.float32)}, [4, 16], [4, 16])

    assert [r.initializer for r in find_weights(onnx.load(str(chain(MAX_TRACE_DEPTH))))] == ["w"]
    assert find_weights(onnx.load(str(chain(MAX_TRACE_DEPTH + 1)))) == []


def test_grouped_conv_is_not_eligible_in_onnx(tmp_path):
    w = np.ones((32, 8, 3, 3), np.float32)  # 8 input channels per group: a multiple of 4, but grouped
    path = _save(tmp_path / "grouped.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv", group=2, pads=[1, 1, 1, 1])], {"w": w}, [1, 16, 8, 8], [1, 32, 8, 8])
    (layer,) = check_onnx(path, ["*"]).layers
    assert not layer.eligible and "grouped" in layer.reason


def test_scaling_benchmark_runs_and_checks_every_layer(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "graph_scaling_cpu.py"), "--sizes", "300", "900", "--repeats", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "graph_scaling.json").read_text())["sizes"]
    assert [r["nodes"] for r in rows] == [301, 901]
    for r in rows:
        assert r["layers"] == r["required"] == r["report_layers"] == (r["nodes"] - 1) // 3 and r["passed"]
    assert "| 901 |" in (tmp_path / "graph_scaling.md").read_text()
