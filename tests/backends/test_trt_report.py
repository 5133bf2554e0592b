"""Parsers of TensorRT's build log and engine inspector, on texts in the documented formats."""

import json

import pytest

from sparsekit.backends.trt_report import build_trt_report, parse_inspector_json, parse_sparsity_log

LOG_10 = [
    "[11/23/2026-10:00:00] [TRT] [I] Detected 1 inputs and 1 output network tensors.",
    "[11/23/2026-10:00:01] [TRT] [I] (Sparsity) Layers eligible for sparse math: /stages/stages.2/conv1/conv1.0/Conv + /stages/stages.2/conv1/conv1.2/Relu, /stages/stages.2/conv2/conv2.0/Conv, /head/Gemm",
    "[11/23/2026-10:00:02] [TRT] [I] (Sparsity) TRT inference plan picked sparse implementation for layers: /stages/stages.2/conv2/conv2.0/Conv",
]
LOG_11 = ["[INFO] (Sparsity) Layers eligible for sparse math: /layers.0/query/MatMul", "[INFO] (Sparsity) TRT inference plan picked sparse implementation for layers: "]

INSPECTOR_10 = {
    "Layers": [
        {"Name": "/stages/stages.2/conv1/conv1.0/Conv + /stages/stages.2/conv1/conv1.2/Relu", "LayerType": "CaskConvolution", "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize128x128x32", "HasSparseWeights": 1,
         "Metadata": "[ONNX Layer: /stages/stages.2/conv1/conv1.0/Conv]\u001e[ONNX Layer: /stages/stages.2/conv1/conv1.2/Relu]"},
        {"Name": "/stages/stages.2/conv2/conv2.0/Conv", "LayerType": "CaskConvolution", "TacticName": "sm80_xmma_fprop_sparse_conv_interleaved_i8i8_f16", "HasSparseWeights": 1, "Metadata": "[ONNX Layer: /stages/stages.2/conv2/conv2.0/Conv]"},
        {"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat", "TacticName": "", "Metadata": ""},
    ],
    "Bindings": ["input", "output"],
}
INSPECTOR_11 = {
    "Layers": [{"Name": "/layers.0/query/MatMul", "LayerType": "gemm", "TacticName": "sm90_xmma_sptensor_gemm_f16f16", "AllowSparse": 1, "Metadata": "[ONNX Layer: /layers.0/query/MatMul]"}],
    "I/O Tensors": [{"Name": "input_ids"}, {"Name": "output"}],
}


def test_log_10x_and_11x():
    log = parse_sparsity_log(LOG_10)
    assert log.seen and len(log.eligible) == 3 and log.picked == ["/stages/stages.2/conv2/conv2.0/Conv"]
    log = parse_sparsity_log(LOG_11)
    assert log.eligible == ["/layers.0/query/MatMul"] and log.picked == []
    assert not parse_sparsity_log(["[I] nothing here"]).seen


def test_inspector_10x_and_11x():
    layers, io = parse_inspector_json(json.dumps(INSPECTOR_10))
    assert io == ["input", "output"]
    assert layers[0].onnx_nodes == ["/stages/stages.2/conv1/conv1.0/Conv", "/stages/stages.2/conv1/conv1.2/Relu"]
    assert layers[0].has_sparse_weights and not layers[0].sparse_tactic
    assert layers[1].sparse_tactic
    assert layers[2].has_sparse_weights is None
    layers, io = parse_inspector_json(INSPECTOR_11)
    assert io == ["input_ids", "output"] and layers[0].has_sparse_weights and layers[0].sparse_tactic
    layers, _ = parse_inspector_json({"Layers": ["/a/Conv + /a/Relu"], "Bindings": []})
    assert layers[0].onnx_nodes == ["/a/Conv", "/a/Relu"] and layers[0].tactic == ""


@pytest.fixture(scope="module")
def cnn_fp16(tmp_path_factory):
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    loaded = load_model("cnn")
    loaded.model, _ = sparsify_(loaded.model, "magnitude", exclude=["head"])
    return export_(loaded, "fp16", tmp_path_factory.mktemp("r") / "cnn.fp16.onnx").path


def test_report_joins_onnx_check_with_trt_evidence(cnn_fp16):
    report = build_trt_report(cnn_fp16, LOG_10, INSPECTOR_10, sparse_requested=True)
    layers = {layer.name: layer for layer in report.layers}
    fused = layers["stages.2.conv1.0"]
    assert fused.onnx_2to4 and fused.eligible and not fused.sparse_kernel
    assert fused.trt_layer.endswith("Relu") and fused.has_sparse_weights
    picked = layers["stages.2.conv2.0"]
    assert picked.eligible and picked.sparse_kernel and "sparse" in picked.tactic
    assert layers["head"].eligible and not layers["head"].onnx_2to4
    assert not layers["stem.0.0"].eligible
    s = report.summary
    assert s["eligible"] == 3 and s["sparse_kernel"] == 1
    assert 0 < s["sparse_kernel_flop_share"] < s["onnx_2to4_flop_share"] <= 1
    assert "| `stages.2.conv2.0` |" in report.to_markdown()


def test_missing_log_is_said(cnn_fp16):
    report = build_trt_report(cnn_fp16, [], INSPECTOR_10, sparse_requested=True)
    assert not report.log_seen and "INFO" in report.note
    layers = {layer.name: layer for layer in report.layers}
    assert layers["stages.2.conv2.0"].sparse_kernel and layers["stages.2.conv2.0"].eligible is None
