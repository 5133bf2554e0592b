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
