"""The build path end to end on CPU with the onnxruntime backend: store, cache keys, Triton layout."""

import shutil

import numpy as np
import pytest

from sparsekit.backends.build import build_engine, build_pair
from sparsekit.backends.spec import BuildSpec, parse_shapes
from sparsekit.backends.store import EngineStore
from sparsekit.backends.triton import export_triton
from sparsekit.errors import OnnxModelError, SparsekitError
from sparsekit.export.parity import ort_session

ORT = BuildSpec(backend="onnxruntime")


@pytest.fixture(scope="module")
def onnx16(exported):
    return exported[("bert", "fp16")].path


def test_build_runs_and_matches_the_onnx(onnx16, tmp_path, sparse_models):
    record = build_engine(onnx16, ORT, tmp_path / "store")
    assert not record.cached and record.artifact.is_file()
    meta = record.metadata
    assert meta["spec_sha256"] == ORT.sha256() and len(meta["onnx_sha256"]) == 64
    assert meta["artifact_bytes"] == record.artifact.stat().st_size
    from sparsekit.backends.registry import get_backend

    runner = get_backend("onnxruntime").load(record.artifact)
    (x,) = sparse_models["bert"].inputs.random(batch=3, seed=2)
    got = runner.run({"input_ids": x.numpy()})[0]
    want = ort_session(onnx16).run(None, {"input_ids": x.numpy()})[0]
    assert np.allclose(got, want, atol=1e-3)
    report = record.report
    assert report["summary"]["onnx_2to4"] >= 12 and report["summary"]["sparse_kernel"] == 0
    assert "no 2:4 sparse kernels" in report["note"]


def test_cache_key_is_content_not_path(onnx16, tmp_path):
    store = EngineStore(tmp_path / "store")
    first = build_engine(onnx16, ORT, store)
    copy = tmp_path / "elsewhere.onnx"
    shutil.copyfile(onnx16, copy)
    again = build_engine(copy, ORT, store)
    assert again.cached and again.key == first.key
    assert build_engine(onnx16, ORT, store, force=True).key == first.key
    other = build_engine(onnx16, BuildSpec(backend="onnxruntime", opt_level=1), store)
    assert other.key != first.key
    leftovers = [p.name for p in store.root.iterdir() if p.name.startswith(".build-")]
    assert leftovers == []


def test_pair_differs_only_in_sparse_flag(onnx16, tmp_path):
    pair = build_pair(onnx16, ORT, tmp_path / "store")
    assert pair.dense.key != pair.sparse.key
    d, s = pair.dense.metadata["spec"], pair.sparse.metadata["spec"]
    assert {k for k in d if d[k] != s[k]} == {"sparse"}
    rows = pair.comparison()
    assert any(r["onnx_2to4"] for r in rows)


def test_triton_layout(onnx16, tmp_path):
    record = build_engine(onnx16, ORT, tmp_path / "store")
    folder = export_triton([record], tmp_path / "repo", "bert")
    config = (folder / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and 'name: "input_ids"' in config and "TYPE_INT64" in config
    assert (folder / "1" / "model.onnx").is_file()


def test_triton_one_plan_per_compute_capability(onnx16, tmp_path):
    """TensorRT plans map compute capabilities to files (metadata of two GPUs, artifacts stand in as plan bytes)."""
    from sparsekit.backends.store import BuildRecord

    base = build_engine(onnx16, ORT, tmp_path / "store")
    recs = []
    for cc in ("8.0", "9.0"):
        meta = {**base.metadata, "spec": {**base.metadata["spec"], "backend": "tensorrt"}, "target": {**base.metadata["target"], "cc": cc}}
        recs.append(BuildRecord(base.key, base.folder, base.artifact, meta, True))
    folder = export_triton(recs, tmp_path / "repo", "m")
    config = (folder / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and '"8.0" value: "model_sm80.plan"' in config and '"9.0" value: "model_sm90.plan"' in config
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model_sm80.plan", "model_sm90.plan"]
    with pytest.raises(SparsekitError, match="two plans"):
        export_triton([recs[0], recs[0]], tmp_path / "repo2", "m")


def test_refusals(onnx16, tmp_path):
    with pytest.raises(SparsekitError, match="does not have"):
        build_engine(onnx16, BuildSpec(backend="onnxruntime", shapes=parse_shapes(["nope:1x4"])), tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(OnnxModelError):
        build_engine(bad, ORT, tmp_path / "store")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_cli_build_both(cli, exported, tmp_path):
    import json

    path = exported[("cnn", "int8")].path
    proc = cli("build", str(path), "--backend", "onnxruntime", "--store", str(tmp_path / "s"), "--json")
    assert proc.returncode == 0, proc.stderr
    builds = json.loads(proc.stdout)["builds"]
    assert set(builds) == {"dense", "sparse"} and not builds["dense"]["cached"]
    proc = cli("build", str(path), "--backend", "onnxruntime", "--store", str(tmp_path / "s"), "--sparse", "on", "--json")
    assert json.loads(proc.stdout)["builds"]["on"]["cached"]


def test_cli_build_loads_the_onnx_once(cli, exported, tmp_path, onnx_loads):
    """``sparsekit build`` (dense + sparse pair, Triton export) parses the ONNX file once and hands
    the model to the validation, the store key, both builds, their reports and the Triton config."""
    import json
    from pathlib import Path

    path = Path(exported[("cnn", "fp16")].path).resolve()
    proc = cli("build", str(path), "--backend", "onnxruntime", "--store", str(tmp_path / "s"), "--triton", str(tmp_path / "triton"), "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert set(payload["builds"]) == {"dense", "sparse"} and not payload["builds"]["sparse"]["cached"]
    assert payload["builds"]["sparse"]["report"]["layers"] and set(payload["triton"]) == {"dense", "sparse"}
    assert onnx_loads.count(path) == 1, onnx_loads


def test_a_model_passed_in_is_not_changed_by_the_report(exported):
    """The layer report fixes symbolic input dims to compute FLOPs: on a copy, not on the caller's model."""
    from sparsekit.backends.trt_report import onnx_layer_rows
    from sparsekit.onnx_io.load import load_onnx

    path = exported[("bert", "fp16")].path
    model = load_onnx(path, load_external_data=False)
    before = model.SerializeToString()
    rows = onnx_layer_rows(path, model)
    assert model.SerializeToString() == before
    assert [r.flop_share for r in rows] == [r.flop_share for r in onnx_layer_rows(path)]
