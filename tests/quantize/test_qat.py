"""INT8 on top of 2:4: calibration methods, per-layer opt-out, and QAT that keeps 2:4 into the ONNX."""

from __future__ import annotations

import copy

import pytest
import torch

from sparsekit.errors import SparsekitError
from sparsekit.quantize.ptq import CALIB_METHODS, quantize_
from sparsekit.recover.finetune import TrainingConfig
from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_
from sparsekit.sparsify.check import check_model, check_onnx
from sparsekit.sparsify.sparsify import sparsify_


def _quantizers(model):
    from modelopt.torch.quantization.nn import TensorQuantizer

    return {n: q for n, q in model.named_modules() if isinstance(q, TensorQuantizer)}


@pytest.fixture(scope="module")
def sparse_digits(digits_dense):
    task, loaded, _ = digits_dense
    model, _ = sparsify_(copy.deepcopy(loaded.model), "magnitude", exclude=["head"])
    return task, loaded, model


def test_calibration_methods_give_their_own_finite_ranges(sparse_digits):
    task, _, model = sparse_digits
    calib = task.calibration(128)
    amax = {}
    for method in CALIB_METHODS:
        q = _quantizers(quantize_(copy.deepcopy(model), calib, "int8", method=method))
        amax[method] = float(q["stages.1.conv2.0.input_quantizer"].amax)
        assert all(torch.isfinite(x.amax).all() for x in q.values() if x.is_enabled and x.amax is not None), method
    # histogram methods clip below the observed maximum; entropy returns a bin edge, and ModelOpt's
    # histogram grows in whole bins (2048 over the first batch's range), so its last edge can sit up
    # to one bin width above the maximum
    one_bin = amax["max"] / 2048
    assert amax["percentile"] < amax["max"]
    assert amax["entropy"] <= amax["max"] + one_bin
    assert len({round(v, 5) for v in amax.values()}) >= 3


def test_unknown_calibration_method_is_refused(sparse_digits):
    task, _, model = sparse_digits
    with pytest.raises(SparsekitError, match="calibration method"):
        quantize_(copy.deepcopy(model), task.calibration(16), method="minmax")


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_fp8_with_an_integer_grid_search_is_refused_before_any_work(sparse_digits, method):
    """ModelOpt's entropy / mse searches raise a TypeError on e4m3; the kit says so up front."""
    task, _, model = sparse_digits
    with pytest.raises(SparsekitError, match="fp8") as info:
        quantize_(copy.deepcopy(model), task.calibration(16), precision="fp8", method=method)
    assert "max or percentile" in info.value.fix


def test_per_layer_opt_out_leaves_those_layers_in_float(sparse_digits):
    task, _, model = sparse_digits
    q = _quantizers(quantize_(copy.deepcopy(model), task.calibration(64), "int8", disable=["stages.2.*"]))
    assert not q["stages.2.conv1.0.weight_quantizer"].is_enabled
    assert q["stages.1.conv1.0.weight_quantizer"].is_enabled


def test_qat_keeps_2to4_into_the_onnx_and_keeps_accuracy(sparse_digits, tmp_path):
    from sparsekit.export.export import export_
    from sparsekit.models.source import LoadedModel

    task, loaded, model = sparse_digits
    dense = task.evaluate(loaded.model)
    calib = task.calibration(128)
    qat = quantize_(copy.deepcopy(model), calib, "int8")
    qat, report = finetune_on_task_(qat, task, TrainingConfig(epochs=1, lr=1e-4), 64, teacher=loaded.model, distill=DistillConfig(student_loss_weight=0.5))
    assert report.steps > 0 and report.masked_layers == 8
    assert check_model(qat).passed
    assert task.evaluate(qat).metrics["accuracy"] >= dense.metrics["accuracy"] - 3
    result = export_(LoadedModel(qat, loaded.inputs, loaded.source), "int8", tmp_path / "qat.onnx", calib=calib)
    required = [x for x in result.check.layers if x.required]
    assert len(required) == 8 and all(x.is_2to4 for x in required)
    again = check_onnx(tmp_path / "qat.onnx")
    assert sum(1 for x in again.layers if x.is_2to4) >= 8
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "qat.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_a_quantized_checkpoint_restores_its_quantizers(sparse_digits, tmp_path):
    from sparsekit.models.checkpoint import load_checkpoint, save_checkpoint
    from sparsekit.models.source import LoadedModel

    task, loaded, model = sparse_digits
    q = quantize_(copy.deepcopy(model), task.calibration(64), "int8")
    save_checkpoint(LoadedModel(q, loaded.inputs, loaded.source), tmp_path / "q.pt")
    back = load_checkpoint(tmp_path / "q.pt").model
    x = task.calibration(8)[0][0]
    with torch.no_grad():
        assert torch.allclose(q(x), back(x), atol=1e-5)
    assert len(_quantizers(back)) == len(_quantizers(q))
    assert check_model(back).passed
