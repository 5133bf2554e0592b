import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from sparsekit.errors import ExportError, OutputExistsError
from sparsekit.export.export import _verify, export_, report_path
from sparsekit.export.parity import ort_session
from sparsekit.models.source import load_model
from sparsekit.sparsify.check import check_onnx
from sparsekit.sparsify.sparsify import sparsify_
from tests.conftest import DATA


def test_all_variants_keep_2to4_and_match(exported, sparse_models):
    for (name, precision), r in exported.items():
        assert r.check.passed and r.sparsified, (name, precision)
        assert r.parity.passed
        if precision == "fp32":
            assert r.parity.max_rel < 1e-4
        assert (r.parity.noise_rel_l2 is not None) == (precision == "int8")
        assert json.loads(report_path(r.path).read_text())["precision"] == precision


def test_fp16_variant_is_typed_fp16_with_fp32_io(exported):
    model = onnx.load(str(exported[("cnn", "fp16")].path))
    weights = {t.name: t.data_type for t in model.graph.initializer}
    refs = [layer.weight for layer in check_onnx(exported[("cnn", "fp16")].path).layers]
    assert all(weights[w] == onnx.TensorProto.FLOAT16 for w in refs)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_int8_variant_stores_int8_weights_behind_dequantize(exported):
    """Activations keep Q/DQ pairs; each weight is an int8 initializer read by a DequantizeLinear,
    and 2:4 holds in those int8 values."""
    r = exported[("bert", "int8")]
    model = onnx.load(str(r.path))
    nodes = list(model.graph.node)
    assert sum(n.op_type == "DequantizeLinear" for n in nodes) >= 2 * len(r.sparsified)
    assert sum(n.op_type == "QuantizeLinear" for n in nodes) >= len(r.sparsified)
    int8 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    layers = {layer.name: layer for layer in r.check.layers}
    for name in r.sparsified:
        assert layers[name].is_2to4 and layers[name].dtype == "int8" and layers[name].weight in int8


def test_dynamic_batch(exported, sparse_models):
    r = exported[("bert", "fp32")]
    session = ort_session(r.path)
    spec = sparse_models["bert"].inputs
    for batch in (1, 5):
        (x,) = spec.random(batch=batch, seed=9)
        out = session.run(None, {"input_ids": x.numpy()})[0]
        with torch.no_grad():
            ref = sparse_models["bert"].model(x).numpy()
        assert out.shape[0] == batch and np.allclose(out, ref, atol=1e-4)


def test_user_factory_model_full_chain(tmp_path):
    loaded = load_model(f"{DATA / 'user_model.py'}:build", {"width": 64})
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    assert set(report.sparsified) == {"conv", "proj", "out"}
    for p in ("fp32", "fp16", "int8"):
        r = export_(loaded, p, tmp_path / f"u.{p}.onnx")
        assert r.check.passed and set(r.sparsified) == set(report.sparsified)


def _train_steps(model, inputs, steps: int = 5):
    """A few QAT-like AdamW steps (large lr, so revived weights would show)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for i in range(steps):
        opt.zero_grad()
        model(*inputs.random(batch=8, seed=i)).square().mean().backward()
        opt.step()
    return model.eval()


def test_wrong_order_loses_2to4_and_writes_nothing(tmp_path):
    """sparsify -> mts.export -> quantize -> QAT destroys 2:4; export must refuse and leave no file."""
    import modelopt.torch.sparsity as mts

    from sparsekit.models.calib import load_calibration
    from sparsekit.quantize.ptq import quantize_

    loaded = load_model("mlp")
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    model = quantize_(mts.export(loaded.model), load_calibration(None, loaded.inputs, 16))
    loaded.model = _train_steps(model, loaded.inputs)
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(ExportError, match="lost 2:4"):
        export_(loaded, "int8", out, require_sparse=report.sparsified)
    assert list(tmp_path.iterdir()) == []


def test_right_order_keeps_2to4_through_qat(tmp_path):
    from sparsekit.models.calib import load_calibration
    from sparsekit.quantize.ptq import quantize_

    loaded = load_model("mlp")
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    model = quantize_(loaded.model, load_calibration(None, loaded.inputs, 16))
    loaded.model = _train_steps(model, loaded.inputs)
    r = export_(loaded, "int8", tmp_path / "m.int8.onnx", require_sparse=report.sparsified)
    assert r.check.passed and set(r.sparsified) == set(report.sparsified)


def test_tampered_onnx_fails_verification(exported, tmp_path):
    src = exported[("mlp", "fp32")]
    model = onnx.load(str(src.path))
    layer = next(layer for layer in src.check.layers if layer.is_2to4)
    for i, t in enumerate(model.graph.initializer):
        if t.name == layer.weight:
            w = numpy_helper.to_array(t).copy()
            w[w == 0] = 0.5
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, t.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ExportError, match="lost 2:4"):
        _verify(bad, src.sparsified)
    with pytest.raises(ExportError, match="not found in the ONNX"):
        _verify(src.path, ["no.such.layer"])


def test_existing_output_is_not_overwritten(exported, sparse_models):
    r = exported[("mlp", "fp32")]
    before = r.path.read_bytes()
    with pytest.raises(OutputExistsError):
        export_(sparse_models["mlp"], "fp32", r.path)
    assert r.path.read_bytes() == before


def test_quantized_parity_is_judged_against_the_models_rounding_noise(sparse_models, tmp_path):
    """A correct INT8 graph passes with its rounding noise measured; one wrong dequantization scale fails."""
    import copy

    from sparsekit.export.parity import compare_onnx_to_torch
    from sparsekit.export.torch_to_onnx import onnx_from_torch
    from sparsekit.models.calib import load_calibration
    from sparsekit.quantize.ptq import quantize_

    loaded = sparse_models["bert"]
    model = quantize_(copy.deepcopy(loaded.model), load_calibration(None, loaded.inputs, 16))
    path = tmp_path / "q.onnx"
    onnx_from_torch(model, loaded.inputs, path, 17)

    def enabled_quantizers():
        return sum(1 for m in model.modules() if type(m).__name__ == "TensorQuantizer" and m.is_enabled)

    enabled = enabled_quantizers()
    good = compare_onnx_to_torch(path, model, loaded.inputs, 1e-3, "fake-quant")
    assert good.passed and good.noise_rel_l2 > 0 and good.rel_l2 < good.noise_rel_l2
    assert enabled_quantizers() == enabled > 0, "quantizers re-enabled"

    onnx_model = onnx.load(str(path))
    dq = next(n for n in onnx_model.graph.node if n.op_type == "DequantizeLinear")
    out = dq.output[0]  # one dequantized tensor comes out 10x too large, as with a wrong scale
    dq.output[0] = out + "_raw"
    onnx_model.graph.initializer.append(numpy_helper.from_array(np.array(10.0, dtype=np.float32), "ten"))
    onnx_model.graph.node.append(onnx.helper.make_node("Mul", [out + "_raw", "ten"], [out]))
    onnx.save(onnx_model, str(tmp_path / "bad.onnx"))
    bad = compare_onnx_to_torch(tmp_path / "bad.onnx", model, loaded.inputs, 1e-3, "fake-quant")
    assert not bad.passed and "rounding noise" in bad.reason()
