"""The GPU suite's second-run jobs on CPU: the Llama-3-8B shape table, the selection logic, the
same-mode compile with its fallback, the dry run end to end, and a failing unit that does not
stop the next. The 2:4 parts run on an Ampere+ GPU (marked ``gpu``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsekit.bench.compiled import EAGER, compile_pair
from sparsekit.bench.llm_shapes import FFN_LAYERS, LLAMA3_8B_WEIGHTS, distinct_layer_shapes, llm_gemm_plan
from sparsekit.bench.select import wins
from sparsekit.bench.selective import grouped, layer_pattern, split_selection
from sparsekit.bench.stats import RatioCI
from sparsekit.bench.suite import Suite

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "benchmarks" / "gpu_suite.py"


def _gpu() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None if torch.cuda.get_device_capability()[0] >= 8 else "GPU older than Ampere"


GPU = _gpu()


def _suite_module():
    spec = importlib.util.spec_from_file_location("gpu_suite_under_test", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_llama3_8b_shapes_are_the_published_ones():
    w = LLAMA3_8B_WEIGHTS
    assert w["q_proj"] == w["o_proj"] == (4096, 4096)
    assert w["k_proj"] == w["v_proj"] == (1024, 4096)  # 8 KV heads x 128 (grouped-query attention)
    assert w["gate_proj"] == w["up_proj"] == (14336, 4096) and w["down_proj"] == (4096, 14336)
    shapes = distinct_layer_shapes()
    assert shapes[:2] == [(("gate_proj", "up_proj"), 4096, 14336), (("down_proj",), 14336, 4096)]  # FFN first
    assert sorted(shapes[2:]) == [(("k_proj", "v_proj"), 4096, 1024), (("q_proj", "o_proj"), 4096, 4096)]
    plan = llm_gemm_plan()
    assert len(plan) == 4 * (4 + 3) * 2 and len({(g.shape.m, g.shape.k, g.shape.n, g.dtype) for g in plan}) == len(plan)
    assert {g.shape.m for g in plan if g.phase == "prefill"} == {2048, 4096, 8192, 16384}
    assert {g.shape.m for g in plan if g.phase == "decode"} == {1, 16, 64}
    assert {g.dtype for g in plan} == {"float16", "bfloat16"}
    first_non_ffn = next(i for i, g in enumerate(plan) if not g.ffn)
    assert all(g.ffn and g.phase == "prefill" for g in plan[:first_non_ffn]) and first_non_ffn == 16
    assert plan[0].shape.m == 16384 and [g.dtype for g in plan[:2]] == ["float16", "bfloat16"]
    assert all(g.phase == "decode" for g in plan[-24:]) and set(FFN_LAYERS) <= set(w)


def _ci(ratio, low, high, rounds=8):
    return RatioCI(ratio=ratio, low=low, high=high, level=0.95, rounds=rounds)


def test_selection_keeps_only_measured_winners_and_says_why_the_rest_stay_dense():
    assert wins(_ci(1.2, 1.06, 1.3), 1.05) and not wins(_ci(1.2, 1.04, 1.3), 1.05)  # the interval decides
    assert wins(_ci(1.06, 0.0, 9.0, rounds=1), 1.05) and not wins(_ci(1.04, 1.04, 1.04, rounds=1), 1.05)
    selection = {
        "margin": 1.05, "include": ["layers.0.ffn_in", "layers.1.ffn_in", "pooler"],
        "measurements": [
            {"name": "layers.0.ffn_in", "m": 49152, "k": 1024, "n": 4096, "decision": "include", "speedup": {"ratio": 1.3, "low": 1.2, "high": 1.35}},
            {"name": "layers.1.ffn_in", "m": 49152, "k": 1024, "n": 4096, "decision": "include", "speedup": {"ratio": 1.3, "low": 1.2, "high": 1.35}},
            {"name": "layers.0.query", "m": 49152, "k": 1024, "n": 1024, "decision": "exclude", "speedup": {"ratio": 0.95, "low": 0.9, "high": 0.97}},
            {"name": "layers.1.query", "m": 49152, "k": 1024, "n": 1024, "decision": "exclude", "speedup": {"ratio": 0.95, "low": 0.9, "high": 0.97}},
            {"name": "head", "m": 128, "k": 1024, "n": 2, "decision": "exclude", "reason": "shape below the semi-structured kernel's alignment"},
        ],
    }
    split = split_selection(selection, ["layers.0.query", "layers.0.ffn_in", "layers.1.query", "layers.1.ffn_in", "layers.1.ffn_out"])
    assert split["sparse"] == ["layers.0.ffn_in", "layers.1.ffn_in"]  # 'pooler' was selected but cannot convert: not a candidate
    assert list(split["dense"]) == ["layers.0.query", "layers.1.query", "layers.1.ffn_out"]
    assert "0.95x [0.90, 0.97], below the margin 1.05" in split["dense"]["layers.0.query"]
    assert split["dense"]["layers.1.ffn_out"] == "not measured by selection"
    assert layer_pattern("layers.12.ffn_in") == "layers.*.ffn_in" and layer_pattern("pooler") == "pooler"
    assert grouped(split["dense"]) == {"layers.*.query": 2, "layers.*.ffn_out": 1}


def test_conversion_limited_to_selected_layers_touches_nothing_else():
    from sparsekit.bench.torch_sparse import to_semi_structured_

    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32))
    before = [p.clone() for p in model.parameters()]
    conversion = to_semi_structured_(model, "float16", include=[])  # nothing selected: no 2:4 kernel is asked for
    assert conversion.converted == [] and conversion.skipped == {"0": "kept dense: not selected", "2": "kept dense: not selected"}
    assert conversion.sparse_weight_bytes == conversion.dense_weight_bytes == 2 * 32 * 32 * 4
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_compile_pair_runs_the_same_mode_on_both_sides_or_falls_back_on_both_and_says_why():
    torch.manual_seed(0)
    dense, other = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)).eval(), nn.Sequential(nn.Linear(16, 8)).eval()
    x = (torch.randn(4, 16),)
    ok = compile_pair(dense, other, x, backend="eager")
    assert ok.compiled and ok.mode == "torch.compile(backend=eager, mode=default, dynamic=True)" and ok.fallback is None
    assert set(ok.seconds) == {"dense", "sparse"} and ok.graph_breaks == {"dense": 0, "sparse": 0}
    with torch.no_grad():
        y = torch.randn(7, 16)  # another batch size: the same compiled model (dynamic shapes)
        assert torch.allclose(ok.dense(y), dense(y))

    def refusing_backend(gm, example_inputs):
        raise NotImplementedError("SparseSemiStructuredTensor cannot be traced here")

    bad = compile_pair(dense, other, x, backend=refusing_backend)
    assert not bad.compiled and bad.mode == EAGER and bad.dense is dense and bad.sparse is other
    assert bad.fallback.startswith("dense side did not compile") and "cannot be traced here" in bad.fallback and "\n" not in bad.fallback
    assert json.loads(json.dumps(bad.to_dict()))["mode"] == EAGER


def test_a_failing_unit_does_not_stop_the_next_unit_or_job(tmp_path, monkeypatch):
    gpu_suite = _suite_module()
    from sparsekit.bench import dry_run

    real, calls = dry_run.dense_gemm_row, []

    def first_fails(shape, *args, **kwargs):
        calls.append(shape.name)
        if len(calls) == 1:
            raise RuntimeError("cuSPARSELt refused this shape")
        return real(shape, *args, **kwargs)

    monkeypatch.setattr(dry_run, "dense_gemm_row", first_fails)
    state = gpu_suite.State(quick=True, gpu=False)
    suite = Suite(tmp_path, "gpu_suite", 60, stream=open(os.devnull, "w"))
    doc = suite.run([("llm-gemm", lambda job: gpu_suite.llm_gemm_job(job, state), 0), ("fp8", lambda job: gpu_suite.fp8_job(job, state), 0)])
    suite.close()
    llm, fp8 = doc["jobs"]
    assert llm["status"] == "partial" and llm["units"][0]["status"] == "failed" and "refused this shape" in llm["units"][0]["error"]["message"]
    assert [u["status"] for u in llm["units"][1:]] == ["ok"] * (len(llm["units"]) - 1) and len(llm["units"]) == 56
    assert all(u["result"]["no_gpu"] and u["result"]["full_shape"][0] in (2048, 4096, 8192, 16384, 1, 16, 64) for u in llm["units"][1:])
    assert fp8["status"] == "ok" and fp8["units"][0]["status"] == "skipped" and fp8["units"][0]["reason"].startswith("no GPU")


@pytest.mark.skipif(GPU is None, reason="a GPU is present: the suite measures instead of a dry run")
def test_the_suite_runs_end_to_end_without_a_gpu_and_its_output_renders(tmp_path):
    from sparsekit.bench.gpu_report import render

    jobs = "preflight,bert-large-seq384,select,plan-gemm,compiled,selection,llm-gemm,fp8,tensorrt"
    proc = subprocess.run([sys.executable, str(SUITE), "--out", str(tmp_path / "run"), "--budget-seconds", "60", "--only", jobs], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DRY RUN" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["gpu_suite.json", "gpu_suite.log"]
    doc = json.loads((tmp_path / "run" / "gpu_suite.json").read_text())
    assert doc["gpu"] is False and doc["dry_run"] and doc["status"] == "finished"
    status = {j["name"]: j["status"] for j in doc["jobs"]}
    assert status == {**{n: "ok" for n in jobs.split(",")}, "tensorrt": "skipped"}
    ok_rows = [u["result"] for j in doc["jobs"] for u in j["units"] if u["status"] == "ok" and isinstance(u.get("result"), dict) and "dense" in u["result"]]
    assert ok_rows and all(r["no_gpu"] is True and "sparse" not in r for r in ok_rows)  # dense only: nothing poses as 2:4
    plan_gemm = next(j for j in doc["jobs"] if j["name"] == "plan-gemm")
    assert sum("skipped" in (u.get("result") or {}) for u in plan_gemm["units"]) == 4  # K 9, 288 (twice) and 32: below the kernels' alignment
    from sparsekit.errors import SparsekitError
    from sparsekit.plan.speed_table import load_speed_table

    with pytest.raises(SparsekitError, match="holds no GEMM measurement"):  # a dry run cannot pose as a speed table
        load_speed_table(tmp_path / "run" / "gpu_suite.json")
    compiled = next(j for j in doc["jobs"] if j["name"] == "compiled")
    assert compiled["result"]["compile"]["mode"].startswith("torch.compile(backend=eager")
    out = render(tmp_path / "run" / "gpu_suite.json", tmp_path / "rendered")
    md = (out / "summary.md").read_text()
    assert "DRY RUN without a GPU" in md and "| Llama-3-8B FFN GEMMs >= 1.4x (prefill) | no LLM GEMM row measured | no data |" in md
    assert "| llm-gemm | ok |" in md and "| 56 |" in md


# On an Ampere+ GPU (the device run's pytest step): the new paths with real 2:4 kernels, small shapes.


@pytest.mark.gpu
@pytest.mark.skipif(GPU is not None, reason=GPU or "")
def test_llm_decode_gemm_with_algorithm_search_and_fp8_row_or_refusal():
    from sparsekit.bench.fp8 import fp8_gemm
    from sparsekit.bench.gemm import GemmShape, time_gemm
    from sparsekit.bench.harness import BenchConfig

    config = BenchConfig(rounds=2, round_seconds=0.02, min_iters=4, warmup_seconds=0.05)
    decode = time_gemm(GemmShape("k/v decode", 1, 4096, 1024), config, "bfloat16", alg_search=True)
    assert decode.max_rel_err < 6e-2 and decode.pair.sparse.median > 0
    assert decode.alg_id is not None or any("search unavailable" in n for n in decode.notes)
    row = fp8_gemm(GemmShape("fp8", 1024, 1024, 1024), config)
    if "refused" in row:
        assert row["refused"] and "\n" not in row["refused"]
    else:
        assert row["max_rel_err"] < 2e-2 and row["speedup"]["ratio"] > 0 and row["method"] in ("cuda-graph", "eager-loop")


@pytest.mark.gpu
@pytest.mark.skipif(GPU is not None, reason=GPU or "")
def test_compiled_and_selection_guided_pairs_on_the_gpu():
    from dataclasses import replace

    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.selective import selective_pair
    from sparsekit.bench.torch_pair import measure_batch, prepare_torch_sparse
    from sparsekit.bench.torch_sparse import cuda_inputs
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.direct import mask_weights_2to4_

    loaded = load_model("bert", {"hidden": 256, "ffn": 1024, "heads": 4, "layers": 2, "seq": 64, "attention": "sdpa"})
    mask_weights_2to4_(loaded.model, exclude=["pooler", "head"])
    pair = prepare_torch_sparse(loaded, "float16", mask_if_dense=False)
    config = BenchConfig(rounds=2, round_seconds=0.02, min_iters=3, warmup_seconds=0.05)
    models = compile_pair(pair.dense, pair.sparse, cuda_inputs(loaded.inputs.random(batch=4, seed=1), "float16"))
    assert models.compiled or (models.mode == EAGER and models.fallback)
    row = measure_batch(replace(pair, dense=models.dense, sparse=models.sparse), 8, config)
    assert row["max_rel_err_sparse_vs_dense"] < 2e-2 and row["kernels"]["sparse"]["sparse_gemm_calls"] >= 1
    half = pair.conversion.converted[::2]
    sel = selective_pair(pair, half)
    assert sel.conversion.converted == half and 1.0 < sel.bound < pair.bound
    assert measure_batch(sel, 8, config)["kernels"]["sparse"]["sparse_gemm_calls"] >= 1
    none = selective_pair(pair, [])
    assert none.bound == 1.0 and measure_batch(none, 8, config)["kernels"]["sparse"]["sparse_gemm_calls"] == 0


def test_the_plan_gemms_are_the_planned_models_gemms():
    from sparsekit.models.source import load_model
    from sparsekit.plan.planner import layer_trades
    from sparsekit.plan.speed_table import SpeedTable
    from sparsekit.sparsify.select import candidate_layers

    table = set(_suite_module().PLAN_GEMMS.values())
    loaded = load_model("cnn", {"in_channels": 1, "image_size": 32, "width": 32})  # the digits task's CNN at image_size 32
    cnn = {t.gemm for t in layer_trades(loaded, list(candidate_layers(loaded.model)), SpeedTable.ideal(), 32, "float16").values()}
    assert {g for g in cnn if g[0] > 32} <= table  # every conv's implicit GEMM (the 10-class head runs on M = 32 rows)
    hidden, ffn, tokens = 384, 1536, 128  # all-MiniLM-L6-v2
    for batch in (32, 8):
        m = batch * tokens
        assert {(m, hidden, hidden), (m, hidden, ffn), (m, ffn, hidden)} <= table
