"""PyTorch semi-structured 2:4 path: eligibility on CPU; real conversion and timing on an Ampere+ GPU."""

import pytest
import torch
from torch import nn

from sparsekit.bench.torch_sparse import convertible, plain_model
from sparsekit.models.source import load_model
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.sparsify import sparsify_


def _ampere() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if torch.cuda.get_device_capability()[0] < 8:
        return "GPU older than Ampere"
    return None


GPU = _ampere()


def test_convertible_rules():
    loaded = load_model("bert")
    loaded.model, _ = sparsify_(loaded.model, "magnitude", exclude=["head", "pooler"])
    plain = plain_model(loaded.model)
    assert not any(hasattr(m, "_weight_mask") for m in plain.modules())
    assert check_model(plain, require=["layers.*"]).passed  # masks baked in
    modules = dict(plain.named_modules())
    assert convertible(modules["layers.0.query"]) is None
    assert "not 2:4" in convertible(modules["pooler"])
    assert "multiple of" in convertible(modules["head"])
    assert "multiple of" in convertible(nn.Linear(24, 8))
    assert "only for Linear" in convertible(nn.Conv2d(16, 16, 3))


def test_cpu_only_machine_gets_a_clear_error():
    if GPU is None:
        pytest.skip("a CUDA GPU is present")
    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.torch_pair import bench_torch_sparse
    from sparsekit.errors import SparsekitError

    with pytest.raises(SparsekitError, match="CUDA GPU"):
        bench_torch_sparse(load_model("mlp"), [1], BenchConfig())


# The GPU tests below use the kit's own masks (no ModelOpt), so they run as they are on a GPU
# machine that has torch but not ModelOpt.


@pytest.mark.gpu
@pytest.mark.skipif(GPU is not None, reason=GPU or "")
def test_semi_structured_matches_dense_and_is_measured():
    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.torch_pair import bench_torch_sparse
    from sparsekit.sparsify.direct import mask_weights_2to4_

    loaded = load_model("bert", {"hidden": 512, "ffn": 2048, "heads": 8, "seq": 128})
    mask_weights_2to4_(loaded.model, exclude=["head"])
    result = bench_torch_sparse(loaded, [8], BenchConfig(rounds=3, round_seconds=0.05), "float16", graphs=True)
    assert result["evidence"]["converted_linear_layers"] >= 12
    assert result["evidence"]["masking"]["source"].startswith("already 2:4")
    row = result["results"][0]
    assert row["max_rel_err_sparse_vs_dense"] < 2e-2 and row["timing"] == "cuda-graph"
    assert row["kernels"]["sparse"]["sparse_gemm_calls"] >= 12  # the profile shows the 2:4 kernels ran
    assert row["kernels"]["dense"]["sparse_gemm_calls"] == 0
    assert result["memory"]["sparse_weight_bytes"] < result["memory"]["dense_weight_bytes"]
    assert 1.0 < result["amdahl"]["bound"] < 2.0


@pytest.mark.gpu
@pytest.mark.skipif(GPU is not None, reason=GPU or "")
def test_a_dense_zoo_model_is_masked_before_timing_never_compared_with_itself():
    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.torch_pair import bench_torch_sparse, prepare_torch_sparse
    from sparsekit.errors import NoEligibleLayersError

    result = bench_torch_sparse(load_model("mlp"), [16], BenchConfig(rounds=2, round_seconds=0.02))
    assert result["evidence"]["masking"]["masked"] and result["evidence"]["converted_linear_layers"] > 0
    with pytest.raises(NoEligibleLayersError, match="dense model with itself"):
        prepare_torch_sparse(load_model("mlp"), mask_if_dense=False)
    with pytest.raises(NoEligibleLayersError, match="could run 2:4 kernels"):
        prepare_torch_sparse(load_model("cnn"))  # convs stay dense in PyTorch; the 10-class head cannot convert


@pytest.mark.gpu
@pytest.mark.skipif(GPU is not None, reason=GPU or "")
def test_gemm_microbench_and_selection(tmp_path):
    from sparsekit.bench.gemm import GemmShape, time_gemm
    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.select import select_layers_by_speed

    r = time_gemm(GemmShape("big", 4096, 4096, 4096), BenchConfig(rounds=3, round_seconds=0.05), profile=True)
    assert r.pair.dense.median > 0 and r.pair.sparse.median > 0 and r.method == "cuda-graph"
    assert r.max_rel_err < 1e-2 and r.calls >= 8
    assert r.kernels["sparse"]["sparse_gemm_calls"] >= 1
    cache: dict = {}
    sel = select_layers_by_speed(load_model("bert"), 8, BenchConfig(rounds=3, round_seconds=0.02), margin=1.0, cache=cache)
    assert set(sel["include"]) | set(sel["exclude"]) and all("decision" in m for m in sel["measurements"])
    timed = [m for m in sel["measurements"] if "speedup" in m]
    assert len(cache) < len(timed)  # identical layer shapes are timed once
