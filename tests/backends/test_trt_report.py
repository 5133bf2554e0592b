"""Parsers of TensorRT's build log and engine inspector, on texts in the formats TensorRT writes.

Log lines of both wordings are verbatim: TensorRT 8.x lines as trtexec and the 8.0 Python logger
print them (quoted in public NVIDIA/TensorRT issues #4056, #1403 and pytorch/TensorRT#1340), the
10.x/11.x count-only lines as trtexec --verbose prints them, and the list form as the TensorRT-RTX
library writes it (``(Sparsity) Found N layer(s) eligible to use sparse tactics: ...``). The
layer line is verbatim from a TensorRT-RTX 1.7 build log of the zoo CNN.
"""

import json

import pytest

from sparsekit.backends.trt_flavours import TENSORRT, TENSORRT_RTX
from sparsekit.backends.trt_report import build_trt_report, log_messages, parse_inspector_json, parse_layer_log, parse_sparsity_log

LOG_8 = [
    "[11/23/2026-10:00:00] [TRT] [I] Detected 1 inputs and 1 output network tensors.",
    "[11/23/2026-10:00:01] [TRT] [I] (Sparsity) Layers eligible for sparse math: /stages/stages.2/conv1/conv1.0/Conv + /stages/stages.2/conv1/conv1.2/Relu, /stages/stages.2/conv2/conv2.0/Conv, /head/Gemm",
    "[11/23/2026-10:00:02] [TRT] [I] (Sparsity) TRT inference plan picked sparse implementation for layers: /stages/stages.2/conv2/conv2.0/Conv",
]
LOG_8_VERBATIM = [
    "[08/05/2024-12:06:54] [I] [TRT] (Sparsity) Layers eligible for sparse math: MatMul_401, Conv_619 + Relu_620, Conv_622 + Relu_623, Conv_235 + Relu_236, Conv_626",
    "[TensorRT] INFO: (Sparsity) Layers eligible for sparse math: Conv_0",
    "[TensorRT] INFO: (Sparsity) TRT inference plan picked sparse implementation for layers:",
]
LOG_8_EMPTY = ["[09/16/2022-09:55:37] [I] [TRT] (Sparsity) Layers eligible for sparse math:", "[09/16/2022-09:55:37] [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers:"]
LOG_10_COUNTS = ["(Sparsity) Found 39 layer(s) eligible to use sparse tactics", "(Sparsity) Chose 0 layer(s) using sparse tactics"]
LOG_10 = [
    "[VERBOSE] Total number of blocks in optimized block assignment: 1",
    "[INFO] (Sparsity) Found 3 layer(s) eligible to use sparse tactics: /stages/stages.2/conv1/conv1.0/Conv + /stages/stages.2/conv1/conv1.2/Relu, /stages/stages.2/conv2/conv2.0/Conv, /head/Gemm",
    "[INFO] (Sparsity) Chose 1 layer(s) using sparse tactics: /stages/stages.2/conv2/conv2.0/Conv",
]
RTX_LAYER_LINE = 'Name: /stages/stages.2/conv2/conv2.0/Conv_myl0_14, LayerType: correlation, Inputs: [ { Name: __cma_mul8957_20_myl0, Dimensions: [-1,256,8,8], Strides: [16384,1,2048,256], StrideOrder: [3,0,2,1], Datatype: Half, Format: (NHWC) Channel major format }], Constants: [ { Name: __mye9222dconst_myl0, Dimensions: [256,256,3,3], Strides: [2304,1,768,256], StrideOrder: [3,0,2,1], Datatype: Half, Format: (NHWC) Channel major format }, { Name: __mye11223_const_myl0, Dimensions: [1], Strides: [1], StrideOrder: [0], Datatype: Float, Format: (Linear) Row major linear format }, { Name: __mye11227_const_myl0, Dimensions: [1], Strides: [1], StrideOrder: [0], Datatype: Float, Format: (Linear) Row major linear format }], Outputs: [ { Name: __myln_k_arg__bb1_21_myl0, Dimensions: [-1,256,8,8], Strides: [16384,1,2048,256], StrideOrder: [3,0,2,1], Datatype: Half, Format: (NHWC) Channel major format }], TacticName: __myelin_CASK_STUB, StreamId: 0, Metadata: [ONNX Layer: /stages/stages.2/conv2/conv2.0/Conv]'

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


def test_log_8x_wording():
    log = parse_sparsity_log(LOG_8)
    assert log.seen and log.wording == "8.x" and len(log.eligible) == 3 and log.picked == ["/stages/stages.2/conv2/conv2.0/Conv"]
    assert log.eligible[0] == "/stages/stages.2/conv1/conv1.0/Conv + /stages/stages.2/conv1/conv1.2/Relu"
    log = parse_sparsity_log(LOG_8_VERBATIM)
    assert log.eligible == ["MatMul_401", "Conv_619 + Relu_620", "Conv_622 + Relu_623", "Conv_235 + Relu_236", "Conv_626", "Conv_0"]
    assert log.picked == [] and log.picked_count == 0 and log.eligible_count == 6
    log = parse_sparsity_log(LOG_8_EMPTY)
    assert log.seen and log.eligible == [] and log.eligible_count == 0


def test_log_10x_11x_and_rtx_wording():
    log = parse_sparsity_log(LOG_10_COUNTS)
    assert log.seen and log.wording == "10.x+" and log.eligible_count == 39 and log.picked_count == 0
    assert log.eligible == [] and log.picked == []
    log = parse_sparsity_log(LOG_10)
    assert log.eligible_count == 3 and log.eligible[1] == "/stages/stages.2/conv2/conv2.0/Conv" and log.picked == ["/stages/stages.2/conv2/conv2.0/Conv"]
    assert not parse_sparsity_log(["[I] nothing here", "[VERBOSE] Layers:"]).seen


def test_a_layer_list_may_continue_on_unprefixed_lines():
    lines = ["[I] (Sparsity) Found 3 layer(s) eligible to use sparse tactics: /a/Conv,", "/b/Conv,", "/c/MatMul", "[I] next message", "not part of the list"]
    assert log_messages(lines)[1] == "[I] next message\nnot part of the list"
    log = parse_sparsity_log(lines)
    assert log.eligible == ["/a/Conv", "/b/Conv", "/c/MatMul"]


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


def test_layer_list_from_the_verbose_log():
    layers = parse_layer_log(["[VERBOSE] Layers:", RTX_LAYER_LINE, "", "I/O Tensors:"])
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "/stages/stages.2/conv2/conv2.0/Conv_myl0_14" and layer.layer_type == "correlation"
    assert layer.tactic == "__myelin_CASK_STUB" and layer.onnx_nodes == ["/stages/stages.2/conv2/conv2.0/Conv"]
    assert layer.has_sparse_weights is None and not layer.sparse_tactic


@pytest.fixture(scope="module")
def cnn_fp16(exported):
    return exported[("cnn", "fp16")].path


def test_report_joins_onnx_check_with_trt_evidence(cnn_fp16):
    for log_lines in (LOG_8, LOG_10):
        report = build_trt_report(cnn_fp16, log_lines, INSPECTOR_10, sparse_requested=True)
        layers = {layer.name: layer for layer in report.layers}
        fused = layers["stages.2.conv1.0"]
        assert fused.onnx_2to4 and fused.eligible and not fused.sparse_kernel
        assert fused.trt_layer.endswith("Relu") and fused.has_sparse_weights
        picked = layers["stages.2.conv2.0"]
        assert picked.eligible and picked.sparse_kernel and "sparse" in picked.tactic
        assert layers["head"].eligible and not layers["head"].onnx_2to4
        assert not layers["stem.0.0"].eligible
        s = report.summary
        assert s["eligible"] == 3 and s["sparse_kernel"] == 1 and s["eligible_reported"] == 3 and s["chosen_reported"] == 1
        assert 0 < s["sparse_kernel_flop_share"] < s["onnx_2to4_flop_share"] <= 1
        assert report.known and report.note == "" and "| `stages.2.conv2.0` |" in report.to_markdown()


def test_counts_without_lists(cnn_fp16):
    report = build_trt_report(cnn_fp16, LOG_10_COUNTS, None, sparse_requested=True)
    assert report.log_seen and report.sparsity_log == {"wording": "10.x+", "eligible_count": 39, "picked_count": 0}
    assert all(layer.sparse_kernel is False for layer in report.layers)  # "Chose 0": no layer runs sparse
    assert all(layer.eligible is None for layer in report.layers)  # 39 eligible, but not which
    assert "found 39 eligible" in report.headline()


def test_missing_log_is_said_without_blaming_the_capture(cnn_fp16):
    report = build_trt_report(cnn_fp16, [], INSPECTOR_10, sparse_requested=True)
    assert not report.log_seen and "VERBOSE build log" in report.note and "inspector" in report.note and "INFO" not in report.note
    layers = {layer.name: layer for layer in report.layers}
    assert layers["stages.2.conv2.0"].sparse_kernel and layers["stages.2.conv2.0"].eligible is None
    assert build_trt_report(cnn_fp16, [], None, sparse_requested=False).note == ""


def test_ahead_of_time_rtx_report_says_it_cannot_know(cnn_fp16):
    report = build_trt_report(cnn_fp16, ["[VERBOSE] Layers:", RTX_LAYER_LINE], None, sparse_requested=True, flavour=TENSORRT_RTX)
    assert report.backend == "tensorrt-rtx" and not report.known
    assert "target GPU" in report.note and "unknown" in report.note and "log" not in report.note.lower()
    layers = {layer.name: layer for layer in report.layers}
    assert all(layer.eligible is None and layer.sparse_kernel is None for layer in report.layers)
    assert layers["stages.2.conv2.0"].trt_layer == "/stages/stages.2/conv2/conv2.0/Conv_myl0_14"  # the layer map still comes from the log
    assert "decided on the target GPU" in report.to_markdown()
    on_gpu = build_trt_report(cnn_fp16, LOG_10, INSPECTOR_10, True, TENSORRT_RTX, on_target_gpu=True)
    assert on_gpu.known and on_gpu.summary["sparse_kernel"] == 1
    assert build_trt_report(cnn_fp16, LOG_10, INSPECTOR_10, True, TENSORRT).backend == "tensorrt"
