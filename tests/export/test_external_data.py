"""Exports with external data (a small model forced to it) through check, parity and build, and
the streaming parts of export: the data layout, the single-file writer, fp16 and int8 weight
passes, masks folded into the weights, and the stage folder."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sparsekit.errors import ExportError, ExternalDataError
from sparsekit.export.export import export_
from sparsekit.export.external_data import ALIGNMENT, data_file_name, external_location, is_external, move_weights_, write_onnx
from sparsekit.export.int8_weights import quantize_linear
from sparsekit.export.masked_weights import masks_folded_into_weights
from sparsekit.export.parity import compare_onnx_to_torch, ort_session
from sparsekit.sparsify.check import check_onnx

RTX = importlib.util.find_spec("tensorrt_rtx") is not None


@pytest.fixture(scope="module")
def external(sparse_models, tmp_path_factory):
    """The zoo BERT exported with its weights in external data: {precision: ExportResult}."""
    root = tmp_path_factory.mktemp("external")
    return {p: export_(sparse_models["bert"], p, root / f"bert.{p}.onnx", external_data=True) for p in ("fp32", "fp16", "int8")}


def _initializers(path):
    model = onnx.load(str(path))  # external data loaded from next to the file
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_layout_is_one_relative_data_file_next_to_the_onnx(external, exported, precision):
    r = external[precision]
    data = r.path.with_name(r.path.name + ".data")
    assert r.data_path == data and data.is_file()
    assert r.size_bytes == r.path.stat().st_size + data.stat().st_size
    model = onnx.load(str(r.path), load_external_data=False)
    ext = [t for t in model.graph.initializer if is_external(t)]
    assert ext and {external_location(t) for t in ext} == {data.name}
    offsets = [int(next(e.value for e in t.external_data if e.key == "offset")) for t in ext]
    assert all(o % ALIGNMENT == 0 for o in offsets)
    assert r.path.stat().st_size < data.stat().st_size / 10
    # the same weights as the self-contained export of the same model
    same = exported[("bert", precision)]
    ours, theirs = _initializers(r.path), _initializers(same.path)
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_check_and_parity_read_external_data_after_the_folder_moves(external, sparse_models, tmp_path, precision):
    r = external[precision]
    assert r.check.passed and r.parity.passed and r.sparsified
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in (r.path, r.data_path):
        shutil.copy(f, moved / f.name)
    path = moved / r.path.name
    check = check_onnx(path)  # layers recorded in the file's metadata are required
    assert check.passed and {layer.name for layer in check.required} == set(r.sparsified)
    assert [(c.name, c.is_2to4, c.dtype) for c in check.layers] == [(c.name, c.is_2to4, c.dtype) for c in r.check.layers]
    if precision != "int8":
        parity = compare_onnx_to_torch(path, sparse_models["bert"].model, sparse_models["bert"].inputs, 2e-2, "fp32 model")
        assert parity.passed


def test_missing_or_unsafe_data_file_is_one_clear_error(external, tmp_path):
    r = external["fp16"]
    lonely = tmp_path / r.path.name
    shutil.copy(r.path, lonely)
    with pytest.raises(ExternalDataError, match="cannot read tensor"):
        check_onnx(lonely)
    model = onnx.load(str(r.path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../" + r.data_path.name
    hostile = tmp_path / "hostile.onnx"
    onnx.save_model(model, str(hostile))
    with pytest.raises(ExternalDataError, match="outside"):
        check_onnx(hostile)


def _run(path, x):
    return ort_session(path).run(None, {"input_ids": x})[0]


def test_onnxruntime_build_of_external_data_loads_and_matches(external, tmp_path):
    from sparsekit.backends.build import build_engine
    from sparsekit.backends.spec import BuildSpec

    r = external["fp16"]
    record = build_engine(r.path, BuildSpec(backend="onnxruntime"), tmp_path / "store")
    assert record.artifact.is_file()
    x = np.random.default_rng(0).integers(0, 1000, size=(2, 64)).astype(np.int64)
    assert np.allclose(_run(record.artifact, x), _run(r.path, x), atol=1e-3)


@pytest.mark.skipif(not RTX and not os.environ.get("CI"), reason="tensorrt-rtx is not installed (pip install 'sparsekit[tensorrt-rtx]')")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_rtx_builds_external_data_and_int8_weights(external, tmp_path, precision):
    from sparsekit.backends.build import build_engine
    from sparsekit.backends.spec import BuildSpec, parse_shapes

    spec = BuildSpec(backend="tensorrt-rtx", sparse=True, shapes=parse_shapes(["input_ids:1x64,4x64,8x64"]), compute_capabilities=("8.6",))
    record = build_engine(external[precision].path, spec, tmp_path / "store")
    assert record.artifact.stat().st_size > 0
    onnx_rows = {row["name"]: row["onnx_2to4"] for row in record.report["layers"]}
    assert all(onnx_rows[name] for name in external[precision].sparsified)


def test_int8_file_stores_a_quarter_of_the_weight_bytes(exported):
    fp32, int8 = exported[("cnn", "fp32")], exported[("cnn", "int8")]
    assert int8.size_bytes < 0.3 * fp32.size_bytes
    weights = {layer.weight for layer in int8.check.layers if layer.name in int8.sparsified}
    stored = {t.name: t.data_type for t in onnx.load(str(int8.path)).graph.initializer}
    assert weights and all(stored[w] == TensorProto.INT8 for w in weights)


@pytest.mark.parametrize("per_axis", [True, False])
@pytest.mark.parametrize("zp_dtype", [np.int8, np.uint8])
def test_quantize_linear_matches_onnx_runtime(per_axis, zp_dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 48)) * 0.2).astype(np.float32)
    x[0, :4] = [0.0, 0.5 / 127, 1.5 / 127, 2.5 / 127]  # halfway cases round to even
    scale = (np.abs(x).max(axis=1) / 127).astype(np.float32) if per_axis else np.array(np.abs(x).max() / 127, np.float32)
    zero = np.full(scale.shape, 0 if zp_dtype == np.int8 else 128, zp_dtype)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    graph = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(zp_dtype)), list(x.shape))],
                              [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnxruntime as ort

    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = quantize_linear(x, scale, zero, axis=0)
    assert got.dtype == zp_dtype and np.array_equal(got, expected)


def _two_matmuls_sharing_a_weight(folder, big: float = 0.0):
    """x @ W and y @ W (W shared), plus x @ V with V's values beyond fp16 when ``big``."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 16)).astype(np.float32)
    v = rng.standard_normal((16, 16)).astype(np.float32)
    v[0, 0] = big or v[0, 0]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 16]) for n in ("x", "y")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 16]) for n in ("a", "b", "c")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"], name="mm_a"), helper.make_node("MatMul", ["y", "W"], ["b"], name="mm_b"), helper.make_node("MatMul", ["x", "V"], ["c"], name="mm_c")]
    model = helper.make_model(helper.make_graph(nodes, "shared", inputs, outputs, [numpy_helper.from_array(w, "W"), numpy_helper.from_array(v, "V")]), opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    onnx.save(model, str(path))
    return path, w, v


def test_fp16_pass_stores_a_shared_weight_once_and_keeps_out_of_range_weights_fp32(tmp_path):
    from sparsekit.export.fp16_weights import fp16_from_fp32

    path, w, v = _two_matmuls_sharing_a_weight(tmp_path, big=1e6)
    model = onnx.load(str(path), load_external_data=False)
    location = data_file_name(path.name)
    move_weights_(model, tmp_path, location)
    converted = fp16_from_fp32(model, tmp_path, location)
    write_onnx(converted, path, tmp_path, external=False)
    out = onnx.load(str(path))
    inits = {t.name: t for t in out.graph.initializer}
    halves = [t for t in inits.values() if t.data_type == TensorProto.FLOAT16 and list(t.dims) == [16, 16]]
    assert len(halves) == 1 and np.array_equal(numpy_helper.to_array(halves[0]), w.astype(np.float16))
    assert inits["V"].data_type == TensorProto.FLOAT and np.array_equal(numpy_helper.to_array(inits["V"]), v)
    assert not any(n.op_type == "Cast" and n.input[0] in ("W", "V") for n in out.graph.node)
    assert {i.name for i in out.graph.input} == {"x", "y"}
    x = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
    a, b, c = ort_session(path).run(None, {"x": x, "y": x})
    assert np.allclose(a, x @ w, rtol=2e-2, atol=2e-2) and np.array_equal(a, b) and np.allclose(c, x @ v, rtol=1e-5)
    assert not (tmp_path / location).exists()  # a self-contained file leaves no data file behind


def test_single_file_writer_round_trips_many_tensors(tmp_path):
    path, w, v = _two_matmuls_sharing_a_weight(tmp_path)
    model = onnx.load(str(path), load_external_data=False)
    model.metadata_props.add(key="k", value="v")
    move_weights_(model, tmp_path, data_file_name(path.name))
    assert all(is_external(t) for t in model.graph.initializer)
    out = tmp_path / "out.onnx"
    write_onnx(model, out, tmp_path, external=False)
    loaded = onnx.load(str(out))
    onnx.checker.check_model(loaded)
    assert {p.key: p.value for p in loaded.metadata_props} == {"k": "v"}
    arrays = {t.name: numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert np.array_equal(arrays["W"], w) and np.array_equal(arrays["V"], v)


def test_masks_are_lifted_only_while_exporting_and_the_model_is_unchanged(sparse_models):
    loaded = sparse_models["bert"]
    model = loaded.model
    masked = [m for m in model.modules() if getattr(m, "_weight_mask", None) is not None]
    masks = [m._weight_mask.clone() for m in masked]
    (x,) = loaded.inputs.random(batch=2, seed=3)
    with torch.no_grad():
        before = model(x)
        with masks_folded_into_weights(model):
            assert all(m._weight_mask is None for m in masked)
            inside = model(x)
        after = model(x)
    assert masked and all(torch.equal(m._weight_mask, mask) for m, mask in zip(masked, masks))
    assert all(bool((m._parameters["weight"][~m._weight_mask] == 0).all()) for m in masked)
    assert torch.allclose(before, inside, atol=1e-6) and torch.equal(before, after)


def test_a_tied_sparse_weight_keeps_its_mask(tmp_path):
    """Zeroing a weight an embedding shares would change the embedding: such a layer is left alone."""
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(64, 32)
            self.head = torch.nn.Linear(32, 64, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(self.emb(ids))

    import modelopt.torch.sparsity as mts

    model = mts.sparsify(Tied().eval(), "sparse_magnitude")
    assert model.head._parameters["weight"] is model.emb.weight and model.head._weight_mask is not None
    embedding = model.emb.weight.detach().clone()
    with masks_folded_into_weights(model):
        assert model.head._weight_mask is not None
    assert torch.equal(model.emb.weight, embedding)


def test_failed_external_export_leaves_nothing(sparse_models, tmp_path):
    with pytest.raises(ExportError, match="not found in the ONNX"):
        export_(sparse_models["mlp"], "fp32", tmp_path / "m.onnx", external_data=True, require_sparse=["no.such.layer"])
    assert list(tmp_path.iterdir()) == []


def test_self_contained_export_replaces_an_earlier_external_one(sparse_models, tmp_path):
    out = tmp_path / "m.onnx"
    first = export_(sparse_models["mlp"], "fp16", out, external_data=True)
    assert first.data_path.is_file()
    second = export_(sparse_models["mlp"], "fp16", out, force=True, external_data=False)
    assert second.data_path is None and not first.data_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.report.json"]


_SLOW_EXPORT = """
import sys, time
import sparsekit.export.external_data as ed
from sparsekit.export.export import export_
from sparsekit.models.source import load_model
real = ed.write_onnx
def slow(*a, **k):
    n = real(*a, **k)
    print("written", flush=True)
    time.sleep(600)
    return n
import sparsekit.export.export as ex
ex.write_onnx = slow
export_(load_model("mlp"), "fp32", sys.argv[1], external_data=True)
"""


def test_stage_of_a_killed_export_is_removed_by_the_next(sparse_models, tmp_path):
    """kill -9 in the middle of an export leaves its stage folder; the next export removes it."""
    out = tmp_path / "m.onnx"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        stages = [p for p in tmp_path.iterdir() if p.name.endswith(".stage")]
        assert len(stages) == 1 and (stages[0] / "m.onnx.data").is_file()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert stages[0].exists() and not out.exists()
    export_(sparse_models["mlp"], "fp32", out, external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data", "m.report.json"]


def test_cli_writes_external_data_on_request(cli, tmp_path):
    res = cli("export", "mlp", "-o", str(tmp_path / "m.onnx"), "--precision", "fp32", "--external-data", "--json")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "m.onnx.data").is_file()
    assert res.stdout.count('"external_data"') == 1 and str(tmp_path / "m.onnx.data") in res.stdout
