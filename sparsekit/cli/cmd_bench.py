"""``sparsekit bench``: paired dense-vs-sparse measurement over a batch sweep."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.backends.registry import backend_names, get_model_benchmark, is_model_backend
from sparsekit.bench.config import BenchConfig
from sparsekit.cli.common import add_trust_args, emit, err, out
from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.cli.cmd_build import resolve_onnx
from sparsekit.errors import SparsekitError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="paired dense vs 2:4 sparse benchmark over a batch sweep (JSON + markdown + PNG)",
        description="Measure the dense and the sparse version of a model in one process, interleaved in rounds, on random rotated inputs, "
        "and report the speedup as a ratio with a bootstrap interval, next to the Amdahl bound and the sparse-kernel evidence. "
        "Backends: tensorrt (GPU; dense and sparse engines of one ONNX), torch_sparse (GPU; PyTorch semi-structured 2:4 Linear layers; a model with no 2:4 layer gets magnitude masks first, "
        "and the sparse side's output must match the dense side's before anything is timed), "
        "onnxruntime (CPU reference: no 2:4 kernels, so it checks the harness; expect ~1.0x).",
    )
    p.add_argument("input", metavar="INPUT", help="ONNX file or run folder (tensorrt, onnxruntime); model name or checkpoint .pt (torch_sparse)")
    p.add_argument("--backend", choices=backend_names(), default="onnxruntime", help="default onnxruntime")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="ONNX variant taken from a run folder (default fp16)")
    p.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    add_config_args(p.add_argument_group("measurement settings (recorded with every result)"), BenchConfig)
    p.add_argument("--no-graphs", action="store_true", help="do not capture CUDA graphs (GPU backends)")
    p.add_argument("--transfers", action="store_true", help="include host<->device copies in the timing (tensorrt)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16", help="torch_sparse compute dtype")
    p.add_argument("--store", metavar="DIR", help="engine store (default: OUT/engines, so nothing is written outside the results folder)")
    p.add_argument("--out", metavar="DIR", help="where to write <name>.json/.md/.png (default: a run folder's bench/, else bench-results/)")
    p.add_argument("--json", action="store_true", help="print the result JSON on stdout")
    add_trust_args(p)
    p.set_defaults(func=run)


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError as exc:
        raise SparsekitError(f"cannot read batch sizes '{text}'", "give comma-separated positive integers, e.g. 1,8,32") from exc
    if not batches or any(b <= 0 for b in batches):
        raise SparsekitError(f"cannot read batch sizes '{text}'", "give comma-separated positive integers, e.g. 1,8,32")
    return sorted(set(batches))


def run(args) -> int:
    from sparsekit.bench.report import write_result

    config = config_from_args(args, BenchConfig)
    batches = parse_batches(args.batches)
    results_dir = Path(args.out) if args.out else (Path(args.input) / "bench" if Path(args.input).is_dir() else Path("bench-results"))
    say = (lambda m: None) if args.json else (lambda m: err.print(f"[dim]{m}[/]"))
    if is_model_backend(args.backend):
        from sparsekit.models.source import load_model

        loaded = load_model(args.input)
        result = get_model_benchmark(args.backend)(loaded, batches, config, args.dtype, not args.no_graphs, say)
        stem = f"{args.backend}_{Path(loaded.name).stem}_{args.dtype}"
    else:
        from sparsekit.bench.pair import bench_onnx

        onnx_path = resolve_onnx(args.input, args.precision)
        result = bench_onnx(onnx_path, args.backend, batches, config, not args.no_graphs, args.transfers, args.store or results_dir / "engines", args.threads, say)
        stem = f"{args.backend}_{onnx_path.stem.replace('.', '_')}"
    paths = write_result(result, results_dir, stem)
    if args.json:
        emit(args, result)
        return 0
    t = Table(title=f"{args.backend}: dense vs sparse ({result['precision']})")
    for col in ("batch", "dense ms (median)", "sparse ms (median)", "speedup", "95% CI", "rounds", "CoV d/s"):
        t.add_column(col, justify="right")
    for row in result["results"]:
        d, s, ci = row["dense"], row["sparse"], row["speedup"]
        unstable = " [yellow]unstable[/]" if d["unstable"] or s["unstable"] else ""
        t.add_row(str(row["batch"]), f"{d['median']:.3f}", f"{s['median']:.3f}", f"{ci['ratio']:.3f}x", f"{ci['low']:.3f}-{ci['high']:.3f}", str(ci["rounds"]), f"{100 * d['cov']:.1f}% / {100 * s['cov']:.1f}%{unstable}")
    out.print(t)
    out.print(f"Amdahl bound: {result['amdahl']['bound']:.2f}x ({100 * result['amdahl']['sparse_flop_share']:.1f}% of FLOPs in 2:4 layers)")
    masking = result.get("evidence", {}).get("masking", {})
    if masking.get("masked"):
        out.print(f"[yellow]The model held no 2:4 layer: {len(masking['masked'])} layers got magnitude masks before timing (accuracy not kept; sparsify and fine-tune for a real model).[/]")
    for note in result["notes"]:
        out.print(f"[dim]{note}[/]")
    out.print(f"Results: {paths['md']} (JSON {paths['json']}, plot {paths['png']})")
    return 0
