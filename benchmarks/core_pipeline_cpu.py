"""CPU benchmark of the core pipeline at full size: sparsify + three verified exports.

For ResNet-50 and a BERT-base-sized encoder (zoo entries ``resnet50``, ``bert-base``), each in a
fresh subprocess: wall time of sparsify (magnitude) and of each export (fp32, fp16, int8 with
2:4 post-check and ONNX Runtime parity), and the process's peak RSS after each stage. With
``--polygraphy`` each ONNX is also checked by Polygraphy and its verdicts compared with
``sparsekit check``. Results: ``benchmarks/results/cpu/core_pipeline.{json,md}``.

Usage: python benchmarks/core_pipeline_cpu.py [--models resnet50 bert-base] [--polygraphy]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cpu"


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def polygraphy_agreement(path: Path) -> dict:
    import onnx
    from polygraphy.tools.sparse import SparsityPruner

    from sparsekit.export.int8_weights import float_weights_view
    from sparsekit.sparsify.check import check_onnx

    pruner = SparsityPruner(float_weights_view(onnx.load(str(path))))  # Polygraphy reads float weights only
    infos = pruner._walk_nodes()
    pruner.prune_infos.clear()
    pruner.check()
    theirs = {i.name: i.name in pruner.sparse_tensors for i in infos}
    ours = {layer.weight: layer.is_2to4 for layer in check_onnx(path).layers}
    disagree = [n for n, v in theirs.items() if ours.get(n) != v]
    return {"weights_compared": len(theirs), "sparse_by_polygraphy": sum(theirs.values()), "disagreements": disagree}


def run_one(name: str, with_polygraphy: bool) -> dict:
    """Run in a child process: the whole pipeline for one zoo model."""
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    import torch

    torch.manual_seed(0)  # the same random weights and calibration inputs on every run
    out: dict = {"model": name, "stages": []}
    t0 = time.perf_counter()
    loaded = load_model(name)
    out["params_m"] = round(sum(p.numel() for p in loaded.model.parameters()) / 1e6, 2)
    out["stages"].append({"stage": "load", "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(peak_rss_mib())})
    t0 = time.perf_counter()
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    out["sparsified_layers"] = len(report.sparsified)
    out["stages"].append({"stage": "sparsify (magnitude)", "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(peak_rss_mib())})
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "fp16", "int8"):
            t0 = time.perf_counter()
            r = export_(loaded, precision, Path(tmp) / f"{name}.{precision}.onnx")
            stage = {
                "stage": f"export {precision}", "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(peak_rss_mib()),
                "size_mb": round(r.size_bytes / 1e6, 1), "sparse_layers_verified": len(r.sparsified), "check_passed": r.check.passed,
                "ort_max_rel_err": r.parity.max_rel, "tolerance": r.parity.tolerance,
            }
            if with_polygraphy:
                t1 = time.perf_counter()
                stage["polygraphy"] = polygraphy_agreement(r.path)
                stage["polygraphy"]["seconds"] = round(time.perf_counter() - t1, 1)
            out["stages"].append(stage)
    out["total_seconds"] = round(sum(s["seconds"] for s in out["stages"]), 1)
    out["peak_rss_mib"] = round(peak_rss_mib())
    return out


def render(results: dict) -> str:
    from sparsekit.bench.machine import machine_line
    m = results["machine"]
    lines = [
        "# Core pipeline on CPU: sparsify + verified ONNX exports at full size",
        "",
        machine_line(m, ('torch', 'nvidia-modelopt', 'onnxruntime')) + f" Date: {results['date']}.",
        "Each model runs in a fresh process; peak RSS is the process maximum up to the end of that stage.",
        "",
        "| model | stage | seconds | peak RSS (MiB) | ONNX MB | 2:4 layers verified | ORT rel. err (limit) | Polygraphy agrees |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results["models"]:
        for s in r["stages"]:
            poly = s.get("polygraphy")
            agree = "-" if poly is None else (f"yes ({poly['sparse_by_polygraphy']}/{poly['weights_compared']} sparse)" if not poly["disagreements"] else f"NO: {poly['disagreements'][:3]}")
            err = f"{s['ort_max_rel_err']:.1e} ({s['tolerance']:.0e})" if "ort_max_rel_err" in s else "-"
            lines.append(f"| {r['model']} ({r['params_m']} M) | {s['stage']} | {s['seconds']} | {s['peak_rss_mib']} | {s.get('size_mb', '-')} | {s.get('sparse_layers_verified', '-')} | {err} | {agree} |")
    lines += [
        "",
        "The int8 limit is the exact-match one; an int8 export also passes when its L2 distance to PyTorch is at most sqrt(2) times the",
        "model's own INT8 rounding noise (README, \"Parity of quantized exports\"; both numbers are in each export's report.json).",
        "",
        "Goal: BERT-base sparsify + all three exports under 4 GB (3815 MiB) peak RSS on a 24 GB, 2-core machine.",
    ]
    for r in results["models"]:
        lines.append(f"- {r['model']}: total {r['total_seconds']} s, peak RSS {r['peak_rss_mib']} MiB ({'meets' if r['peak_rss_mib'] < 3815 else 'MISSES'} the 4 GB goal).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert-base"])
    parser.add_argument("--polygraphy", action="store_true", help="also compare every ONNX with Polygraphy (slow: pure Python)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.polygraphy)))
        return 0
    from sparsekit.bench.machine import machine_facts

    models = []
    for name in args.models:
        cmd = [sys.executable, __file__, "--child", name] + (["--polygraphy"] if args.polygraphy else [])
        print(f"running {name} ...", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        models.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = {"benchmark": "core_pipeline_cpu", "date": time.strftime("%Y-%m-%d"), "machine": machine_facts(), "models": models}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "core_pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "core_pipeline.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
