"""2:4 is judged on the STORED values of every weight type (fp8 +0/-0 bit patterns, packed int4,
a quantized weight's zero point), and TensorRT eligibility is reported beside it, not folded in."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

from sparsekit.cli.main import main
from sparsekit.sparsify.check import check_onnx
from tests.onnx_graphs import save_matmul, sparse_values


def _cast(stored: np.ndarray):
    """Weights ``{"ws": stored}`` read through ``Cast(to=float)``."""
    return {"ws": stored}, [helper.make_node("Cast", ["ws"], ["w"], to=TensorProto.FLOAT, name="/fc/Cast")]


def _dq(stored: np.ndarray, zero_point=None, **attrs):
    """Weights read through ``DequantizeLinear(stored, 0.1[, zero_point])``."""
    weights = {"ws": stored, "s": np.float32(0.1)}
    if zero_point is not None:
        weights["zp"] = zero_point
        scale = np.full(np.shape(zero_point), 0.1, np.float32)
        weights["s"] = scale if np.ndim(zero_point) else np.float32(0.1)
    inputs = ["ws", "s"] + (["zp"] if zero_point is not None else [])
    return weights, [helper.make_node("DequantizeLinear", inputs, ["w"], name="/fc/weight_quantizer/DequantizeLinear", **attrs)]


def _levels(w: np.ndarray) -> np.ndarray:
    """Signed integer levels in [-7, 7] that are 0 exactly where ``w`` is 0."""
    q = np.clip(np.round(w * 3), -7, 7).astype(np.int8)
    q[(w != 0) & (q == 0)] = 1
    return q


SPARSE = sparse_values((16, 8), 0, seed=1)  # MatMul B [K=16, N=8]: TensorRT groups axis 0
DENSE = sparse_values((16, 8), 0, seed=1, dense=True)


def _negative_zeros(w: np.ndarray, dtype) -> np.ndarray:
    """``w`` stored as ``dtype`` with every zero written as -0 (sign bit set)."""
    out = w.astype(dtype)
    out[w == 0] = -0.0
    assert np.signbit(out.astype(np.float32)[w == 0]).all()
    return out


CASES = {
    # name: (weights and nodes, TensorRT-eligible, what counts as zero)
    "fp8_e4m3fn": (_cast(SPARSE.astype(ml_dtypes.float8_e4m3fn)), True, "+0 or -0 bit pattern"),
    "fp8_e4m3fn_minus0": (_cast(_negative_zeros(SPARSE, ml_dtypes.float8_e4m3fn)), True, "+0 or -0 bit pattern"),
    "fp8_e5m2_minus0": (_cast(_negative_zeros(SPARSE, ml_dtypes.float8_e5m2)), False, "+0 or -0 bit pattern"),
    "fp8_e4m3fn_dq": (_dq(SPARSE.astype(ml_dtypes.float8_e4m3fn)), True, "+0 or -0 bit pattern"),
    "bf16_minus0": (_cast(_negative_zeros(SPARSE, ml_dtypes.bfloat16)), True, "+0 or -0 bit pattern"),
    "fp16_minus0": (_cast(_negative_zeros(SPARSE, np.float16)), True, "0.0"),
    "int4": (_dq(_levels(SPARSE).astype(ml_dtypes.int4)), False, "0"),
    "uint4_zp8": (_dq((_levels(SPARSE) + 8).astype(np.uint8).astype(ml_dtypes.uint4), np.array(8, ml_dtypes.uint4)), False, "zero point 8"),
    "int8_zp0": (_dq(_levels(SPARSE), np.int8(0)), True, "zero point 0"),
    "int8_no_zp": (_dq(_levels(SPARSE)), True, "0"),
    "uint8_zp128": (_dq((_levels(SPARSE).astype(np.int16) + 128).astype(np.uint8), np.uint8(128)), False, "zero point 128"),
    "uint8_per_channel": (_dq((_levels(SPARSE).astype(np.int16) + np.arange(100, 108)).astype(np.uint8), np.arange(100, 108).astype(np.uint8), axis=1), False, "per-channel zero points"),
    "uint8_blocked": (_dq((_levels(SPARSE).astype(np.int16) + np.repeat(np.arange(120, 152).reshape(4, 8), 4, axis=0)).astype(np.uint8),
                          np.arange(120, 152).reshape(4, 8).astype(np.uint8), axis=0, block_size=4), False, "per-channel zero points"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conforming_weights_are_2to4_on_their_stored_values(tmp_path, name):
    (weights, nodes), eligible, zero = CASES[name]
    path = save_matmul(tmp_path / f"{name}.onnx", weights, nodes)
    (layer,) = check_onnx(path, ["*"]).layers
    assert layer.zero == zero
    assert layer.is_2to4 and layer.conforming == layer.groups == 32, (layer.conforming, layer.groups)
    assert layer.eligible is eligible and layer.trt_sparse is eligible, layer.reason


@pytest.mark.parametrize("name", ["fp8_e4m3fn", "int4", "uint4_zp8", "uint8_zp128", "uint8_per_channel"])
def test_dense_weights_of_every_type_fail(tmp_path, name):
    dense = {"fp8_e4m3fn": _cast(DENSE.astype(ml_dtypes.float8_e4m3fn)), "int4": _dq(_levels(DENSE).astype(ml_dtypes.int4)),
             "uint4_zp8": _dq((_levels(DENSE) + 8).astype(np.uint8).astype(ml_dtypes.uint4), np.array(8, ml_dtypes.uint4)),
             "uint8_zp128": _dq((_levels(DENSE).astype(np.int16) + 128).astype(np.uint8), np.uint8(128)),
             "uint8_per_channel": _dq((_levels(DENSE).astype(np.int16) + np.arange(100, 108)).astype(np.uint8), np.arange(100, 108).astype(np.uint8), axis=1)}[name]
    path = save_matmul(tmp_path / f"dense_{name}.onnx", *dense)
    report = check_onnx(path, ["*"])
    assert not report.passed and not report.layers[0].is_2to4


def test_stored_zeros_that_are_not_the_zero_point_do_not_count(tmp_path):
    stored = np.where(SPARSE == 0, 0, 200).astype(np.uint8)  # stored 0s in 2:4 places, but the zero is 128
    path = save_matmul(tmp_path / "zp.onnx", *_dq(stored, np.uint8(128)))
    (layer,) = check_onnx(path, ["*"]).layers
    assert not layer.is_2to4 and layer.conforming == 0 and layer.zero == "zero point 128"


def test_a_zero_point_computed_at_run_time_leaves_the_weight_unjudged(tmp_path):
    weights, nodes = _dq(_levels(SPARSE), np.int8(0))
    nodes.insert(0, helper.make_node("Identity", ["zp"], ["zp_run"], name="/fc/Identity"))
    nodes[-1].input[2] = "zp_run"
    path = save_matmul(tmp_path / "runtime_zp.onnx", weights, nodes)
    (layer,) = check_onnx(path, ["*"]).layers
    assert not layer.is_2to4 and "computed at run time" in layer.zero


def test_cli_says_2to4_yes_with_eligibility_in_its_own_column(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    path = save_matmul(tmp_path / "e5m2.onnx", *CASES["fp8_e5m2_minus0"][0])
    assert main(["check", str(path), "--require", "*"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "float8_e5m2" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[7:10] == ["yes", "no", "ok"], cells  # 2:4, TRT eligible, required
    assert "1 of 1 weights are 2:4 (0 of them TensorRT-eligible)" in out
    assert "TensorRT cannot run it sparse: weight dtype float8_e5m2" in out
    assert main(["check", str(path), "--require", "*", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (layer,) = payload["layers"]
    assert layer["is_2to4"] and not layer["eligible"] and not layer["trt_sparse"] and payload["passed"]
    assert payload["summary"]["required_not_eligible"] == ["fc"]


def test_fp8_e4m3fn_is_trt_eligible_in_analyze(tmp_path, capsys):
    path = save_matmul(tmp_path / "e4m3.onnx", *CASES["fp8_e4m3fn"][0])
    assert main(["analyze", str(path), "--json"]) == 0
    (layer,) = json.loads(capsys.readouterr().out)["layers"]
    assert layer["trt"]["ok"] and layer["dtype"] == "float8_e4m3fn"
