"""TensorRT-RTX builds for real, on CPU: dense and sparse engines of the zoo CNN (fp16, int8 Q/DQ)
and the BERT-style encoder (fp16, dynamic shapes), the store, cache hits by content, metadata,
parser errors per node, compute-capability refusals and the CLI. Loading, inspecting and timing
the engines need an RTX-class GPU (compute capability 7.5-12.x, not 9.0) and are marked ``gpu``."""

import json
import shutil

import numpy as np
import pytest

from sparsekit.backends.build import build_engine, build_pair
from sparsekit.backends.spec import BuildSpec, parse_shapes
from sparsekit.backends.store import EngineStore
from sparsekit.backends.trt_flavours import RTX_COMPUTE_CAPABILITIES, RTX_DEFAULT_TARGETS
from sparsekit.errors import EngineBuildError, OnnxModelError, SparsekitError
from tests.backends.onnx_files import fp8_matmul_onnx, needs_rtx, save_with_external_data, unsupported_op_onnx

pytestmark = needs_rtx

CNN_SHAPES = parse_shapes(["input:1x3x32x32,8x3x32x32,16x3x32x32"])
RTX = BuildSpec(backend="tensorrt-rtx", shapes=CNN_SHAPES)


def targeting(*ccs: str) -> BuildSpec:
    """The CNN spec for other target compute capabilities (validated, so they are put in order)."""
    return BuildSpec.model_validate({**RTX.model_dump(), "compute_capabilities": ccs})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return EngineStore(tmp_path_factory.mktemp("rtx-store"))


@pytest.fixture(scope="module")
def cnn_pairs(exported, store):
    """Dense and sparse TensorRT-RTX engines of the zoo CNN in fp16 and int8 Q/DQ."""
    return {p: build_pair(exported[("cnn", p)].path, RTX, store) for p in ("fp16", "int8")}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_cnn_dense_and_sparse_engines(cnn_pairs, precision):
    import tensorrt_rtx

    pair = cnn_pairs[precision]
    for record, sparse in ((pair.dense, False), (pair.sparse, True)):
        assert not record.cached and record.artifact.stat().st_size > 100_000
        meta = record.metadata
        assert meta["spec"]["backend"] == "tensorrt-rtx" and meta["spec"]["sparse"] is sparse
        assert meta["environment"]["tensorrt_rtx"] == tensorrt_rtx.__version__ and meta["target"]["runtime"] == tensorrt_rtx.__version__
        assert meta["environment"]["compute_capabilities"] == list(RTX_DEFAULT_TARGETS) and meta["target"]["gpu"] is None
        log = (record.folder / "build.log").read_text()
        assert "[VERBOSE]" in log and "MinShape: [1,3,32,32]" in log  # the whole VERBOSE log, with the profile
        flags = next(line for line in log.splitlines() if line.strip().startswith("Flags"))
        assert ("SPARSE_WEIGHTS" in flags) is sparse and "STRONGLY_TYPED" in flags
        report = record.report
        assert report["backend"] == "tensorrt-rtx" and report["known"] is False
        assert all(layer["eligible"] is None and layer["sparse_kernel"] is None for layer in report["layers"])
        assert "target GPU" in report["note"] and "INFO" not in report["note"]
        assert report["summary"]["onnx_2to4"] >= 6
        assert any(layer["trt_layer"] for layer in report["layers"])  # ONNX nodes mapped to engine layers from the log
    d, s = pair.dense.metadata["spec"], pair.sparse.metadata["spec"]
    assert {k for k in d if d[k] != s[k]} == {"sparse"} and pair.dense.key != pair.sparse.key


def test_cache_hit_by_content_and_targets_in_the_key(exported, store, cnn_pairs, tmp_path):
    onnx_path = exported[("cnn", "fp16")].path
    copy = tmp_path / "renamed.onnx"
    shutil.copyfile(onnx_path, copy)
    again = build_engine(copy, RTX, store)
    assert again.cached and again.key == cnn_pairs["fp16"].dense.key
    one = build_engine(onnx_path, targeting("8.9", "8.6"), store)
    assert not one.cached and one.key != again.key
    assert one.metadata["spec"]["compute_capabilities"] == ["8.6", "8.9"] and one.metadata["environment"]["compute_capabilities"] == ["8.6", "8.9"]
    same = build_engine(onnx_path, BuildSpec(backend="tensorrt-rtx", shapes=CNN_SHAPES, compute_capabilities=("8.6", "8.9", "8.6")), store)
    assert same.cached and same.key == one.key


def test_corrupted_rtx_engine_is_rebuilt(exported, store, cnn_pairs):
    record = cnn_pairs["int8"].sparse
    raw = bytearray(record.artifact.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    record.artifact.write_bytes(bytes(raw))
    rebuilt = build_engine(exported[("cnn", "int8")].path, RTX.with_sparse(True), store)
    assert not rebuilt.cached and store.entry_problem(rebuilt.folder) is None


def test_bert_fp16_dynamic_shapes(exported, tmp_path):
    spec = BuildSpec(backend="tensorrt-rtx", sparse=True, shapes=parse_shapes(["input_ids:1x64,4x64,8x64"]), compute_capabilities=("8.6",))
    record = build_engine(exported[("bert", "fp16")].path, spec, tmp_path / "store")
    log = (record.folder / "build.log").read_text()
    assert "MinShape: [1,64]" in log and "MaxShape: [8,64]" in log
    assert record.report["summary"]["onnx_2to4"] >= 12 and not record.report["known"]


def test_parser_errors_name_the_node(tmp_path):
    onnx_path = unsupported_op_onnx(tmp_path / "unsupported.onnx")
    with pytest.raises(OnnxModelError) as info:
        build_engine(onnx_path, BuildSpec(backend="tensorrt-rtx"), tmp_path / "store")
    assert "node 1 (mystery0, FancyUnknownOp)" in info.value.problem and "TensorRT-RTX cannot parse" in info.value.problem
    assert not any(p.name.startswith(".build-") for p in (tmp_path / "store").iterdir())


def test_compute_capability_refusals_come_back_as_one_line(exported, tmp_path):
    fp8 = fp8_matmul_onnx(tmp_path / "fp8.onnx")
    shapes = parse_shapes(["input:1x64,4x64,8x64"])
    for cc in ("8.0", "8.6"):
        with pytest.raises(EngineBuildError) as info:
            build_engine(fp8, BuildSpec(backend="tensorrt-rtx", shapes=shapes, compute_capabilities=(cc,)), tmp_path / "store")
        problem = info.value.problem
        assert f"sm{cc.replace('.', '')}" in problem and "fp8" in problem and "\n" not in problem and ".cpp" not in problem
        assert "compute-capability" in info.value.fix
    ok = build_engine(fp8, BuildSpec(backend="tensorrt-rtx", sparse=True, shapes=shapes, compute_capabilities=("8.9", "12.0")), tmp_path / "store")
    assert ok.artifact.is_file()
    with pytest.raises(EngineBuildError, match="SM75"):  # a GEMM TensorRT-RTX cannot compile for Turing
        build_engine(exported[("cnn", "int8")].path, targeting("7.5"), tmp_path / "store")


def test_refusals_before_building(exported, tmp_path):
    fp16 = exported[("cnn", "fp16")].path
    with pytest.raises(SparsekitError, match="Turing"):
        build_engine(fp16, BuildSpec(backend="tensorrt-rtx", sparse=True, compute_capabilities=("7.5", "8.6")), tmp_path)
    with pytest.raises(SparsekitError, match="hardware-compatibility"):
        build_engine(fp16, BuildSpec(backend="tensorrt-rtx", hardware_compat="ampere_plus"), tmp_path)
    with pytest.raises(SparsekitError, match="fp32"):
        build_engine(exported[("cnn", "fp32")].path, BuildSpec(backend="tensorrt-rtx", sparse=True), tmp_path)
    with pytest.raises(SparsekitError, match="TensorRT-RTX option"):  # regular TensorRT builds for its own GPU
        build_engine(fp16, BuildSpec(backend="tensorrt", compute_capabilities=("8.6",)), tmp_path)
    with pytest.raises(ValueError):
        BuildSpec(backend="tensorrt-rtx", compute_capabilities=("9.0",))
    assert not any(tmp_path.iterdir())


def test_external_data_builds_a_self_contained_engine(exported, tmp_path):
    src = save_with_external_data(exported[("cnn", "fp16")].path, tmp_path / "src")
    data_bytes = (src.parent / "model.onnx.data").stat().st_size
    record = build_engine(src, RTX, tmp_path / "store")
    assert record.metadata["artifact_files"] == {} and record.artifact.stat().st_size > data_bytes  # the weights live in the plan


def test_triton_refuses_rtx_engines(cnn_pairs, tmp_path):
    from sparsekit.backends.triton import export_triton

    with pytest.raises(SparsekitError, match="tensorrt_plan"):
        export_triton([cnn_pairs["fp16"].dense], tmp_path / "repo", "cnn")
    assert not (tmp_path / "repo").exists()


def test_cli_builds_both_on_cpu_and_says_what_it_cannot_know(cli, exported, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(exported[("cnn", "fp16")].path, run / "model.fp16.onnx")
    args = ("build", str(run), "--backend", "tensorrt-rtx", "--sparse", "both", "--store", str(tmp_path / "s"), "--shapes", "input:1x3x32x32,8x3x32x32,16x3x32x32")
    proc = cli(*args, "--report", str(tmp_path / "report.json"))
    assert proc.returncode == 0, proc.stderr
    assert "chosen on the target GPU, unknown at this build" in proc.stdout
    assert "dense vs sparse specs differ only in: sparse" in proc.stdout
    builds = json.loads((tmp_path / "report.json").read_text())["builds"]
    # TensorRT-RTX numbers its internal symbols differently from one process to the next, so the
    # two plans are byte-identical only most of the time; the CLI says so exactly when they are.
    same = builds["dense"]["metadata"]["artifact_sha256"] == builds["sparse"]["metadata"]["artifact_sha256"]
    assert ("byte-identical" in proc.stdout) is same
    assert all(not b["report"]["known"] and "target GPU" in b["report"]["note"] for b in builds.values())
    proc = cli(*args, "--compute-capability", "8.9,8.6", "--json")
    builds = json.loads(proc.stdout)["builds"]
    assert builds["sparse"]["metadata"]["spec"]["compute_capabilities"] == ["8.6", "8.9"] and not builds["sparse"]["cached"]
    proc = cli(*args, "--compute-capability", "8.6", "--compute-capability", "8.9", "--json")
    assert json.loads(proc.stdout)["builds"]["sparse"]["cached"]


def test_cli_refusal_is_one_line(cli, tmp_path):
    fp8 = fp8_matmul_onnx(tmp_path / "fp8.onnx")
    proc = cli("build", str(fp8), "--backend", "tensorrt-rtx", "--sparse", "off", "--compute-capability", "8.0", "--shapes", "input:1x64,4x64,8x64", "--store", str(tmp_path / "s"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsekit: error: TensorRT-RTX refused") and "fix:" in lines[0]
    proc = cli("build", str(fp8), "--backend", "tensorrt-rtx", "--compute-capability", "9.0", "--store", str(tmp_path / "s"))
    assert proc.returncode == 2 and "unknown compute capability 9.0" in proc.stderr


def _rtx_gpu_reason() -> str | None:
    from sparsekit.backends.gpu import list_gpus

    gpus = list_gpus()
    if not gpus:
        return "no NVIDIA GPU visible"
    if gpus[0].compute_capability not in RTX_COMPUTE_CAPABILITIES:
        return f"{gpus[0].name} (compute capability {gpus[0].compute_capability}) is not a TensorRT-RTX target"
    return None


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_rtx_engines_load_run_and_show_their_kernels(exported, tmp_path, precision):
    reason = _rtx_gpu_reason()
    if reason:
        pytest.skip(reason)
    from sparsekit.backends.gpu import list_gpus
    from sparsekit.backends.registry import get_backend
    from sparsekit.backends.trt_runtime import sparse_report_on_this_gpu
    from sparsekit.bench.trt_runner import TrtTimedRunner
    from sparsekit.export.export import input_spec_of
    from sparsekit.export.parity import ort_session

    onnx_path = exported[("cnn", precision)].path
    cc = list_gpus()[0].compute_capability
    pair = build_pair(onnx_path, targeting(cc), tmp_path / "store")
    x = np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype(np.float32)
    want = ort_session(onnx_path).run(None, {"input": x})[0]
    for record in (pair.dense, pair.sparse):
        runner = get_backend("tensorrt-rtx").load(record.artifact)
        got = runner.run({"input": x})[0]
        runner.close()
        assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < (0.05 if precision == "fp16" else 0.15)
    report = sparse_report_on_this_gpu(pair.sparse.artifact, onnx_path, "tensorrt-rtx", True)
    assert report.known and any(layer.trt_layer for layer in report.layers)
    timed = TrtTimedRunner(pair.sparse.artifact, input_spec_of(onnx_path).with_batch(8), buffers=2, graphs=False, backend="tensorrt-rtx")
    assert timed.step() > 0
