import pytest

from sparsekit.analyze.onnx_weights import find_weights, module_from_node_name
from sparsekit.onnx_io.load import load_onnx
from sparsekit.errors import OnnxModelError
from tests.onnx_graphs import build_graphs


@pytest.mark.parametrize("name, module", [
    ("/layers.0/ffn_in/MatMul", "layers.0.ffn_in"),
    ("/stages/stages.0/conv1/conv1.0/Conv", "stages.0.conv1.0"),
    ("/stem/stem.0/stem.0.0/Conv", "stem.0.0"),
    ("/encoder/layers.3/query/MatMul", "encoder.layers.3.query"),
    ("/head/Gemm", "head"),
    ("Gemm_12", ""),
])
def test_module_from_node_name(name, module):
    assert module_from_node_name(name) == module


def test_axes_through_cast_transpose_and_qdq(tmp_path):
    build_graphs(tmp_path)
    refs = {r.initializer: r for r in find_weights(load_onnx(tmp_path / "matmul.onnx"))}
    assert refs["mb"].axis == 0 and refs["mb"].via == ("Cast",) and refs["mb"].dtype == "float16"
    assert refs["tb"].axis == 1 and refs["tb"].via == ("Transpose",)
    assert refs["qb"].via == ("DequantizeLinear", "QuantizeLinear") and refs["qb"].module == "m3"
    gemm = {r.initializer: r.axis for r in find_weights(load_onnx(tmp_path / "gemm.onnx"))}
    assert gemm == {"gt": 1, "g0": 0, "wrong": 1}
    conv = {r.initializer: r.axis for r in find_weights(load_onnx(tmp_path / "conv.onnx"))}
    assert conv == {"good": 1, "flat": 1}


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(OnnxModelError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    with pytest.raises(OnnxModelError, match="not a readable ONNX"):
        load_onnx(bad)
