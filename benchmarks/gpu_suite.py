"""GPU suite: dense vs 2:4 on a real Ampere+/Hopper GPU, in one command, most important first.

    python benchmarks/gpu_suite.py --out DIR --budget-seconds 420      # on the GPU machine
    python benchmarks/gpu_suite.py render DIR/gpu_suite.json            # afterwards, on any CPU

Jobs, in this order (each one recorded and skipped, failed or done on its own; the JSON is
rewritten after every unit, so a run cut short keeps what it measured):

  1. preflight: GPU facts, cuSPARSELt, one tiny 2:4 conversion + linear + CUDA-graph capture,
     the card's measured fp16 matmul rate and copy bandwidth.
  2. bert-large-seq384 (the headline): a BERT-large-shaped encoder (24 x 1024, FFN 4096, fused
     SDPA attention), fp16, batches 8 / 32 / 128, whole forward captured in a CUDA graph, with
     the kernel profile of each side (where the time goes) per batch.
  3. bert-large-seq128: the same two models at sequence 128.
  4. gemm: the FFN and attention-projection GEMMs of BERT-base/large at M >= 4096, timed as CUDA
     graphs of many calls (kernels, not Python dispatch).
  5. select: `sparsekit select` on bert-base at batch 8 (GEMM timings cached by shape).
     Jobs 2-5 are the first run's jobs with the first run's settings: one comparison.
  5b. plan-gemm: the GEMMs of the models `benchmarks/plan.py` plans (MiniLM, the 32x32 digits
     CNN), so that their plans can read measured ratios (`sparsekit plan --speed`).
  6. compiled: the dense and 2:4 BERT-large through the same `torch.compile` mode (inductor,
     dynamic shapes: one compile for every batch and both sequence lengths), each forward one
     CUDA graph; if the 2:4 model does not compile, both sides run eager and the reason is kept.
  7. selection: at every batch of both sequence lengths, `select` times the model's GEMMs at
     that batch and only the layers it measures as winning run 2:4 (the others stay dense);
     measured ratio next to the selected layers' Amdahl bound.
  8. llm-gemm: Llama-3-8B GEMMs (q/o 4096x4096, k/v 1024x4096, gate/up 14336x4096, down
     4096x14336) at prefill rows 2048-16384 and decode rows 1-64, fp16 and bf16, each with the
     cuSPARSELt algorithm its search picks.
  9. fp8: exploratory FP8 (e4m3) 2:4 vs FP8 dense (`torch._scaled_mm`) GEMMs; where torch refuses
     FP8 2:4, the refusal (step and exception) is the result.
  10. gemm-large, attention-matmul, bf16, batch-1, tensorrt: the rest of the first run's jobs
     (square 8192 / Llama FFN / M=65536 GEMMs with and without algorithm search, unfused
     attention, bf16 end to end, batch 1, TensorRT engines where installed), as the budget allows.

No ModelOpt on this path: 2:4 masks are the kit's own TensorRT-layout magnitude masks, computed
on the GPU (equal to ModelOpt's, element for element: tests/sparsify/test_direct.py). Every
model is checked before it is timed (per-layer and end-to-end agreement of the 2:4 kernels with
the dense ones); the kernels each side ran are recorded from the torch profiler.

Without a CUDA GPU (Ampere or newer) the suite runs as a dry run: every job goes through its
orchestration on the CPU at tiny shapes, times dense work only and records ``no_gpu`` (units
that need 2:4 kernels are recorded as skipped, 'no GPU'). It checks the command end to end
before a GPU's minutes are spent; it measures nothing about 2:4.

The machine needs torch with CUDA and cuSPARSELt, numpy and pyyaml, plus the wheels pinned in
benchmarks/gpu-wheels.txt (`make gpu-wheels`; see benchmarks/README.md for the device command).
The run writes two files into --out: gpu_suite.json (the source of truth) and gpu_suite.log.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a plain copy of the repository (no install)

BERT_LARGE = {"vocab": 30522, "hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "attention": "sdpa"}
HEADLINE_BATCHES = (8, 32, 128)
GEMM_LAYERS = {
    "bert-large ffn_in 1024->4096": (1024, 4096),
    "bert-large ffn_out 4096->1024": (4096, 1024),
    "bert-large qkv/out 1024x1024": (1024, 1024),
    "bert-base ffn_in 768->3072": (768, 3072),
    "bert-base ffn_out 3072->768": (3072, 768),
    "bert-base qkv/out 768x768": (768, 768),
}
GEMM_ROWS = (16384, 4096)  # M = batch x sequence: e.g. 32 x 512 and 32 x 128
# Larger GEMMs, where 2:4 kernels have the most room: a square reference and a Llama-3-8B FFN.
GEMM_LARGE = {"square 8192": (8192, 8192, 8192), "llama-3-8b ffn_in 4096->14336": (8192, 4096, 14336), "bert-large ffn_in 1024->4096": (65536, 1024, 4096)}


# The GEMMs of the models `benchmarks/plan.py` plans (MiniLM at batch 32 and 8 x 128 tokens; the
# 32x32 digits CNN's convs as implicit GEMMs at batch 32), so that their plans can use measured
# ratios instead of the nearest BERT shape. Shapes whose K is not a multiple of 64 (or N of 32) are
# below the semi-structured kernels' alignment: recorded as such, not timed.
PLAN_GEMMS = {
    "minilm qkv/out 384x384, batch 32": (4096, 384, 384),
    "minilm ffn_in 384->1536, batch 32": (4096, 384, 1536),
    "minilm ffn_out 1536->384, batch 32": (4096, 1536, 384),
    "minilm qkv/out 384x384, batch 8": (1024, 384, 384),
    "minilm ffn_in 384->1536, batch 8": (1024, 384, 1536),
    "minilm ffn_out 1536->384, batch 8": (1024, 1536, 384),
    "digits32 cnn stem conv 3x3 1->32": (32768, 9, 32),
    "digits32 cnn stage0 conv 3x3 32->32": (32768, 288, 32),
    "digits32 cnn stage1 conv 3x3 32->64": (8192, 288, 64),
    "digits32 cnn stage1 conv 3x3 64->64": (8192, 576, 64),
    "digits32 cnn stage1 shortcut 1x1 32->64": (8192, 32, 64),
    "digits32 cnn stage2 conv 3x3 64->128": (2048, 576, 128),
    "digits32 cnn stage2 conv 3x3 128->128": (2048, 1152, 128),
    "digits32 cnn stage2 shortcut 1x1 64->128": (2048, 64, 128),
}


class State:
    """What jobs share: settings and the models built once (freed when no longer needed)."""

    def __init__(self, quick: bool, gpu: bool = True) -> None:
        from sparsekit.bench.harness import BenchConfig

        self.quick = quick
        self.gpu = gpu  # False: CPU dry run (tiny shapes, dense only, 'no GPU' recorded)
        self.model_config = BenchConfig(rounds=6 if quick else 12, round_seconds=0.1, min_iters=10, warmup_seconds=0.3)
        self.gemm_config = BenchConfig(rounds=6 if quick else 10, round_seconds=0.05, min_iters=10, warmup_seconds=0.2)
        # the newer end-to-end and LLM jobs: fewer, shorter rounds (more rows in the same minutes)
        self.e2e_config = BenchConfig(rounds=4 if quick else 8, round_seconds=0.05, min_iters=5, warmup_seconds=0.2)
        self.llm_config = BenchConfig(rounds=4 if quick else 8, round_seconds=0.04, min_iters=10, warmup_seconds=0.1)
        self.compile_backend = "inductor" if gpu else "eager"
        self.compile_limit_s = 150.0  # a slower compile falls back to eager (recorded), so later jobs keep their minutes
        self.loaded = None  # BERT-large, masked, fp32 on the GPU
        self.pairs: dict = {}
        self.compiled: dict = {}
        self.dry_models: dict = {}
        self.gemm_cache: dict = {}


NO_GPU_SKIP = "no GPU: needs 2:4 kernels (CUDA, Ampere or newer)"


def dry_preflight(job, state: State) -> dict:
    """Preflight without a GPU: the machine's facts; the GPU checks are recorded as skipped."""
    import torch

    from sparsekit.bench.dry_run import NO_GPU
    from sparsekit.bench.machine import machine_facts

    why = "no CUDA device" if not torch.cuda.is_available() else f"{torch.cuda.get_device_name(0)} is older than Ampere"
    facts = job.unit("facts", lambda: {"machine": machine_facts(gpu=False), "torch": torch.__version__, "cuda": torch.version.cuda, "device": "no GPU (CPU dry run)", "gpu": False, "why": why}, 0)
    job.skip("tiny 2:4 linear + CUDA graph", NO_GPU_SKIP)
    job.skip("ceilings", NO_GPU_SKIP)
    return {"facts": facts, "tiny_linear": None, "ceilings": None, "dry_run": NO_GPU}


def preflight(job, state: State) -> dict:
    import torch

    from sparsekit.bench.machine import machine_facts

    if not state.gpu:
        return dry_preflight(job, state)

    def facts() -> dict:
        props = torch.cuda.get_device_properties(0)
        cusparselt = torch.backends.cusparselt.is_available()
        return {
            "machine": machine_facts(gpu=True), "torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))), "sms": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1), "l2_mib": round(getattr(props, "L2_cache_size", 0) / 2**20, 1),
            "cusparselt": cusparselt, "cusparselt_version": torch.backends.cusparselt.version() if cusparselt else None,
        }

    def tiny_linear() -> dict:
        from sparsekit.bench.cuda_timing import capture_graph
        from sparsekit.bench.torch_sparse import semi_structured
        from sparsekit.sparsify.pattern import magnitude_mask

        w = torch.randn(128, 128, device="cuda")
        w = (w * magnitude_mask(w)).half()
        sw = semi_structured(w)
        x = torch.randn(64, 128, device="cuda").half()
        ref = torch.nn.functional.linear(x, w).float()
        y = torch.nn.functional.linear(x, sw)
        eager = (y.float() - ref).abs().max().item() / ref.abs().max().item()
        strided = torch.randn(64, 2, 128, device="cuda").half()[:, 0]  # a row-strided operand, as x[:, 0]
        strided_err = (torch.nn.functional.linear(strided, sw).float() - torch.nn.functional.linear(strided, w).float()).abs().max().item() / ref.abs().max().item()
        static_out = {}
        graph = capture_graph(lambda: static_out.__setitem__("y", torch.nn.functional.linear(x, sw)))
        graph.replay()
        torch.cuda.synchronize()
        graphed = (static_out["y"].float() - ref).abs().max().item() / ref.abs().max().item()
        return {"subclass": type(sw).__name__, "eager_rel_err": eager, "graph_rel_err": graphed, "raw_output_contiguous (no kit hook)": y.is_contiguous(),
                "row_strided_input_rel_err (raw F.linear, no kit hook)": strided_err, "ok": eager < 1e-2 and graphed < 1e-2}

    def ceilings() -> dict:
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(3):
            a @ b
        start.record()
        for _ in range(10):
            a @ b
        end.record()
        end.synchronize()
        tflops = 2 * 8192**3 * 10 / (start.elapsed_time(end) / 1e3) / 1e12
        src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        dst.copy_(src)
        start.record()
        for _ in range(5):
            dst.copy_(src)
        end.record()
        end.synchronize()
        tbps = 2 * 2**30 * 5 / (start.elapsed_time(end) / 1e3) / 1e12
        return {"fp16_matmul_8192_tflops": round(tflops, 1), "copy_tb_per_s_read_plus_write": round(tbps, 2)}

    out = {"facts": job.unit("facts", facts, 0), "tiny_linear": job.unit("tiny 2:4 linear + CUDA graph", tiny_linear, 0), "ceilings": job.unit("ceilings", ceilings, 0)}
    if not (out["tiny_linear"] or {}).get("ok"):
        raise RuntimeError("the tiny 2:4 linear failed or disagreed with dense: semi-structured kernels are not usable here")
    return out


def _bert_large_at(state: State, seq: int):
    """The headline model at sequence ``seq``: built and masked once (on the GPU, fp32)."""
    from sparsekit.models.source import LoadedModel, load_model
    from sparsekit.input_spec import InputSpec, InputTensor
    from sparsekit.sparsify.direct import mask_weights_2to4_

    if state.loaded is None:
        loaded = load_model("bert", {**BERT_LARGE, "seq": 384})
        loaded.model.to("cuda")
        state.masking = mask_weights_2to4_(loaded.model, exclude=["pooler", "head"]).to_dict()
        state.masking["excluded_why"] = "pooler and head run on one row per sequence (M = batch): too small for a sparse kernel to win"
        state.loaded = loaded
    spec = InputSpec((InputTensor("input_ids", (1, seq), "int64", BERT_LARGE["vocab"]),))
    return LoadedModel(state.loaded.model, spec, state.loaded.source)


def _pair(state: State, seq: int, dtype: str):
    """The dense/2:4 pair of one dtype (built once), fed sequences of length ``seq``."""
    from sparsekit.bench.torch_pair import prepare_torch_sparse, with_inputs

    if (dtype, seq) not in state.pairs:
        loaded = _bert_large_at(state, seq)
        base = next((p for (d, _), p in state.pairs.items() if d == dtype), None)
        state.pairs[(dtype, seq)] = with_inputs(base, loaded.inputs) if base else prepare_torch_sparse(loaded, dtype, mask_if_dense=False)
    return state.pairs[(dtype, seq)]


def _dry_model(state: State, seq: int):
    """The CPU dry run's stand-in for the headline model: a tiny BERT, 2:4-masked like the real one."""
    from sparsekit.bench.dry_run import TINY_BERT, tiny_seq
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.direct import mask_weights_2to4_

    if seq not in state.dry_models:
        loaded = load_model("bert", {**TINY_BERT, "seq": tiny_seq(seq), "attention": BERT_LARGE["attention"]})
        report = mask_weights_2to4_(loaded.model, exclude=["pooler", "head"])
        state.dry_models[seq] = (loaded, report.masked)
    return state.dry_models[seq]


def dry_model_job(job, state: State, seq: int, batches, dtype: str, attention: str | None) -> dict:
    """A model job without a GPU: the tiny model's dense forward timed on the CPU at every batch."""
    from sparsekit.analyze.rules import amdahl_bound
    from sparsekit.bench.dry_run import NO_GPU, TINY_BERT, dense_model_row, tiny_batches
    from sparsekit.bench.torch_pair import _converted_share

    if job.unit(f"prepare tiny {dtype} seq {seq}", lambda: {"masked_layers": len(_dry_model(state, seq)[1])}, 5) is None:
        raise RuntimeError(f"the dry-run model at sequence {seq} could not be built (see the unit's error)")
    loaded, masked = state.dry_models[seq]
    share = _converted_share(loaded, loaded.model, masked)
    job.record.setdefault("model", {**TINY_BERT, "seq": loaded.inputs.tensors[0].shape[1], "dtype": "float32", "attention": attention or BERT_LARGE["attention"], "no_gpu": NO_GPU})
    for batch in tiny_batches(batches):
        job.unit(f"seq {seq} batch {batch}", lambda b=batch: dense_model_row(loaded.model, loaded.inputs, b, seq=seq, attention=attention or BERT_LARGE["attention"], amdahl_bound=round(amdahl_bound(share), 4)), 2)
    return {"amdahl_bound": round(amdahl_bound(share), 4), "converted_flop_share": round(share, 4), "no_gpu": NO_GPU}


def _record_profile(job, key: str, row: dict) -> None:
    """Keep the kernel families of both sides (GPU microseconds) per unit in the job's record."""
    kernels = row.get("kernels") or {}
    if kernels:
        job.record.setdefault("profile", {})[key] = {side: {"family_us": k.get("family_us"), "total_us": k.get("total_us")} for side, k in kernels.items()}


def model_job(job, state: State, seq: int, batches, dtype: str = "float16", attention: str | None = None) -> dict:
    """The BERT-large pair at one sequence length over ``batches`` (optionally another attention)."""
    from sparsekit.bench.torch_pair import measure_batch, torch_sparse_settings

    if not state.gpu:
        return dry_model_job(job, state, seq, batches, dtype, attention)
    pair = job.unit(f"prepare {dtype} seq {seq}", lambda: _pair(state, seq, dtype), 60)
    if pair is None:
        raise RuntimeError(f"the {dtype} pair at sequence {seq} could not be prepared (see the unit's error)")
    attention = attention or BERT_LARGE["attention"]
    job.record.setdefault("model", {**BERT_LARGE, "seq": seq, "dtype": dtype, "attention": attention})
    job.record.setdefault("evidence", {**pair.evidence(), "masking": state.masking})
    job.record.setdefault("settings", torch_sparse_settings(state.model_config, True))
    layers = [m for model in (pair.dense, pair.sparse) for m in model.modules() if hasattr(m, "attention")]

    def one(batch: int) -> dict:
        for layer in layers:
            layer.attention = attention
        try:
            return {"seq": seq, "attention": attention, "amdahl_bound": round(pair.bound, 4), "converted_flop_share": round(pair.flop_share, 4), **measure_batch(pair, batch, state.model_config)}
        finally:
            for layer in layers:
                layer.attention = BERT_LARGE["attention"]

    for batch in batches:
        row = job.unit(f"seq {seq} batch {batch}", lambda b=batch: one(b), 10 if batch <= 32 else 30)
        if row:
            _record_profile(job, f"seq {seq} batch {batch}", row)
            s, k = row["speedup"], row.get("kernels", {}).get("sparse", {})
            job.suite.say(f"  seq {seq} batch {batch}: {row['dense']['median']:.3f} -> {row['sparse']['median']:.3f} ms, {s['ratio']:.3f}x [{s['low']:.3f}, {s['high']:.3f}] "
                          f"(bound {pair.bound:.2f}x, err {row['max_rel_err_sparse_vs_dense']:.1e}, {row['timing']}, sparse GEMM kernels {k.get('sparse_gemm_calls')} via {k.get('sparse_libraries')})")
    return {"amdahl_bound": round(pair.bound, 4), "converted_flop_share": round(pair.flop_share, 4)}


def gemm_job(job, state: State, dtype: str = "float16", layers=None, rows=GEMM_ROWS) -> list:
    """Dense vs 2:4 GEMMs of transformer layer shapes, dispatch-free, with the kernels each ran."""
    from sparsekit.bench.gemm import GemmShape, time_gemm

    job.record["settings"] = {**state.gemm_config.model_dump(), "dtype": dtype, "timing": "CUDA graph of many calls per sample on rotated inputs; per-call ms"}
    done = []
    for m in rows:
        for name, (k, n) in (layers or GEMM_LAYERS).items():
            shape = GemmShape(f"{name}, M={m}", m, k, n)
            if not state.gpu:
                from sparsekit.bench.dry_run import dense_gemm_row

                job.unit(shape.name, lambda shape=shape: dense_gemm_row(shape), 1)
                continue

            def one(shape=shape) -> dict:
                timing = time_gemm(shape, state.gemm_config, dtype, profile=True)
                state.gemm_cache[(shape.m, shape.k, shape.n, dtype)] = timing
                return gemm_row(shape, dtype, timing)

            row = job.unit(shape.name, one, 8)
            if row:
                s = row["speedup"]
                job.suite.say(f"  {shape.name} {dtype}: {s['ratio']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] ({row['method']}, {row['dense_tflops']:.0f} -> {row['sparse_tflops']:.0f} TFLOP/s)")
                done.append(shape.name)
    return done


def gemm_row(shape, dtype: str, timing, **extra) -> dict:
    """One GEMM result row: the shape, its timing and the TFLOP/s of each side."""
    p = timing.pair
    return {"shape": shape.name, **extra, "m": shape.m, "k": shape.k, "n": shape.n, "dtype": dtype, **timing.to_dict(),
            "dense_tflops": shape.flops / p.dense.median / 1e9, "sparse_tflops": shape.flops / p.sparse.median / 1e9}


def plan_gemm_job(job, state: State, dtype: str = "float16") -> list:
    """The GEMMs of the planned models (:data:`PLAN_GEMMS`), for ``sparsekit plan --speed``."""
    from sparsekit.bench.gemm import GemmShape, time_gemm

    job.record["settings"] = {**state.gemm_config.model_dump(), "dtype": dtype, "timing": "CUDA graph of many calls per sample on rotated inputs; per-call ms"}
    done = []
    for name, (m, k, n) in PLAN_GEMMS.items():
        shape = GemmShape(name, m, k, n)
        if k % 64 or n % 32:
            job.unit(name, lambda shape=shape: {"shape": shape.name, "m": shape.m, "k": shape.k, "n": shape.n, "dtype": dtype, "skipped": "K not a multiple of 64 or N of 32: below the semi-structured kernels' alignment"}, 0)
            continue
        if not state.gpu:
            from sparsekit.bench.dry_run import dense_gemm_row

            job.unit(name, lambda shape=shape: dense_gemm_row(shape), 1)
            continue

        def one(shape=shape) -> dict:
            return gemm_row(shape, dtype, time_gemm(shape, state.gemm_config, dtype))

        row = job.unit(name, one, 4)
        if row:
            s = row["speedup"]
            job.suite.say(f"  {name}: {s['ratio']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] ({row['method']})")
            done.append(name)
    return done


def gemm_large_job(job, state: State) -> list:
    """Large GEMMs, each with cuSPARSELt's default algorithm and with the one its search picks."""
    from sparsekit.bench.gemm import GemmShape, time_gemm

    job.record["settings"] = {**state.gemm_config.model_dump(), "dtype": "float16", "timing": "CUDA graph of many calls per sample on rotated inputs; per-call ms"}
    done = []
    for name, (m, k, n) in GEMM_LARGE.items():
        for search in (False, True):
            shape = GemmShape(f"{name}, M={m}", m, k, n)
            if not state.gpu:
                from sparsekit.bench.dry_run import dense_gemm_row

                job.unit(shape.name + (" alg-search" if search else ""), lambda shape=shape: dense_gemm_row(shape), 1)
                continue

            def one(shape=shape, search=search) -> dict:
                timing = time_gemm(shape, state.gemm_config, "float16", profile=not search, alg_search=search)
                return {**gemm_row(shape, "float16", timing), "shape": shape.name + (" (alg search)" if search else "")}

            row = job.unit(shape.name + (" alg-search" if search else ""), one, 10)
            if row:
                s = row["speedup"]
                job.suite.say(f"  {row['shape']}: {s['ratio']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] (alg {row['alg_id']}, {row['dense_tflops']:.0f} -> {row['sparse_tflops']:.0f} TFLOP/s) {' '.join(row['notes'])}")
                done.append(row["shape"])
    return done


def select_job(job, state: State) -> dict | None:
    """`sparsekit select` on bert-base at batch 8 (M = 8 x 128 = 1024 rows per GEMM)."""
    from sparsekit.bench.select import select_layers_by_speed
    from sparsekit.models.source import load_model

    if not state.gpu:
        job.skip("select bert-base batch 8", NO_GPU_SKIP)
        return None
    loaded = load_model("bert-base")
    selection = job.unit("select bert-base batch 8", lambda: select_layers_by_speed(loaded, 8, state.gemm_config, cache=state.gemm_cache, progress=job.suite.say), 60)
    if not selection:
        return None
    job.suite.say(f"  select: include {len(selection['include'])} layers, exclude {len(selection['exclude'])}")
    return {"include": len(selection["include"]), "exclude": len(selection["exclude"])}


def _compiled_pair(state: State, seq: int, dtype: str):
    """The dtype's pair at ``seq`` with both models compiled once (shared by every batch and sequence)."""
    from dataclasses import replace

    from sparsekit.bench.compiled import compile_pair
    from sparsekit.bench.torch_sparse import cuda_inputs

    pair = _pair(state, seq, dtype)
    if dtype not in state.compiled:
        example = cuda_inputs(pair.loaded.inputs.random(batch=HEADLINE_BATCHES[0], seed=5), dtype)
        state.compiled[dtype] = compile_pair(pair.dense, pair.sparse, example, backend=state.compile_backend)
    models = state.compiled[dtype]
    return replace(pair, dense=models.dense, sparse=models.sparse), models


def dry_compiled_job(job, state: State, seqs, batches) -> dict:
    """The compiled job without a GPU: the tiny dense model compiled (Dynamo only) and timed on the CPU."""
    from sparsekit.bench.compiled import compile_pair
    from sparsekit.bench.dry_run import NO_GPU, dense_model_row, tiny_batches

    result = {"no_gpu": NO_GPU}
    for seq in seqs:
        loaded, _ = _dry_model(state, seq)

        def compile_once(loaded=loaded, key=("dry", seq)) -> dict:
            if key not in state.compiled:
                state.compiled[key] = compile_pair(loaded.model, None, loaded.inputs.random(batch=1), backend=state.compile_backend)
            return state.compiled[key].to_dict()

        models = job.unit(f"compile seq {seq}", compile_once, 10)
        if models is None:
            continue
        result.setdefault("compile", models)
        compiled = state.compiled[("dry", seq)].dense
        for batch in tiny_batches(batches):
            job.unit(f"seq {seq} batch {batch}", lambda b=batch, c=compiled, spec=loaded.inputs, seq=seq, mode=models["mode"]: dense_model_row(c, spec, b, seq=seq, mode=mode), 2)
    return result


def compiled_job(job, state: State, seqs=(384, 128), batches=HEADLINE_BATCHES, dtype: str = "float16") -> dict:
    """Dense and 2:4 through the same torch.compile mode at every batch of both sequence lengths."""
    from sparsekit.bench.torch_pair import measure_batch, torch_sparse_settings

    if not state.gpu:
        return dry_compiled_job(job, state, seqs, batches)
    job.record["settings"] = {**torch_sparse_settings(state.e2e_config, True), "compile_backend": state.compile_backend, "dynamic": True}
    compiled = job.unit(f"compile dense and 2:4 ({dtype})", lambda: _compiled_pair(state, seqs[0], dtype)[1].to_dict(), 90, limit_s=state.compile_limit_s)
    if compiled is None:
        raise RuntimeError("the pair could not be prepared or compiled (see the unit's error)")
    job.record["mode"] = compiled
    job.suite.say(f"  mode: {compiled['mode']}" + (f" (fallback: {compiled['fallback']})" if compiled["fallback"] else f", compile s {compiled['compile_seconds']}, graph breaks {compiled['graph_breaks']}"))
    for seq in seqs:
        for batch in batches:
            def one(seq=seq, batch=batch) -> dict:
                pair, models = _compiled_pair(state, seq, dtype)
                return {"seq": seq, "attention": BERT_LARGE["attention"], "mode": models.mode, "compiled": models.compiled, "amdahl_bound": round(pair.bound, 4), **measure_batch(pair, batch, state.e2e_config)}

            row = job.unit(f"seq {seq} batch {batch}", one, 10 if batch <= 32 else 20)
            if row:
                _record_profile(job, f"seq {seq} batch {batch}", row)
                s = row["speedup"]
                job.suite.say(f"  compiled seq {seq} batch {batch}: {row['dense']['median']:.3f} -> {row['sparse']['median']:.3f} ms, {s['ratio']:.3f}x [{s['low']:.3f}, {s['high']:.3f}] ({row['timing']}, bound {row['amdahl_bound']:.2f}x)")
    return compiled


def selection_job(job, state: State, seqs=(384, 128), batches=HEADLINE_BATCHES, dtype: str = "float16") -> dict | None:
    """At every batch: `select` on the BERT-large GEMMs at that batch, then dense vs the model with only the winners 2:4."""
    from sparsekit.bench.select import select_layers_by_speed
    from sparsekit.bench.selective import grouped, layer_pattern, selective_pair, split_selection
    from sparsekit.bench.torch_pair import measure_batch, torch_sparse_settings
    from sparsekit.models.source import LoadedModel

    if not state.gpu:
        for seq in seqs:
            for batch in batches:
                job.skip(f"select + seq {seq} batch {batch}", "no GPU: selection times 2:4 GEMMs on the target GPU")
        return None
    job.record["settings"] = {**torch_sparse_settings(state.e2e_config, True), "select_gemm_config": state.gemm_config.model_dump()}
    for seq in seqs:
        if job.unit(f"prepare {dtype} seq {seq}", lambda seq=seq: _pair(state, seq, dtype).evidence()["converted_flop_share"], 60) is None:
            continue
        pair = _pair(state, seq, dtype)
        for batch in batches:
            def choose(batch=batch, seq=seq, pair=pair) -> dict:
                loaded = LoadedModel(pair.dense, pair.loaded.inputs, pair.loaded.source)
                sel = select_layers_by_speed(loaded, batch, state.gemm_config, dtype=dtype, cache=state.gemm_cache, progress=job.suite.say)
                split = split_selection(sel, pair.conversion.converted)
                shapes = {}
                for m in sel["measurements"]:
                    shapes.setdefault(f"{m['m']}x{m['k']}x{m['n']}", {"layers": 0, "decision": m["decision"], "speedup": m.get("speedup"), "reason": m.get("reason")})["layers"] += 1
                reasons = {}
                for name, why in split["dense"].items():
                    reasons.setdefault(layer_pattern(name), why)
                return {"seq": seq, "batch": batch, "margin": sel["margin"], "rule": sel["rule"], "sparse": split["sparse"], "sparse_groups": grouped(split["sparse"]),
                        "dense_groups": grouped(split["dense"]), "dense_reasons": reasons, "gemm_shapes": shapes}

            chosen = job.unit(f"select seq {seq} batch {batch}", choose, 10)
            if chosen is None:
                continue

            def one(batch=batch, chosen=chosen, seq=seq, pair=pair) -> dict:
                sp = selective_pair(pair, chosen["sparse"])
                try:
                    row = measure_batch(sp, batch, state.e2e_config)
                finally:
                    del sp
                    gc.collect()
                    __import__("torch").cuda.empty_cache()
                if not chosen["sparse"]:
                    row["notes"].append("no layer won at this batch: the 2:4 side is a copy of the dense model (an A/A check of 'never slower than dense')")
                return {"seq": seq, "attention": BERT_LARGE["attention"], "selected_2to4": len(chosen["sparse"]), "kept_dense": sum(chosen["dense_groups"].values()),
                        "sparse_groups": chosen["sparse_groups"], "dense_groups": chosen["dense_groups"], "amdahl_bound": round(sp_bound(pair, chosen["sparse"]), 4),
                        "full_2to4_amdahl_bound": round(pair.bound, 4), **row}

            row = job.unit(f"seq {seq} batch {batch}", one, 10 if batch <= 32 else 20)
            if row:
                _record_profile(job, f"seq {seq} batch {batch}", row)
                s = row["speedup"]
                job.suite.say(f"  selection seq {seq} batch {batch}: {row['selected_2to4']} layers 2:4, {row['kept_dense']} dense; {s['ratio']:.3f}x [{s['low']:.3f}, {s['high']:.3f}] (bound {row['amdahl_bound']:.2f}x)")
    return {"seqs": list(seqs), "batches": list(batches)}


def sp_bound(pair, names) -> float:
    """Amdahl bound of the FLOP share of ``names`` (the selected layers) in ``pair``'s model."""
    from sparsekit.analyze.rules import amdahl_bound
    from sparsekit.bench.torch_pair import _converted_share

    return amdahl_bound(_converted_share(pair.loaded, pair.dense, list(names))) if names else 1.0


def llm_gemm_job(job, state: State) -> list:
    """Llama-3-8B GEMMs, prefill and decode, fp16 and bf16, each with cuSPARSELt's searched algorithm."""
    from sparsekit.bench.gemm import time_gemm
    from sparsekit.bench.llm_shapes import LLAMA3_8B_WEIGHTS, llm_gemm_plan

    job.record["settings"] = {**state.llm_config.model_dump(), "weights": {k: list(v) for k, v in LLAMA3_8B_WEIGHTS.items()}, "alg_search": True,
                              "timing": "CUDA graph of many calls per sample on rotated inputs; per-call ms"}
    done = []
    for g in llm_gemm_plan():
        extra = {"layers": list(g.layers), "phase": g.phase, "ffn": g.ffn}
        if not state.gpu:
            from sparsekit.bench.dry_run import dense_gemm_row

            job.unit(g.label, lambda g=g, extra=extra: dense_gemm_row(g.shape, **extra), 1)
            continue

        def one(g=g, extra=extra) -> dict:
            profile = g.ffn and g.phase == "prefill"
            timing = time_gemm(g.shape, state.llm_config, g.dtype, profile=profile, alg_search=True)
            return gemm_row(g.shape, g.dtype, timing, **extra)

        row = job.unit(g.label, one, 6)
        if row:
            s = row["speedup"]
            job.suite.say(f"  {g.label}: {s['ratio']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] (alg {row['alg_id']}, {row['dense_tflops']:.0f} -> {row['sparse_tflops']:.0f} TFLOP/s) {' '.join(row['notes'])}")
            done.append(g.label)
    return done


FP8_ROWS = (16384, 2048)


def fp8_job(job, state: State) -> dict:
    """FP8 2:4 vs FP8 dense GEMMs at Llama-3-8B shapes; the first refusal ends the job as one line."""
    from sparsekit.bench.fp8 import fp8_gemm
    from sparsekit.bench.gemm import GemmShape
    from sparsekit.bench.llm_shapes import distinct_layer_shapes

    if not state.gpu:
        job.skip("fp8 2:4 probe", NO_GPU_SKIP)
        return {"no_gpu": NO_GPU_SKIP}
    job.record["settings"] = {**state.llm_config.model_dump(), "scales": "per tensor", "output": "bfloat16"}
    for m in FP8_ROWS:
        for layers, k, n in distinct_layer_shapes():
            shape = GemmShape(f"llama-3-8b {'/'.join(layers)} {k}->{n}, M={m}", m, k, n)
            row = job.unit(f"fp8 {shape.name}", lambda shape=shape: fp8_gemm(shape, state.llm_config), 6)
            if row and "refused" in row:
                job.suite.say(f"  fp8 2:4 refused: {row['refused']}")
                return {"refused": row["refused"], "torch": row.get("torch")}
            if row:
                s = row["speedup"]
                job.suite.say(f"  fp8 {shape.name}: {s['ratio']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] ({row['dense_tflops']:.0f} -> {row['sparse_tflops']:.0f} TFLOP/s, alg {row['alg_id']})")
    return {"refused": None}


def bf16_job(job, state: State) -> dict:
    """The headline in bf16 at two batches, and the BERT-large FFN GEMMs in bf16."""
    free_pairs(state, "float16")
    result = model_job(job, state, 384, (32, 128), "bfloat16")
    ffn = {k: v for k, v in GEMM_LAYERS.items() if "bert-large ffn" in k}
    result["gemm"] = gemm_job(job, state, "bfloat16", ffn, (16384,))
    return result


def batch1_job(job, state: State) -> dict:
    """Batch 1 at both sequence lengths (M = 384 / 128 rows)."""
    free_pairs(state, "bfloat16")
    return {f"seq{seq}": model_job(job, state, seq, (1,)) for seq in (384, 128)}


def tensorrt_job(job, state: State) -> dict:
    """Dense vs sparse TensorRT engines of the headline model's fp16 ONNX (needs TensorRT and ModelOpt)."""
    import importlib.util
    import tempfile

    from sparsekit.bench.suite import JobSkipped

    missing = [m for m in ("tensorrt", "modelopt", "polygraphy") if importlib.util.find_spec(m) is None]
    if missing:
        raise JobSkipped(f"not installed here: {', '.join(missing)} (run the suite in an NGC TensorRT container with the kit installed)")
    from sparsekit.bench.pair import bench_onnx
    from sparsekit.export.export import export_

    free_pairs(state, "float16")
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _bert_large_at(state, 384)
        onnx_path = job.unit("export fp16 ONNX", lambda: str(export_(loaded, "fp16", Path(tmp) / "bert-large.fp16.onnx").path), 120)
        if onnx_path is None:
            raise RuntimeError("the fp16 export failed (see the unit's error)")
        return job.unit("engines + paired timing, batches 8 and 32", lambda: bench_onnx(onnx_path, "tensorrt", [8, 32], state.model_config, store=Path(tmp) / "engines"), 120)


def free_pairs(state: State, dtype: str) -> None:
    """Release the GPU memory of every pair of ``dtype``."""
    import torch

    for key in [k for k in state.pairs if k[0] == dtype]:
        del state.pairs[key]
    gc.collect()
    torch.cuda.empty_cache()


def jobs(state: State) -> list:
    """(name, fn(job), minimum seconds) in priority order."""
    g = 1 if state.gpu else 0  # a dry run fits any budget: its jobs need no minimum
    return [
        ("preflight", lambda job: preflight(job, state), 0),
        ("bert-large-seq384", lambda job: model_job(job, state, 384, HEADLINE_BATCHES), 30 * g),
        ("bert-large-seq128", lambda job: model_job(job, state, 128, HEADLINE_BATCHES), 20 * g),
        ("gemm", lambda job: gemm_job(job, state), 20 * g),
        ("select", lambda job: select_job(job, state), 30 * g),
        ("plan-gemm", lambda job: plan_gemm_job(job, state), 10 * g),
        ("compiled", lambda job: compiled_job(job, state), 60 * g),
        ("selection", lambda job: selection_job(job, state), 30 * g),
        ("llm-gemm", lambda job: llm_gemm_job(job, state), 15 * g),
        ("fp8", lambda job: fp8_job(job, state), 10 * g),
        ("gemm-large", lambda job: gemm_large_job(job, state), 20 * g),
        ("attention-matmul", lambda job: model_job(job, state, 384, (32,), attention="matmul"), 20 * g),
        ("bf16", lambda job: bf16_job(job, state), 40 * g),
        ("batch-1", lambda job: batch1_job(job, state), 20 * g),
        ("tensorrt", lambda job: tensorrt_job(job, state), 0),
    ]


def plan() -> list[str]:
    """The job names in order; importing every module the jobs use (a CPU check that nothing is missing)."""
    import importlib

    for module in ("sparsekit.bench.torch_pair", "sparsekit.bench.gemm", "sparsekit.bench.kernels", "sparsekit.bench.select", "sparsekit.bench.suite", "sparsekit.sparsify.direct", "sparsekit.models.source", "sparsekit.bench.machine",
                   "sparsekit.bench.compiled", "sparsekit.bench.selective", "sparsekit.bench.llm_shapes", "sparsekit.bench.fp8", "sparsekit.bench.dry_run"):
        importlib.import_module(module)
    return [name for name, _, _ in jobs(State(quick=True))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "results" / "gpu-run"), help="folder for gpu_suite.json and gpu_suite.log (default benchmarks/results/gpu-run)")
    parser.add_argument("--budget-seconds", type=float, default=420, help="wall-clock budget for all jobs; units that would not fit are recorded as skipped (default 420)")
    parser.add_argument("--unit-limit-seconds", type=float, default=150, help="a unit (one batch, one shape) running longer is stopped and its job abandoned, so the other jobs still run (default 150)")
    parser.add_argument("--only", help="comma-separated job names to run (default: all, in priority order)")
    parser.add_argument("--quick", action="store_true", help="fewer paired rounds (a smoke run)")
    parser.add_argument("--plan", action="store_true", help="print the jobs in order and exit (imports everything the jobs need; runs on CPU)")
    args = parser.parse_args(argv)
    if args.plan:
        print("\n".join(plan()))
        return 0
    import torch

    from sparsekit.bench.suite import Suite

    gpu = torch.cuda.is_available() and torch.cuda.get_device_capability(0)[0] >= 8
    if not gpu:
        print("gpu_suite: no CUDA GPU (Ampere or newer) here: DRY RUN on the CPU (tiny shapes, dense only, nothing about 2:4 is measured; every result says no_gpu)", file=sys.stderr)
    state = State(args.quick, gpu)
    selected = jobs(state)
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {name for name, _, _ in selected}
        if unknown:
            print(f"gpu_suite: unknown job(s) {', '.join(sorted(unknown))} (fix: choose from {', '.join(n for n, _, _ in selected)})", file=sys.stderr)
            return 2
        selected = [j for j in selected if j[0] in names]
    header = {"quick": args.quick, "gpu": gpu, "dry_run": None if gpu else "no CUDA GPU: tiny shapes on the CPU, dense only", "jobs_planned": [n for n, _, _ in selected]}
    suite = Suite(args.out, "gpu_suite", args.budget_seconds, header, max_unit_seconds=args.unit_limit_seconds)
    try:
        doc = suite.run(selected)
    finally:
        suite.close()
    failed = [j["name"] for j in doc["jobs"] if j["status"] in ("failed", "partial")]
    print(f"gpu_suite: {doc['status']}; jobs {', '.join(j['name'] + '=' + j['status'] for j in doc['jobs'])}; results in {suite.path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "render":
        from sparsekit.bench.gpu_report import main as render_main

        sys.exit(render_main(sys.argv[2:]))
    sys.exit(main())
