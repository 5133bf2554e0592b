"""GPU suite: dense vs 2:4 on a real Ampere+/Hopper GPU, one command.

  1. GEMM level (PyTorch semi-structured, cuSPARSELt/CUTLASS): the weight shapes of BERT-base,
     BERT-large and a wide CNN (3x3 convs as implicit GEMMs), at several M.
  2. End to end, torch_sparse backend: a BERT-large-like encoder (24 x 1024, FFN 4096) at
     sequence 128 and 384, batch 1..128, fp16, with CUDA graphs; correctness vs the dense model
     first. ResNet-50 too (PyTorch runs 2:4 only for Linear layers, so expect ~1.0x: reported as found).
  3. TensorRT (only where TensorRT is installed): dense vs sparse engines of the same fp16/int8 ONNX.

Results: benchmarks/results/<gpu>/ (JSON per measurement, markdown and PNG), with machine facts.

Usage: python benchmarks/gpu_suite.py [--quick] [--only gemm,bert,resnet50,tensorrt]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def gpu_slug() -> str:
    import torch

    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


def gemm_shapes(quick: bool):
    from sparsekit.bench.gemm import GemmShape

    layers = {
        "bert-base qkv/out 768x768": (768, 768), "bert-base ffn_in 768->3072": (768, 3072), "bert-base ffn_out 3072->768": (3072, 768),
        "bert-large qkv/out 1024x1024": (1024, 1024), "bert-large ffn_in 1024->4096": (1024, 4096), "bert-large ffn_out 4096->1024": (4096, 1024),
        "cnn 3x3 conv 256->256": (256 * 9, 256), "cnn 3x3 conv 512->512": (512 * 9, 512), "cnn 1x1 conv 1024->2048": (1024, 2048),
    }
    ms = [128, 2048, 16384] if quick else [128, 1024, 4096, 16384, 49152]
    return [GemmShape(f"{name}, M={m}", m, k, n) for name, (k, n) in layers.items() for m in ms]


def run_gemm(out: Path, quick: bool) -> dict:
    from sparsekit.bench.gemm import time_gemm
    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.machine import machine_facts

    config = BenchConfig(rounds=6 if quick else 10, round_seconds=0.05, min_iters=20, warmup_seconds=0.2)
    rows = []
    for shape in gemm_shapes(quick):
        r = time_gemm(shape, config)
        rows.append({"shape": shape.name, "m": shape.m, "k": shape.k, "n": shape.n, "dense_ms": r.dense.median, "sparse_ms": r.sparse.median, "speedup": r.speedup.to_dict(), "dense_tflops": shape.flops / r.dense.median / 1e9, "sparse_tflops": shape.flops / r.sparse.median / 1e9, "cov": [r.dense.cov, r.sparse.cov]})
        print(f"  {shape.name}: {r.speedup.ratio:.2f}x", file=sys.stderr)
    result = {"benchmark": "gemm", "dtype": "float16", "settings": config.model_dump(), "machine": machine_facts(gpu=True), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": rows}
    (out / "gemm.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# GEMM level: fp16 dense vs 2:4 (PyTorch semi-structured)", "", "| shape | M | K | N | dense ms | 2:4 ms | speedup (95% CI) | dense TFLOP/s |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        s = r["speedup"]
        lines.append(f"| {r['shape']} | {r['m']} | {r['k']} | {r['n']} | {r['dense_ms']:.4f} | {r['sparse_ms']:.4f} | {s['ratio']:.2f}x ({s['low']:.2f}-{s['high']:.2f}) | {r['dense_tflops']:.0f} |")
    (out / "gemm.md").write_text("\n".join(lines) + "\n")
    return result


def run_torch_models(out: Path, quick: bool, which: set[str]) -> list[dict]:
    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.pair import bench_torch_sparse
    from sparsekit.bench.report import write_result
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    config = BenchConfig(rounds=6 if quick else 10, round_seconds=0.1, min_iters=10, warmup_seconds=0.3)
    results = []
    jobs = []
    if "bert" in which:
        for seq in (128, 384):
            jobs.append((f"bert-large-seq{seq}", "bert", {"vocab": 30522, "hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "seq": seq}, [1, 8, 32] if quick else [1, 2, 4, 8, 16, 32, 64, 128]))
    if "resnet50" in which:
        jobs.append(("resnet50", "resnet50", {}, [1, 8, 32] if quick else [1, 8, 32, 128]))
    for stem, zoo, args, batches in jobs:
        loaded = load_model(zoo, args)
        loaded.model, _ = sparsify_(loaded.model, "magnitude", exclude=["head", "pooler"])
        print(f"{stem}: torch_sparse over batches {batches}", file=sys.stderr)
        r = bench_torch_sparse(loaded, batches, config, "float16", graphs=True, progress=lambda m: print("  " + m, file=sys.stderr))
        r["model"] = stem
        write_result(r, out, f"torch_sparse_{stem}")
        results.append(r)
    return results


def run_tensorrt(out: Path, quick: bool) -> list[dict]:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        print("tensorrt: not installed, skipped", file=sys.stderr)
        return []
    import tempfile

    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.pair import bench_onnx
    from sparsekit.bench.report import write_result
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    config = BenchConfig(rounds=6 if quick else 10, round_seconds=0.1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_model("bert", {"vocab": 30522, "hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "seq": 384})
        loaded.model, _ = sparsify_(loaded.model, "magnitude", exclude=["head", "pooler"])
        for precision in ("fp16", "int8"):
            onnx_path = export_(loaded, precision, Path(tmp) / f"bert-large.{precision}.onnx").path
            r = bench_onnx(onnx_path, "tensorrt", [1, 8, 32], config, store=Path(tmp) / "engines")
            write_result(r, out, f"tensorrt_bert-large-seq384_{precision}")
            results.append(r)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer shapes, batches and rounds")
    parser.add_argument("--only", default="gemm,bert,resnet50,tensorrt", help="comma-separated parts to run")
    parser.add_argument("--out", help="results folder (default benchmarks/results/<gpu>)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_suite: no CUDA GPU is available (run it on an Ampere+ GPU host)", file=sys.stderr)
        return 2
    which = set(args.only.split(","))
    out = Path(args.out) if args.out else HERE / "results" / gpu_slug()
    out.mkdir(parents=True, exist_ok=True)
    if "gemm" in which:
        run_gemm(out, args.quick)
    run_torch_models(out, args.quick, which)
    if "tensorrt" in which:
        run_tensorrt(out, args.quick)
    print(f"results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
