"""Rendering a GPU suite document, the kernel grouping, and the output flattening the pair uses.

The document rendered here is produced by the suite itself on the CPU (dense forwards timed in
paired rounds), shaped like the GPU suite's jobs: what the renderer reads is what the suite writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.bench.gemm import GemmShape
from sparsekit.bench.gpu_report import gpu_slug, render, render_markdown
from sparsekit.bench.harness import measure_pair
from sparsekit.bench.kernels import kernel_family, sparse_library, summarize_kernels
from sparsekit.bench.suite import Suite
from sparsekit.models.outputs import flatten_outputs
from sparsekit.models.source import load_model

from .test_suite import FAST, CpuRunner

REPO = Path(__file__).resolve().parents[2]


class LinearRunner:
    def __init__(self, shape: GemmShape, label: str) -> None:
        self.label = label
        self._w = torch.randn(shape.n, shape.k)
        self._x = [torch.randn(shape.m, shape.k) for _ in range(2)]
        self._i = 0

    def step(self) -> float:
        import time

        self._i += 1
        start = time.perf_counter()
        torch.nn.functional.linear(self._x[self._i % 2], self._w)
        return (time.perf_counter() - start) * 1e3


def cpu_document(tmp_path: Path) -> dict:
    suite = Suite(tmp_path, "gpu_suite", 120, stream=open(os.devnull, "w"))
    loaded = load_model("bert")
    bound = analyze_model(loaded).summary["amdahl_bound"]

    def preflight(job):
        return {"facts": job.unit("facts", lambda: {"device": "CPU orchestration check", "compute_capability": None}), "tiny_linear": None, "ceilings": None}

    def model(job):
        for batch in (1, 2):
            spec = loaded.inputs.with_batch(batch)
            row = lambda s=spec, b=batch: {"seq": 64, "attention": "matmul", "amdahl_bound": bound, "max_rel_err_sparse_vs_dense": 0.0, "timing": "eager",
                                           **measure_pair(CpuRunner(loaded.model, s, "dense"), CpuRunner(loaded.model, s, "sparse"), b, FAST).to_dict()}
            job.unit(f"batch {batch}", row)

    def gemm(job):
        shape = GemmShape("cpu 64x256x128", 64, 256, 128)
        job.unit(shape.name, lambda: {"shape": shape.name, "m": 64, "k": 256, "n": 128, "dtype": "float32", "method": "eager-loop", "dense_tflops": 0.01, "sparse_tflops": 0.01,
                                      **measure_pair(LinearRunner(shape, "dense"), LinearRunner(shape, "sparse"), 64, FAST).to_dict()})
        job.unit("broken shape", lambda: 1 / 0)

    doc = suite.run([("preflight", preflight, 0), ("bert-large-seq384", model, 0), ("gemm", gemm, 0), ("select", lambda job: None, 10**6)])
    suite.close()
    return doc


def test_render_shows_every_measured_row_and_every_failure(tmp_path):
    doc = cpu_document(tmp_path / "run")
    md = render_markdown(doc)
    rows = [u["result"] for j in doc["jobs"] for u in j["units"] if u["status"] == "ok" and "speedup" in (u["result"] or {})]
    assert len(rows) == 3
    for r in rows:
        assert f"**{r['speedup']['ratio']:.3f}x** [{r['speedup']['low']:.3f}, {r['speedup']['high']:.3f}]" in md
    assert "ZeroDivisionError" in md and "| select | skipped |" in md and "| gemm | partial |" in md
    out = render(tmp_path / "run" / "gpu_suite.json", tmp_path / "results")
    assert {p.name for p in out.iterdir()} == {"gpu_suite.json", "gpu_suite.log", "summary.md", "e2e.png", "gemm.png"}
    for png in ("e2e.png", "gemm.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert gpu_slug(doc) == "cpu-orchestration-check"


def test_render_cli_refuses_a_missing_or_foreign_file(tmp_path):
    script = str(REPO / "benchmarks" / "gpu_suite.py")
    missing = subprocess.run([sys.executable, script, "render", str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "x.json").write_text("[1, 2]")
    foreign = subprocess.run([sys.executable, script, "render", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert foreign.returncode == 2 and "not a GPU suite document" in foreign.stderr and "Traceback" not in foreign.stderr


def test_kernel_families_from_library_names():
    names = {
        "sm90_xmma_sparse_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64": ("sparse-gemm", "cuSPARSELt"),
        "void cutlass::Kernel<cutlass::gemm::kernel::SparseGemm<...>>(...)": ("sparse-gemm", "CUTLASS"),
        "nvjet_hsh_256x128_64x4_1x2_h_bz_coopA_TNN": ("dense-gemm", None),
        "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x256x64": ("dense-gemm", None),
        "void pytorch_flash::flash_fwd_kernel<...>": ("attention", None),
        "void at::native::vectorized_layer_norm_kernel<c10::Half>": ("other", None),
    }
    for name, (family, lib) in names.items():
        assert kernel_family(name) == family, name
        assert sparse_library(name) == lib, name
    profile = summarize_kernels([(n, 2, 10.0) for n in names] + [(next(iter(names)), 1, 5.0)], limit=3)
    assert profile.sparse_gemm_calls == 5 and profile.family_us["sparse-gemm"] == 25.0
    assert profile.total_us == 65.0 and len(profile.kernels) == 3 and profile.kernels[0]["gpu_us"] == 15.0
    assert profile.sparse_libraries == ["cuSPARSELt", "CUTLASS"]


def test_outputs_flatten_to_named_tensors():
    from dataclasses import dataclass

    @dataclass
    class Out:
        logits: torch.Tensor
        loss: torch.Tensor | None = None

    t = torch.zeros(1)
    assert [n for n, _ in flatten_outputs(t)] == ["output"]
    assert [n for n, _ in flatten_outputs((t, None, [t, t]))] == ["output", "output2.output", "output2.output1"]
    assert [n for n, _ in flatten_outputs({"last_hidden_state": t, "pooler_output": t})] == ["last_hidden_state", "pooler_output"]
    assert [n for n, _ in flatten_outputs(Out(t))] == ["logits"]
    try:
        flatten_outputs((t, "text"))
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "ModelSourceError" and "str" in str(exc)
    else:
        raise AssertionError("a string output was accepted")


def test_sdpa_attention_counts_as_much_work_as_matmul_attention():
    matmul = load_model("bert", {"seq": 128})
    sdpa = load_model("bert", {"seq": 128, "attention": "sdpa"})
    sdpa.model.load_state_dict(matmul.model.state_dict())
    x = matmul.inputs.random(seed=3)
    assert torch.allclose(matmul.model(*x), sdpa.model(*x), atol=1e-5)
    a, b = analyze_model(matmul), analyze_model(sdpa)
    assert a.total_flops == b.total_flops
    assert b.summary["amdahl_bound"] == a.summary["amdahl_bound"] < 1.95
    assert json.dumps(a.summary) == json.dumps(b.summary)


def _speedup(ratio: float, spread: float = 0.02) -> dict:
    return {"ratio": ratio, "low": ratio - spread, "high": ratio + spread, "rounds": 8, "level": 0.95}


def _lat(ms: float) -> dict:
    return {"median": ms, "p99": ms * 1.05, "mean": ms, "n": 40, "min": ms, "max": ms, "p90": ms, "p95": ms, "cov": 0.01, "throughput": 1.0, "unstable": False}


def _kernels(gemm_dense: float, gemm_sparse: float, rest: float, copy: float) -> dict:
    return {"dense": {"family_us": {"dense-gemm": gemm_dense, "sparse-gemm": 0.0, "attention": 500.0, "copy": 0.0, "other": rest}, "total_us": gemm_dense + 500 + rest, "kernels": [], "sparse_libraries": [], "sparse_gemm_calls": 0},
            "sparse": {"family_us": {"dense-gemm": 0.0, "sparse-gemm": gemm_sparse, "attention": 500.0, "copy": copy, "other": rest}, "total_us": gemm_sparse + 500 + rest + copy,
                       "kernels": [{"name": "sm90_xmma_sparse_gemm_f16f16_f16f32_f32_tn_t_tilesize128x256", "family": "sparse-gemm", "calls": 144, "gpu_us": gemm_sparse}], "sparse_libraries": ["cuSPARSELt"], "sparse_gemm_calls": 144}}


def _e2e(seq: int, batch: int, ratio: float, **extra) -> dict:
    return {"seq": seq, "batch": batch, "attention": "sdpa", "dense": _lat(10.0), "sparse": _lat(10.0 / ratio), "speedup": _speedup(ratio), "amdahl_bound": 1.89,
            "max_rel_err_sparse_vs_dense": 2e-3, "timing": "cuda-graph", "kernels": _kernels(8000.0, 8000.0 / 1.3, 1500.0, 300.0), "notes": [], **extra}


def _gemm(layers, phase, m, k, n, dtype, ratio) -> dict:
    return {"shape": f"llama-3-8b {'/'.join(layers)} {k}->{n}, M={m}", "layers": list(layers), "phase": phase, "ffn": "down_proj" in layers or "gate_proj" in layers,
            "m": m, "k": k, "n": n, "dtype": dtype, "dense": _lat(0.2), "sparse": _lat(0.2 / ratio), "speedup": _speedup(ratio), "method": "cuda-graph",
            "dense_tflops": 600.0, "sparse_tflops": 600.0 * ratio, "alg_id": 2, "notes": [], "kernels": _kernels(200.0, 200.0 / ratio, 0.0, 0.0)}


def _units(rows, label="u") -> list:
    return [{"label": f"{label} {i}", "status": "ok", "result": r} for i, r in enumerate(rows)]


def synthetic_second_run() -> dict:
    """A second-run document as the GPU suite writes it, with known ratios: the goals' verdicts are predictable."""
    facts = {"device": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "torch": "2.11.0+cu130"}
    mode = {"mode": "torch.compile(backend=inductor, mode=default, dynamic=True)", "compiled": True, "fallback": None, "compile_seconds": {"dense": 40.0, "sparse": 45.0}, "graph_breaks": {"dense": 0, "sparse": 0}}
    selection = [_e2e(384, b, r, selected_2to4=n, kept_dense=146 - n, sparse_groups={"layers.*.ffn_in": n}, dense_groups={"layers.*.query": 24}, full_2to4_amdahl_bound=1.89)
                 for b, r, n in ((8, 1.0, 0), (32, 1.04, 24), (128, 1.12, 48))]
    choices = [{"label": "select seq 384 batch 128", "status": "ok", "result": {"seq": 384, "batch": 128, "dense_reasons": {"layers.*.query": "GEMM 49152x1024x1024 measured 0.95x [0.93, 0.97], below the margin 1.05"}}}]
    llm = [_gemm(("gate_proj", "up_proj"), "prefill", 16384, 4096, 14336, "bfloat16", 1.45), _gemm(("down_proj",), "prefill", 16384, 14336, 4096, "float16", 1.30),
           _gemm(("q_proj", "o_proj"), "decode", 1, 4096, 4096, "float16", 0.8)]
    return {
        "suite": "gpu_suite", "started": "2026-12-06T00:00:00Z", "budget_seconds": 400, "elapsed_seconds": 390, "gpu": True, "dry_run": None,
        "jobs": [
            {"name": "preflight", "status": "ok", "units": [], "result": {"facts": facts, "ceilings": {}}},
            {"name": "bert-large-seq384", "status": "ok", "model": {"dtype": "float16"}, "units": _units([_e2e(384, 8, 0.92), _e2e(384, 128, 1.08)])},
            {"name": "compiled", "status": "ok", "mode": mode, "units": _units([_e2e(384, 32, 1.1, mode=mode["mode"]), _e2e(384, 128, 1.21, mode=mode["mode"])])},
            {"name": "selection", "status": "ok", "units": choices + [{"label": f"seq 384 batch {r['batch']}", "status": "ok", "result": r} for r in selection]},
            {"name": "llm-gemm", "status": "ok", "units": _units(llm)},
            {"name": "fp8", "status": "ok", "units": [{"label": "fp8 x", "status": "ok", "result": {"refused": "torch._cslt_compress(float8_e4m3fn weight): RuntimeError: not supported"}}],
             "result": {"refused": "torch._cslt_compress(float8_e4m3fn weight): RuntimeError: not supported", "torch": "2.11.0+cu130"}},
        ],
    }


def test_render_sets_the_second_run_next_to_its_goals(tmp_path):
    doc = synthetic_second_run()
    md = render_markdown(doc)
    goals = md[md.index("## Goals"):md.index("## End to end: BERT")]
    e2e, sel, llm = [line for line in goals.splitlines() if line.startswith("| ") and "goal" not in line and "---" not in line]
    assert "best **1.210x** [1.190, 1.230]: compiled seq 384 batch 128 float16" in e2e and "| **met** |" in e2e
    assert "GEMMs 8.00 -> 6.15 ms" in e2e and "layout copies 0.00 -> 0.30 ms" in e2e  # the profile explains the row
    assert "worst **1.000x** [0.980, 1.020] (seq 384 batch 8, 0 layers 2:4); 3 of 3 batches measured | **met** |" in sel
    assert "best **1.450x** [1.430, 1.470] (llama-3-8b gate_proj/up_proj 4096->14336, M=16384, bfloat16); 1 of 2 rows at or above | **met** |" in llm
    assert "Mode that ran: **torch.compile(backend=inductor, mode=default, dynamic=True)**" in md
    assert "| 384 | 128 | 48 / 98 | layers.*.ffn_in x48 | layers.*.query x24 | **1.120x** [1.100, 1.140] | 1.89x | 1.89x |" in md
    assert "`layers.*.query` stayed dense: GEMM 49152x1024x1024 measured 0.95x" in md
    assert "| gate_proj/up_proj | prefill | bfloat16 | 16384 | 4096 | 14336 |" in md and "| q_proj/o_proj | decode | float16 | 1 | 4096 | 4096 |" in md
    assert "**FP8 2:4 refused** by torch 2.11.0+cu130: torch._cslt_compress(float8_e4m3fn weight): RuntimeError: not supported" in md
    profile = md[md.index("## Where the time goes"):md.index("## GEMMs")]
    assert profile.count("| compiled | 384 |") == 2 and profile.count("| selection | 384 |") == 3

    doc["jobs"][2]["units"] = _units([_e2e(384, 128, 1.16)])  # interval 1.14-1.18: only the point estimate reaches 1.15
    doc["jobs"][3]["units"].append({"label": "seq 384 batch 64", "status": "ok", "result": _e2e(384, 64, 0.9)})
    doc["jobs"][4]["units"] = _units([_gemm(("down_proj",), "prefill", 2048, 14336, 4096, "float16", 1.2)])
    md = render_markdown(doc)
    assert "met by the point estimate only (interval down to 1.140x)" in md
    assert "**not met** at seq 384 batch 64" in md and "0 of 1 rows at or above | **not met** |" in md

    (tmp_path / "gpu_suite.json").write_text(json.dumps(synthetic_second_run()))
    out = render(tmp_path / "gpu_suite.json", tmp_path / "out")
    assert {p.name for p in out.iterdir()} == {"gpu_suite.json", "summary.md", "e2e.png", "llm_gemm.png"}  # no BERT GEMM rows: no gemm.png
    for png in ("e2e.png", "llm_gemm.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert gpu_slug(synthetic_second_run()) == "nvidia-h100-80gb-hbm3"
