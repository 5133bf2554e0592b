"""A 2:4 check that cannot fail does not pass: empty and non-ONNX files fail, a ``--require`` that
matches nothing is an error naming the layers, an ONNX requires what its export recorded, and
``--require-eligible`` requires only what ``sparsify`` itself would sparsify."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsekit.errors import CheckRequirementError, OnnxModelError
from sparsekit.sparsify.check import SPARSE_LAYERS_KEY, check_onnx
from sparsekit.sparsify.check_file import check_file, raise_if_failed
from sparsekit.sparsify.pattern import magnitude_mask
from tests.cli.test_cli import one_line_error


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A magnitude-sparse small MLP exported by the kit (fp32), and its dense twin's export."""
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    root = tmp_path_factory.mktemp("check")
    args = {"in_features": 64, "hidden": 128}
    sparse = load_model("mlp", args)
    sparse.model, _ = sparsify_(sparse.model, "magnitude")
    export_(sparse, "fp32", root / "sparse.onnx")
    export_(load_model("mlp", args), "fp32", root / "dense.onnx")
    return root


def _gemm_onnx(path, weights: dict[str, np.ndarray], meta: dict[str, str] | None = None):
    """A chain of Gemm(transB=1) nodes named ``/<name>/Gemm`` over the given ``[N, K]`` weights."""
    nodes, prev = [], "x"
    for i, name in enumerate(weights):
        out = "y" if i == len(weights) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, name], [out], name=f"/{name}/Gemm", transB=1))
        prev = out
    first, last = next(iter(weights.values())), list(weights.values())[-1]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", first.shape[1]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", last.shape[0]])], [numpy_helper.from_array(w, n) for n, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def _dense(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) + 0.01


def _sparse(shape, seed=0):
    w = _dense(shape, seed)
    return w * magnitude_mask(w, 1)


# -- files that are not ONNX ---------------------------------------------------------------------

def test_empty_and_non_onnx_files_fail_with_one_line(cli, tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "notes").write_text("not a model\n")
    one_line_error(cli("check", str(tmp_path / "empty.onnx")), match="is empty")
    one_line_error(cli("check", str(tmp_path / "notes")), match="not a readable ONNX")


def test_protobuf_without_a_model_is_not_onnx(tmp_path):
    (tmp_path / "empty_model.onnx").write_bytes(onnx.ModelProto(producer_name="x").SerializeToString())
    with pytest.raises(OnnxModelError, match="not an ONNX model"):
        check_file(tmp_path / "empty_model.onnx", ["*"])
    (tmp_path / "blank").write_bytes(b"")
    with pytest.raises(OnnxModelError, match="is empty"):
        check_file(tmp_path / "blank")


# -- --require patterns --------------------------------------------------------------------------

def test_unmatched_pattern_is_an_error_listing_the_layers(cli, exported):
    line = one_line_error(cli("check", str(exported / "sparse.onnx"), "--require", "stages.*"), code=2, match="matches no layer")
    assert "'stages.*'" in line and "body.0" in line and "head" in line and "--require 'body.*'" in line


def test_one_unmatched_pattern_among_good_ones_is_still_an_error(tmp_path):
    path = _gemm_onnx(tmp_path / "g.onnx", {"fc1": _sparse((32, 64)), "fc2": _sparse((16, 32), 1)})
    with pytest.raises(CheckRequirementError, match="'fc3'"):
        check_onnx(path, ["fc1", "fc3"])
    assert check_onnx(path, ["fc1", "fc2"]).passed


def test_unmatched_pattern_on_a_checkpoint_lists_its_layers(tmp_path):
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.check import check_model

    with pytest.raises(CheckRequirementError, match="body.0, body.2, head"):
        check_model(load_model("mlp", {"in_features": 32, "hidden": 64}).model, ["layers.*"])


# -- what an ONNX requires without --require ------------------------------------------------------

def test_an_exported_onnx_requires_its_recorded_layers(cli, exported):
    proc = cli("check", str(exported / "sparse.onnx"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    recorded = json.loads(next(p.value for p in onnx.load(str(exported / "sparse.onnx")).metadata_props if p.key == SPARSE_LAYERS_KEY))
    assert recorded == ["body.0", "body.2"]
    assert sorted(layer["name"] for layer in report["layers"] if layer["required"]) == recorded


def test_a_recorded_layer_that_lost_2to4_fails(cli, exported, tmp_path):
    model = onnx.load(str(exported / "sparse.onnx"))
    target = next(t for t in model.graph.initializer if tuple(t.dims) == (128, 128))  # body.2's weight
    target.CopyFrom(numpy_helper.from_array(_dense((128, 128)), target.name))
    onnx.save(model, str(tmp_path / "tampered.onnx"))
    line = one_line_error(cli("check", str(tmp_path / "tampered.onnx")), code=3, match="not 2:4")
    assert "body.2" in line and "body.0" not in line


def test_a_recorded_layer_missing_from_the_graph_fails(tmp_path):
    path = _gemm_onnx(tmp_path / "g.onnx", {"fc1": _sparse((32, 64))}, {SPARSE_LAYERS_KEY: json.dumps(["fc1", "fc2"])})
    report = check_file(path)
    assert report.missing == ["fc2"] and not report.passed
    with pytest.raises(Exception, match="recorded as sparsified are not in the file: fc2") as info:
        raise_if_failed(report)
    assert info.value.exit_code == 3


def test_nothing_required_is_an_error(cli, exported, tmp_path):
    one_line_error(cli("check", str(exported / "dense.onnx")), code=2, match="nothing to check")
    plain = _gemm_onnx(tmp_path / "plain.onnx", {"fc1": _sparse((32, 64))})  # no metadata: not from 'sparsekit export'
    with pytest.raises(CheckRequirementError, match="records no sparsified layer"):
        check_file(plain)
    assert check_file(plain, ["*"]).passed


def test_broken_metadata_is_refused(tmp_path):
    path = _gemm_onnx(tmp_path / "g.onnx", {"fc1": _sparse((32, 64))}, {SPARSE_LAYERS_KEY: "{not json"})
    with pytest.raises(OnnxModelError, match="not a JSON list"):
        check_file(path)


# -- --require-eligible follows sparsify's rules --------------------------------------------------

def test_require_eligible_skips_what_sparsify_refuses(cli, exported):
    proc = cli("check", str(exported / "sparse.onnx"), "--require-eligible", "--json")
    assert proc.returncode == 0, proc.stderr
    head = next(layer for layer in json.loads(proc.stdout)["layers"] if layer["name"] == "head")
    assert head["eligible"] and not head["sparsifiable"] and not head["required"]  # 10 outputs: ModelOpt refuses it
    assert "out % 8" in head["sparsify_reason"]


def test_require_eligible_fix_names_the_method_that_can_help(tmp_path):
    # in = 8: TensorRT-eligible (8 % 4 == 0); magnitude needs in % 16 == 0, sparsegpt accepts it
    path = _gemm_onnx(tmp_path / "g.onnx", {"narrow": _dense((16, 8))})
    report = check_file(path, require_eligible=True)
    assert [layer.name for layer in report.failures] == ["narrow"]
    with pytest.raises(Exception, match="--method sparsegpt") as info:
        raise_if_failed(report)
    assert info.value.exit_code == 3


def test_require_eligible_with_nothing_sparsifiable_is_an_error(tmp_path):
    path = _gemm_onnx(tmp_path / "g.onnx", {"odd": _dense((10, 12))})  # TensorRT-eligible, no method accepts 10 outputs
    with pytest.raises(CheckRequirementError, match="both TensorRT-eligible and sparsifiable"):
        check_file(path, require_eligible=True)
    assert not check_onnx(path, ["odd"]).passed, "named explicitly, it is required (and dense)"
