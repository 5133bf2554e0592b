"""TensorRT builds for real: marked `tensorrt`, skipped with the reason where TensorRT or an Ampere+ GPU is missing.

The build path itself (the Polygraphy child process with POLYGRAPHY_USE_TENSORRT_RTX off) runs
everywhere: without TensorRT it ends in one typed error, which the tests below check."""

import importlib.util

import numpy as np
import pytest

from sparsekit.backends.spec import BuildSpec, parse_shapes
from sparsekit.errors import SparsekitError


def _trt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install sparsekit[tensorrt] on a GPU host)"
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # libnvinfer missing
        return f"TensorRT does not import: {exc}"
    from sparsekit.backends.gpu import list_gpus

    gpus = list_gpus()
    if not gpus:
        return "no NVIDIA GPU visible"
    if not gpus[0].ampere_or_newer:
        return f"{gpus[0].name} is older than Ampere (compute capability {gpus[0].compute_capability})"
    return None


REASON = _trt_reason()
needs_trt = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.mark.skipif(REASON is None, reason="TensorRT is usable here")
def test_missing_tensorrt_is_one_clear_error(exported, tmp_path):
    from sparsekit.backends.build import build_engine

    with pytest.raises(SparsekitError, match="TensorRT|GPU"):
        build_engine(exported[("cnn", "fp16")].path, BuildSpec(), tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here: the real builds below run instead")
def test_regular_tensorrt_runs_the_same_build_process_with_the_variable_off(exported, tmp_path):
    """The shared child process starts, imports Polygraphy for regular TensorRT, and reports the
    missing module as a typed error (the same path that builds where TensorRT exists)."""
    from sparsekit.backends.trt_build import run_trt_build
    from sparsekit.backends.trt_flavours import TENSORRT
    from sparsekit.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError) as info:
        run_trt_build(TENSORRT, exported[("cnn", "fp16")].path, BuildSpec(), tmp_path)
    assert info.value.problem.startswith("TensorRT is not usable here") and "tensorrt-rtx" in info.value.fix
    assert (tmp_path / "build.log").is_file() and not (tmp_path / "engine.plan").exists()


def test_a_process_imported_for_the_other_flavour_refuses(tmp_path):
    """Polygraphy reads its flavour once, at import (here: regular TensorRT, the variable unset), so
    the build code checks that it got the flavour it was asked for."""
    from sparsekit.backends.trt_build import build_from_request
    from sparsekit.errors import EngineBuildError

    request = {"backend": "tensorrt-rtx", "spec": {"backend": "tensorrt-rtx"}, "onnx": str(tmp_path / "x.onnx"), "out_dir": str(tmp_path), "timing_cache": None, "inspect": False}
    with pytest.raises(EngineBuildError, match="wrong TensorRT flavour") as info:
        build_from_request(request, lambda line: None)
    assert "POLYGRAPHY_USE_TENSORRT_RTX=1" in info.value.fix


@pytest.fixture(scope="module")
def wide_cnn(tmp_path_factory):
    """A zoo CNN with wide stages (256-1024 channels) in fp16 and int8, 2:4 sparsified."""
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    loaded = load_model("cnn", {"width": 256, "image_size": 32})
    loaded.model, _ = sparsify_(loaded.model, "magnitude", exclude=["head"])
    root = tmp_path_factory.mktemp("trt")
    return {p: export_(loaded, p, root / f"cnn.{p}.onnx").path for p in ("fp16", "int8")}


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_trt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_dense_and_sparse_engines_match_onnxruntime(wide_cnn, tmp_path, precision):
    from sparsekit.backends.build import build_pair
    from sparsekit.backends.registry import get_backend
    from sparsekit.export.parity import ort_session

    onnx_path = wide_cnn[precision]
    spec = BuildSpec(shapes=parse_shapes(["input:1x3x32x32,8x3x32x32,16x3x32x32"]))
    pair = build_pair(onnx_path, spec, tmp_path / "store")
    x = np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype(np.float32)
    want = ort_session(onnx_path).run(None, {"input": x})[0]
    for record in (pair.dense, pair.sparse):
        runner = get_backend("tensorrt").load(record.artifact)
        got = runner.run({"input": x})[0]
        runner.close()
        assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < (0.05 if precision == "fp16" else 0.15)
    report = pair.sparse.report
    assert report["log_seen"], "the (Sparsity) log lines were not captured"
    assert report["summary"]["eligible"] >= 1
    assert pair.dense.report["summary"]["sparse_kernel"] == 0
    if precision == "fp16":  # 256-1024-channel 3x3 convs: TensorRT keeps a sparse kernel where it times faster, and these do
        assert report["summary"]["sparse_kernel"] >= 1, report["summary"]
    # int8 Q/DQ layers may show sparse weights and still get dense kernels (NVIDIA/TensorRT#4694): reported, not asserted
