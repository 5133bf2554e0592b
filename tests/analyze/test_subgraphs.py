"""Conv/Gemm/MatMul nodes inside If/Loop/Scan subgraphs are analysed and checked like top-level
ones, named with their subgraph path, and see the outer graphs' initializers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsekit.analyze.onnx_layers import analyze_onnx
from sparsekit.onnx_io.graphs import MAX_SUBGRAPH_DEPTH
from sparsekit.analyze.onnx_weights import find_weights
from sparsekit.cli.main import main
from sparsekit.errors import OnnxModelError
from sparsekit.sparsify.check import check_onnx
from tests.onnx_graphs import sparse_values, subgraph_model

NAMES = {
    "if": ["branch.then_branch/then", "branch.else_branch/else"],
    "loop": ["repeat.body/loop"],
    "scan": ["rows.body/scan"],
}


@pytest.mark.parametrize("kind", ["if", "loop", "scan"])
def test_subgraph_layers_are_checked_and_analysed(tmp_path, kind):
    path = subgraph_model(tmp_path / f"{kind}.onnx", kind)
    report = check_onnx(path, ["*"])
    assert sorted(layer.name for layer in report.layers) == sorted(NAMES[kind])
    assert all(layer.weight == "w" and layer.is_2to4 and layer.eligible and layer.subgraph for layer in report.layers)
    assert report.passed
    analysis = analyze_onnx(path)
    assert sorted(layer.name for layer in analysis.layers) == sorted(NAMES[kind])
    assert all(layer.shape == [16, 16] and layer.subgraph == layer.name.split("/")[0] for layer in analysis.layers)


def test_a_dense_subgraph_layer_fails_the_check(tmp_path, capsys):
    path = subgraph_model(tmp_path / "loop.onnx", "loop", sparse=False)
    assert main(["check", str(path), "--require", "repeat.body/*"]) == 3
    err = capsys.readouterr().err
    assert "repeat.body/loop" in err and len(err.strip().splitlines()) == 1


def test_subgraph_layers_are_in_the_json(tmp_path, capsys):
    path = subgraph_model(tmp_path / "if.onnx", "if")
    assert main(["analyze", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"]["layers"] == 2
    assert {layer["subgraph"] for layer in payload["layers"]} == {"branch.then_branch", "branch.else_branch"}


def _nested(depth: int) -> onnx.ModelProto:
    """``depth`` If nodes nested in each other's then-branch around one MatMul on the outer ``w``."""
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])
    inner = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/deep/MatMul")], "leaf", [], [out])
    for level in range(depth):
        name = f"y{level}"
        node = helper.make_node("If", ["cond"], [name], name=f"if{level}", then_branch=inner, else_branch=helper.make_graph(
            [helper.make_node("Identity", ["x"], [f"e{level}"])], f"else{level}", [], [helper.make_tensor_value_info(f"e{level}", TensorProto.FLOAT, [2, 16])]))
        inner = helper.make_graph([node], f"g{level}", [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 16])])
    graph = helper.make_graph(list(inner.node), "outer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])], list(inner.output),
                              [numpy_helper.from_array(sparse_values((16, 16)), "w"), numpy_helper.from_array(np.array(True), "cond")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_nesting_is_followed_to_a_bound(tmp_path):
    ok = _nested(3)
    (ref,) = find_weights(ok)
    assert ref.layer_name == "if2.then_branch/if1.then_branch/if0.then_branch/deep" and ref.initializer == "w"
    with pytest.raises(OnnxModelError, match=f"nested more than {MAX_SUBGRAPH_DEPTH} levels"):
        find_weights(_nested(MAX_SUBGRAPH_DEPTH + 1))
    path = tmp_path / "deep.onnx"
    onnx.save(_nested(MAX_SUBGRAPH_DEPTH + 1), str(path))
    with pytest.raises(OnnxModelError, match="nested more than"):
        check_onnx(path, ["*"])
